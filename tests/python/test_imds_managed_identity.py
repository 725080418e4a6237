"""azure-identity's ManagedIdentityCredential (sync: through MSAL; async: its own pipeline)
against one emulated machine's IMDS, aimed there with AZURE_POD_IDENTITY_AUTHORITY_HOST
(docs/azure-wire.md §1.10)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from azure.identity import CredentialUnavailableError, ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential

from jwt_claims import app_id, claims
from seed_world import (
    ARM_RESOURCE,
    ARM_SCOPE,
    STANDALONE_VM,
    TENANT_ID,
    Demo,
    ExternalDns,
    Kubelet,
    scale_set_instance,
)

TOKEN_PATH = "/metadata/identity/oauth2/token"


def get_token_sync(**selector):
    credential = ManagedIdentityCredential(**selector)
    try:
        return credential.get_token(ARM_SCOPE)
    finally:
        credential.close()


def get_token_async(**selector):
    async def run():
        async with AsyncManagedIdentityCredential(**selector) as credential:
            return await credential.get_token(ARM_SCOPE)

    return asyncio.run(run())


both_clients = pytest.mark.parametrize(
    "get_token", [get_token_sync, get_token_async], ids=["sync-msal", "async-aio"]
)


@pytest.fixture
def on_machine(emulator, monkeypatch):
    """``on_machine(name)``: aims managed-identity credentials at that machine's IMDS."""

    def aim(machine: str) -> None:
        monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", emulator.imds(machine))

    return aim


def token_requests(emulator, machine: str) -> list[dict]:
    return [
        e
        for e in emulator.journal(surface="imds")
        if e.get("machine") == machine and e["path"] == TOKEN_PATH
    ]


def assert_token_for(token, *, client_id: str | None, principal_id: str | None) -> dict:
    c = claims(token.token)
    assert c["tid"] == TENANT_ID
    assert c["aud"].rstrip("/") == ARM_RESOURCE
    if client_id is not None:
        assert app_id(c) == client_id
    if principal_id is not None:
        assert c["oid"] == principal_id
    assert token.expires_on > time.time()
    # expires_on is the token's own exp (the sync client recomputes it from expires_in).
    assert abs(token.expires_on - c["exp"]) <= 5
    return c


@both_clients
def test_a_vm_with_a_system_assigned_identity_answers_without_a_selector(get_token, on_machine):
    on_machine(STANDALONE_VM)
    token = get_token()
    c = assert_token_for(token, client_id=None, principal_id=None)
    uuid.UUID(c["oid"])
    assert c["oid"] not in {Kubelet.principal_id, Demo.principal_id, ExternalDns.principal_id}


@both_clients
def test_a_node_with_one_user_assigned_identity_answers_with_it_without_a_selector(
    get_token, on_machine
):
    on_machine(scale_set_instance(0))
    token = get_token()
    assert_token_for(token, client_id=Kubelet.client_id, principal_id=Kubelet.principal_id)


@both_clients
@pytest.mark.parametrize("instance", [0, 1, 2])
def test_client_id_selects_an_assigned_identity_on_every_instance(
    get_token, instance, on_machine, emulator
):
    machine = scale_set_instance(instance)
    on_machine(machine)
    token = get_token(client_id=Kubelet.client_id)
    assert_token_for(token, client_id=Kubelet.client_id, principal_id=Kubelet.principal_id)
    # One request reached this machine: no probe, no retry, and no other machine was asked.
    requests = token_requests(emulator, machine)
    assert len(requests) == 1, requests
    assert f"client_id={Kubelet.client_id}" in requests[0]["query"]
    assert requests[0]["status"] == 200


@both_clients
@pytest.mark.parametrize(
    "resource_id",
    [
        Kubelet.resource_id,
        # ARM IDs are case-insensitive; manifests often carry `resourcegroups` and lower case.
        Kubelet.resource_id.replace("resourceGroups", "resourcegroups").lower(),
    ],
    ids=["as-created", "lower-case"],
)
def test_resource_id_selects_an_assigned_identity(get_token, resource_id, on_machine, emulator):
    machine = scale_set_instance(1)
    on_machine(machine)
    token = get_token(identity_config={"resource_id": resource_id})
    assert_token_for(token, client_id=Kubelet.client_id, principal_id=Kubelet.principal_id)
    # The sync client (MSAL) sends msi_res_id=; the async one sends resource_id= unchanged.
    (request,) = token_requests(emulator, machine)
    assert "msi_res_id=" in request["query"] or "resource_id=" in request["query"]


@both_clients
def test_object_id_selects_an_assigned_identity(get_token, on_machine):
    on_machine(scale_set_instance(2))
    token = get_token(identity_config={"object_id": Kubelet.principal_id})
    assert_token_for(token, client_id=Kubelet.client_id, principal_id=Kubelet.principal_id)


@both_clients
@pytest.mark.parametrize(
    "selector",
    [
        {"client_id": Demo.client_id},
        {"identity_config": {"resource_id": ExternalDns.resource_id}},
        {"identity_config": {"object_id": Demo.principal_id}},
    ],
    ids=["client_id", "resource_id", "object_id"],
)
def test_an_identity_not_on_the_machine_is_a_clean_identity_not_found(
    get_token, selector, on_machine, emulator
):
    machine = scale_set_instance(0)
    on_machine(machine)
    with pytest.raises(CredentialUnavailableError) as failure:
        get_token(**selector)
    assert "Identity not found" in str(failure.value)
    # A 400 is final: the client neither retried nor stalled on it.
    requests = token_requests(emulator, machine)
    assert [r["status"] for r in requests] == [400], requests


@both_clients
def test_a_user_assigned_selector_on_a_vm_with_only_a_system_identity_is_not_found(
    get_token, on_machine
):
    on_machine(STANDALONE_VM)
    with pytest.raises(CredentialUnavailableError) as failure:
        get_token(client_id=Kubelet.client_id)
    assert "Identity not found" in str(failure.value)

