"""Upstream's NMI side by side (issue 11 §5): the same NMI-side scenarios run twice on the lab
node, first with podid's NMI as installed from deploy/infra/, then with the same DaemonSet (same
args, mounts, probes) running upstream's v1.8.17 image (`scripts/build-images --upstream-nmi`,
`mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.8.17`). Upstream's NMI lists and gets more
than podid's shipped ClusterRole grants (AzureIdentities, CRDs, `get` verbs), so its run applies
upstream's own NMI ClusterRole; podid's role and image are restored afterwards.

Upstream's NMI talks to the fixed 169.254.169.254, which in the lab is the emulator inside the
sealed namespace: the binary only ever runs in the lab's containers."""

import threading
import time

import pytest

from lab import (
    DEMO_CLIENT_ID,
    EXTERNAL_DNS_CLIENT_ID,
    KUBELET_CLIENT_ID,
    ROOT,
    claims,
)
from test_story import UPSTREAM_RULES

SEED = ROOT / "examples" / "seed"
UPSTREAM_IMAGE = "mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.8.17"
# Upstream v1.8.17's deploy/infra/deployment-rbac.yaml, aad-pod-id-nmi-role, verbatim.
UPSTREAM_NMI_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": "aad-pod-id-nmi-role"},
    "rules": [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": ["aadpodidentity.k8s.io"],
         "resources": ["azureidentitybindings", "azureidentities", "azurepodidentityexceptions"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["aadpodidentity.k8s.io"], "resources": ["azureassignedidentities"],
         "verbs": ["get", "list", "watch"]},
    ],
}


def podid_nmi_role(lab) -> dict:
    return next(o for o in lab.objects_of(ROOT / "deploy" / "infra" / "deployment-rbac.yaml")
                if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "aad-pod-id-nmi-role")


def nmi_image(lab) -> str:
    return lab.get("daemonset", "nmi")["spec"]["template"]["spec"]["containers"][0]["image"]


def use_nmi(lab, image: str, role: dict) -> None:
    """NMI's DaemonSet running `image` (everything else as shipped) under `role`, Ready, with its
    rules in place."""
    lab.apply(role)
    lab.kubectl("set", "image", "daemonset/nmi", f"nmi={image}")
    lab.kubectl("rollout", "status", "daemonset/nmi", "--timeout=120s")
    lab.wait("NMI's rules", lambda: sorted(lab.nat_rules()) == sorted(UPSTREAM_RULES), timeout=60)


@pytest.fixture(scope="module")
def setup(lab):
    """The pods every scenario uses, once (the demo, a pod no binding selects, an excepted pod)."""
    if not lab.get("daemonset", "-l", "component=nmi")["items"]:  # after test_story's uninstall
        lab.apply_trusting_lab_ca(ROOT / "deploy" / "infra" / "deployment-rbac.yaml")
        lab.kubectl("rollout", "status", "daemonset/nmi", "--timeout=120s")
    podid_image = nmi_image(lab)
    lab.apply_file(SEED / "azureidentity-demo.yaml")
    lab.apply_trusting_lab_ca(SEED / "pod-demo.yaml")
    lab.apply(lab.pause_pod("unmi-unbound"))
    lab.apply(lab.pause_pod("unmi-excepted", namespace="kube-system",
                            labels={"kubernetes.azure.com/managedby": "aks"}))
    for name, namespace in (("demo", "default"), ("unmi-unbound", "default"),
                            ("unmi-excepted", "kube-system")):
        lab.wait_ready(name, namespace)
    lab.wait("the demo's AzureAssignedIdentity Assigned", lambda: lab.aai_status("demo") == "Assigned")
    yield podid_image
    use_nmi(lab, podid_image, podid_nmi_role(lab))


@pytest.fixture(scope="module", params=["podid", "upstream"])
def flavor(request, lab, setup):
    if request.param == "podid":
        use_nmi(lab, setup, podid_nmi_role(lab))
    else:
        use_nmi(lab, UPSTREAM_IMAGE, UPSTREAM_NMI_ROLE)
    assert nmi_image(lab) == (setup if request.param == "podid" else UPSTREAM_IMAGE)
    return request.param


def test_rules_are_upstreams(lab, flavor):
    assert sorted(lab.nat_rules()) == sorted(UPSTREAM_RULES)


def test_demo_gets_demos_token(lab, flavor):
    for client_id in (DEMO_CLIENT_ID, None):
        code, body = lab.pod_token("demo", client_id=client_id, max_time=30)
        assert code == 200, body
        assert claims(body["access_token"])["appid"] == DEMO_CLIENT_ID


def imds_tokens(lab, where) -> int:
    """IMDS token calls whose query `where` accepts (the emulator's journal)."""
    journal = lab.admin("GET", "/admin/journal?surface=imds")
    entries = journal if isinstance(journal, list) else journal.get("entries", [])
    return sum(1 for e in entries if e.get("operation") == "imds.token" and where(e.get("query", "")))


def pod_identity_tokens(lab) -> int:
    """IMDS token calls for the identity the refused request names (ExternalDNS's). Other calls
    go on meanwhile (MIC signs in through NMI's MIC exception, the demo app asks every few
    seconds, and upstream's NMI caches nothing), so only this identity's count tells whether
    the refused request reached IMDS."""
    return imds_tokens(lab, lambda query: EXTERNAL_DNS_CLIENT_ID in query)


def test_unbound_pod_and_other_pods_client_id_are_refused(lab, flavor):
    """Both requests at once: upstream answers each after its 80 s search for an identity; podid
    refuses both at once (no binding selects the first pod; the second pod's only binding has its
    assignment recorded, so no other identity can come)."""
    tokens_before = pod_identity_tokens(lab)
    results = {}

    def ask(key, pod, client_id):
        started = time.monotonic()
        code, body = lab.pod_token(pod, client_id=client_id, max_time=120)
        results[key] = (code, body, time.monotonic() - started)

    threads = [threading.Thread(target=ask, args=("unbound", "unmi-unbound", None)),
               threading.Thread(target=ask, args=("other", "demo", EXTERNAL_DNS_CLIENT_ID))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"{flavor}: " + ", ".join(f"{k} → {c} after {t:.1f} s" for k, (c, _, t) in results.items()))
    (unbound, _, unbound_took), (other, _, other_took) = results["unbound"], results["other"]
    if flavor == "podid":
        assert (unbound, other) == (400, 400), results  # IMDS's error shape
        assert unbound_took < 10 and other_took < 10
    else:
        assert (unbound, other) == (404, 404), results
        assert unbound_took > 70 and other_took > 70
    assert pod_identity_tokens(lab) == tokens_before


def test_excepted_pod_goes_to_imds(lab, flavor):
    """Upstream forwards every excepted request to IMDS; podid caches, so each flavor asks for a
    resource of its own that nothing else in the node tests asks for."""
    resource = {"podid": "https://storage.azure.com/", "upstream": "https://graph.microsoft.com/"}[flavor]
    host = resource.split("/")[2]
    tokens_before = imds_tokens(lab, lambda query: host in query)
    code, body = lab.pod_token("unmi-excepted", namespace="kube-system", client_id=KUBELET_CLIENT_ID,
                               resource=resource)
    assert code == 200, body
    assert claims(body["access_token"])["appid"] == KUBELET_CLIENT_ID
    assert imds_tokens(lab, lambda query: host in query) == tokens_before + 1
