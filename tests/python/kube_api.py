"""A minimal client of the test control plane's REST API, enough to create the objects NMI reads
(namespaces, pods with a status, Secrets and the aadpodidentity.k8s.io objects).

The control plane is the one ``scripts/control-plane run`` started (``PODID_KUBECONFIG``); the
user's own kubeconfig is never read, so these tests cannot reach a real cluster. Only the
kubeconfig shape scripts/control-plane writes is understood: one cluster, one user with a client
certificate, all inline (``*-data``).
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from pathlib import Path

import requests
import yaml

from network_guard import is_loopback_host

KUBECONFIG_ENV = "PODID_KUBECONFIG"
AAD_GROUP = "aadpodidentity.k8s.io/v1"
FINALIZER = "azureassignedidentity.finalizers.aadpodidentity.k8s.io"


class KubeError(RuntimeError):
    pass


class KubeApi:
    def __init__(self, kubeconfig: Path, workdir: Path):
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.server = cluster["server"].rstrip("/")
        host = requests.utils.urlparse(self.server).hostname
        if not is_loopback_host(host):
            raise KubeError(f"the test control plane must be on loopback, not {self.server}")
        files = {}
        for key, name in [
            ("certificate-authority-data", "ca.crt"),
            ("client-certificate-data", "client.crt"),
            ("client-key-data", "client.key"),
        ]:
            source = cluster if key.startswith("certificate-authority") else user
            path = workdir / name
            path.write_bytes(base64.b64decode(source[key]))
            files[name] = str(path)
        self.session = requests.Session()
        # No proxy and no CA bundle from the environment: REQUESTS_CA_BUNDLE would replace the
        # control plane's own CA.
        self.session.trust_env = False
        self.session.verify = files["ca.crt"]
        self.session.cert = (files["client.crt"], files["client.key"])

    @classmethod
    def from_env(cls, workdir: Path) -> "KubeApi":
        path = os.environ.get(KUBECONFIG_ENV)
        if not path:
            raise KubeError(
                f"{KUBECONFIG_ENV} is not set: run these tests under "
                "`scripts/control-plane run -- …` (scripts/test does)"
            )
        return cls(Path(path), workdir)

    def kubeconfig_env(self) -> str:
        return os.environ[KUBECONFIG_ENV]

    def _call(self, method: str, path: str, body: object | None = None, content_type=None):
        headers = {"Content-Type": content_type} if content_type else {}
        response = self.session.request(
            method, self.server + path, json=body, headers=headers, timeout=30
        )
        if response.status_code >= 300:
            raise KubeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def install_crds(self, crd_dir: Path) -> None:
        """Creates podid's CRDs (those already there are kept) and waits until each is served."""
        names = []
        for path in sorted(crd_dir.glob("*.yaml")):
            for document in yaml.safe_load_all(path.read_text()):
                if not document or document.get("kind") != "CustomResourceDefinition":
                    continue
                names.append(document["metadata"]["name"])
                response = self.session.post(
                    self.server + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                    json=document, timeout=30,
                )
                if response.status_code not in (201, 409):
                    raise KubeError(f"creating CRD {names[-1]}: {response.status_code} {response.text}")
        deadline = time.monotonic() + 30
        for name in names:
            while True:
                crd = self._call("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conditions = crd.get("status", {}).get("conditions", [])
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    break
                if time.monotonic() > deadline:
                    raise KubeError(f"CRD {name} was not established within 30 s")
                time.sleep(0.1)

    # -- typed helpers ---------------------------------------------------------------------

    def namespace(self, prefix: str = "nmi-py") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self._call("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        return name

    def create(self, namespace: str | None, obj: dict) -> dict:
        group_version = obj["apiVersion"]
        plural = _plural(obj["kind"])
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        scope = f"/namespaces/{namespace}" if namespace else ""
        return self._call("POST", f"{prefix}{scope}/{plural}", obj)

    def patch_status(self, namespace: str, obj: dict, status: dict, subresource=True) -> dict:
        """Merges ``status`` into the object: through its status subresource, or the object
        itself for kinds without one (AzureAssignedIdentity, as upstream defined it)."""
        group_version = obj["apiVersion"]
        plural = _plural(obj["kind"])
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        name = obj["metadata"]["name"]
        suffix = "/status" if subresource else ""
        return self._call(
            "PATCH",
            f"{prefix}/namespaces/{namespace}/{plural}/{name}{suffix}",
            {"status": status},
            content_type="application/merge-patch+json",
        )

    def delete(self, namespace: str, obj: dict) -> None:
        group_version = obj["apiVersion"]
        plural = _plural(obj["kind"])
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        name = obj["metadata"]["name"]
        self._call("DELETE", f"{prefix}/namespaces/{namespace}/{plural}/{name}")

    def running_pod(self, namespace: str, name: str, node: str, ip: str, label: str | None):
        """A pod as the kubelet would report it: scheduled on ``node``, Running, holding ``ip``."""
        labels = {"aadpodidbinding": label} if label is not None else {}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app"}]},
        }
        self.create(namespace, pod)
        self.patch_status(
            namespace,
            pod,
            {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1"},
        )
        return pod


def _plural(kind: str) -> str:
    lower = kind.lower()
    return lower[:-1] + "ies" if lower.endswith("y") else lower + "s"


def identity(name: str, *, client_id: str, resource_id: str) -> dict:
    return {
        "apiVersion": AAD_GROUP,
        "kind": "AzureIdentity",
        "metadata": {"name": name},
        "spec": {"type": 0, "clientID": client_id, "resourceID": resource_id},
    }


def binding(name: str, *, identity_name: str, selector: str) -> dict:
    return {
        "apiVersion": AAD_GROUP,
        "kind": "AzureIdentityBinding",
        "metadata": {"name": name},
        "spec": {"azureIdentity": identity_name, "selector": selector},
    }


def assigned_identity(
    *, pod: str, pod_namespace: str, node: str, identity_obj: dict, binding_obj: dict
) -> dict:
    """An AzureAssignedIdentity in the shape upstream's MIC writes (docs/crds.md)."""
    name = f"{pod}-{pod_namespace}-{identity_obj['metadata']['name']}"
    return {
        "apiVersion": AAD_GROUP,
        "kind": "AzureAssignedIdentity",
        "metadata": {"name": name, "labels": {"nodename": node}, "finalizers": [FINALIZER]},
        "spec": {
            "azureIdentityRef": identity_obj,
            "azureBindingRef": binding_obj,
            "pod": pod,
            "podNamespace": pod_namespace,
            "nodename": node,
        },
    }
