"""Real clients against podid's NMI: azure-identity's ManagedIdentityCredential (sync, through
MSAL, and async, its own pipeline) and msal's ManagedIdentityClient, pointed at NMI with
AZURE_POD_IDENTITY_AUTHORITY_HOST from a pod's IP, as a pod on an AAD Pod Identity node would be.

Each failure class gets the answer docs/nmi.md gives it, and these tests show what the clients
make of it: they retry what is temporary (and then succeed) and stop at once on what is
permanent.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading

import msal
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError, ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential
from urllib3.util.retry import Retry

import kube_api
import nmi_agent
from jwt_claims import app_id, claims
from kube_api import KubeApi
from nmi_agent import RunningNmi, async_transport, bound_session, nmi_binary, sync_transport
from seed_world import ARM_RESOURCE, ARM_SCOPE, REPO_ROOT, SCALE_SET, Demo, ExternalDns, scale_set_instance

NODE = f"{SCALE_SET}000000"
MACHINE = scale_set_instance(0)
_pod_ips = (f"127.77.{n // 250}.{n % 250 + 2}" for n in itertools.count())


@pytest.fixture(scope="module")
def kube(tmp_path_factory) -> KubeApi:
    api = KubeApi.from_env(tmp_path_factory.mktemp("kube"))
    api.install_crds(REPO_ROOT / "deploy" / "crds")
    return api


@pytest.fixture
def world(seed_world) -> dict:
    """The seed world with the demo and ExternalDNS identities already on the scale set, as MIC
    would have left it."""
    scale_set = seed_world["virtualMachineScaleSets"][0]
    scale_set["identity"]["userAssigned"] += [Demo.name, ExternalDns.name]
    return seed_world


@pytest.fixture
def node_emulator(start_emulator, world):
    return start_emulator(world)


@pytest.fixture
def nmi(kube, node_emulator, tmp_path, request, monkeypatch):
    """NMI for NODE, and the pods' clients aimed at it as on a real node."""
    agent = RunningNmi(
        nmi_binary(),
        node=NODE,
        kubeconfig=kube.kubeconfig_env(),
        imds=node_emulator.imds(MACHINE),
        workdir=tmp_path,
    )
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", agent.base)
    yield agent
    agent.stop()
    if getattr(getattr(request.node, "report_call", None), "failed", False):
        print(f"\n--- nmi log ---\n{agent.log_tail()}")


class Pod:
    """A running pod on NODE with its own loopback IP, labelled for ``selector`` (or not)."""

    def __init__(self, kube: KubeApi, namespace: str, name: str, selector: str | None):
        self.namespace, self.name, self.ip = namespace, name, next(_pod_ips)
        kube.running_pod(namespace, name, NODE, self.ip, selector)


@pytest.fixture
def namespace(kube) -> str:
    return kube.namespace()


def bind(kube: KubeApi, namespace: str, pod: Pod, who, *, status: str | None = "Assigned"):
    """The identity, binding and AzureAssignedIdentity MIC would leave for ``pod``; returns the
    AAI as created (its status set when ``status`` is given)."""
    identity = kube.create(
        namespace,
        kube_api.identity(who.name.lower(), client_id=who.client_id, resource_id=who.resource_id),
    )
    binding = kube.create(
        namespace,
        kube_api.binding(f"{who.name.lower()}-binding", identity_name=identity["metadata"]["name"],
                         selector=who.name),
    )
    aai = kube_api.assigned_identity(pod=pod.name, pod_namespace=namespace, node=NODE,
                                     identity_obj=identity, binding_obj=binding)
    if status is not None:
        # In the same request: an AAI without a status is upstream's legacy shape, which NMI
        # serves at once, so a status patched afterwards would race with the request.
        aai["status"] = {"status": status, "availableReplicas": 1}
    aai = kube.create("default", aai)
    return aai


def identity_sync(pod: Pod, seen: list | None = None, **selector):
    credential = ManagedIdentityCredential(transport=sync_transport(pod.ip, seen), **selector)
    try:
        return credential.get_token(ARM_SCOPE).token
    finally:
        credential.close()


def identity_async(pod: Pod, seen: list | None = None, **selector):
    async def run():
        credential = AsyncManagedIdentityCredential(transport=async_transport(pod.ip, seen),
                                                    **selector)
        async with credential:
            return (await credential.get_token(ARM_SCOPE)).token

    return asyncio.run(run())


def msal_client(pod: Pod, seen: list | None = None, **selector):
    if "client_id" in selector:
        identity = msal.UserAssignedManagedIdentity(client_id=selector["client_id"])
    else:
        identity = msal.SystemAssignedManagedIdentity()
    # msal leaves retries to its HTTP client; this is the session its documentation recommends.
    retry = Retry(total=3, backoff_factor=0.1, status_forcelist=[429, 500, 501, 502, 503, 504])
    session = bound_session(pod.ip, seen, retry)
    client = msal.ManagedIdentityClient(identity, http_client=session)
    result = client.acquire_token_for_client(resource=ARM_RESOURCE)
    if "access_token" not in result:
        raise ClientAuthenticationError(f"msal: {result}")
    return result["access_token"]


every_client = pytest.mark.parametrize(
    "get_token", [identity_sync, identity_async, msal_client],
    ids=["azure-identity-sync", "azure-identity-async", "msal"],
)


@every_client
def test_a_bound_pod_gets_a_token_for_its_identity(get_token, kube, namespace, nmi):
    pod = Pod(kube, namespace, "demo", Demo.name)
    bind(kube, namespace, pod, Demo)
    token = get_token(pod)
    assert app_id(claims(token)) == Demo.client_id
    assert claims(token)["aud"].rstrip("/") == ARM_RESOURCE


@every_client
def test_client_id_picks_among_the_pods_identities(get_token, kube, namespace, nmi):
    pod = Pod(kube, namespace, "dns", ExternalDns.name)
    bind(kube, namespace, pod, ExternalDns)
    token = get_token(pod, client_id=ExternalDns.client_id)
    assert app_id(claims(token)) == ExternalDns.client_id


@every_client
def test_a_pod_without_a_binding_is_refused_at_once(get_token, kube, namespace, nmi):
    """Upstream made it wait 80 s for a 404 that clients retry; podid answers 400 as IMDS does
    for an identity it does not have, and clients stop after one request."""
    pod = Pod(kube, namespace, "lonely", None)
    seen: list[int] = []
    with pytest.raises((CredentialUnavailableError, ClientAuthenticationError)):
        get_token(pod, seen)
    assert seen == [400]


@every_client
def test_an_identity_of_another_pod_is_refused(get_token, kube, namespace, nmi):
    owner = Pod(kube, namespace, "owner", Demo.name)
    bind(kube, namespace, owner, Demo)
    thief = Pod(kube, namespace, "thief", None)
    seen: list[int] = []
    with pytest.raises((CredentialUnavailableError, ClientAuthenticationError)):
        get_token(thief, seen, client_id=Demo.client_id)
    assert seen == [400]


@every_client
def test_a_pod_waits_while_its_identity_is_assigned_and_then_gets_it(
    get_token, kube, namespace, nmi, node_emulator
):
    """The AAI is still `Created` when the request arrives; NMI holds the request and answers
    the moment MIC's status change arrives through the watch."""
    pod = Pod(kube, namespace, "early", Demo.name)
    aai = bind(kube, namespace, pod, Demo, status="Created")
    result: dict = {}

    def request():
        try:
            result["token"] = get_token(pod)
        except Exception as e:  # reported below, in the test's thread
            result["error"] = e

    worker = threading.Thread(target=request)
    worker.start()
    worker.join(timeout=1.0)  # give the request time to reach NMI; the outcome doesn't depend on it
    assert worker.is_alive(), f"answered before the identity was assigned: {result}"
    kube.patch_status("default", aai, {"status": "Assigned", "availableReplicas": 1},
                      subresource=False)
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert "error" not in result, result.get("error")
    assert app_id(claims(result["token"])) == Demo.client_id


@every_client
def test_a_temporary_imds_failure_is_retried_and_then_succeeds(
    get_token, kube, namespace, nmi, node_emulator
):
    """The node's IMDS answers 500 once: NMI answers 503 with Retry-After, the client retries
    and NMI's second call to IMDS succeeds."""
    pod = Pod(kube, namespace, "retry", Demo.name)
    bind(kube, namespace, pod, Demo)
    node_emulator.admin("POST", "/admin/faults", {
        "surface": "imds", "path": "/metadata/identity/oauth2/token", "times": 1,
        "action": {"kind": "error", "status": 500},
    })
    token = get_token(pod)
    assert app_id(claims(token)) == Demo.client_id
    imds_answers = [
        e["status"] for e in node_emulator.journal(surface="imds")
        if e["path"] == "/metadata/identity/oauth2/token"
    ]
    assert imds_answers == [500, 200], imds_answers


@every_client
def test_a_service_principal_whose_secret_is_missing_fails_without_retries(
    get_token, kube, namespace, nmi
):
    """A permanent failure: 403, which no client retries."""
    pod = Pod(kube, namespace, "sp", "sp")
    identity = kube.create(namespace, {
        "apiVersion": kube_api.AAD_GROUP, "kind": "AzureIdentity", "metadata": {"name": "sp"},
        "spec": {"type": 1, "tenantID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                 "clientID": "1c2d3e4f-5a6b-4c7d-8e9f-a0b1c2d3e4f5",
                 "clientPassword": {"name": "absent", "namespace": namespace}},
    })
    binding = kube.create(namespace, kube_api.binding("sp-binding", identity_name="sp",
                                                      selector="sp"))
    aai = kube.create("default", kube_api.assigned_identity(
        pod=pod.name, pod_namespace=namespace, node=NODE, identity_obj=identity,
        binding_obj=binding))
    kube.patch_status("default", aai, {"status": "Assigned", "availableReplicas": 1},
                      subresource=False)
    seen: list[int] = []
    with pytest.raises((CredentialUnavailableError, ClientAuthenticationError)):
        get_token(pod, seen)
    assert seen == [403]


def test_the_harness_tries_other_ports_when_one_is_taken(kube, node_emulator, tmp_path, monkeypatch):
    """Ports are picked by bind-and-release, so another process may take one before NMI binds it:
    NMI exits naming the address in use, and the harness starts it again on fresh ports."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = itertools.chain([taken.getsockname()[1]], iter(nmi_agent.free_port, None))
    monkeypatch.setattr(nmi_agent, "free_port", lambda: next(ports))
    with taken:
        agent = RunningNmi(nmi_binary(), node=NODE, kubeconfig=kube.kubeconfig_env(),
                           imds=node_emulator.imds(MACHINE), workdir=tmp_path)
        try:
            assert agent.port != taken.getsockname()[1]
        finally:
            agent.stop()
