"""The node lab as the story's tests and the sandbox see it (scripts/node must have brought it up).

Everything here acts through the lab's own doors: kubectl against the lab's control plane (on the
machine's loopback), `scripts/node exec` for what lives in the node's namespace (the emulator's
admin API, NMI's metrics, iptables), and `nsenter -n` into a pod's network namespace for what a pod
does. Before anything is sent from a pod's namespace, `pod_curl` checks that the namespace is a lab
pod's: not the machine's, no default route, the metadata address routed through the lab bridge.
Only the Python standard library is used, so the sandbox needs no venv.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "scripts" / "node"
SUBSCRIPTION = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c"
NODE_GROUP = "Study4Dev-JE-AKS-Study4Dev-JE-AKSResource"
SCALE_SET = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_GROUP}"
    "/providers/Microsoft.Compute/virtualMachineScaleSets/aks-agentpool-23456789-vmss"
)
KUBELET_CLIENT_ID = "5d0e8f3a-7c21-4b9e-a6d4-1f2e3c4b5a69"
DEMO_CLIENT_ID = "cb5569f2-8d09-4de1-a007-e02058e11d15"
DEMO_IDENTITY = (
    f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{NODE_GROUP}"
    "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/DEMO"
)
EXTERNAL_DNS_CLIENT_ID = "4f3e2d1c-0b9a-4876-8543-210fedcba987"
# Where the lab's CA is on the node (scripts/node.d/inside copies it next to azure.json).
LAB_CA = "/etc/kubernetes/podid-lab-ca.pem"
ARM_RESOURCE = "https://management.azure.com/"
LAB_BRIDGE_GATEWAY = "10.244.0.1"


class LabError(RuntimeError):
    pass


def run(*args: str, check: bool = True, timeout: float = 120, stdin: str | None = None) -> str:
    done = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


class Lab:
    """The running lab: its state dir and control plane come from scripts/node's environment."""

    def __init__(self) -> None:
        self.state = Path(
            os.environ.get("PODID_NODE_DIR")
            or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "podid" / "node"
        )
        self.kubeconfig = self.state / "control-plane" / "kubeconfig"
        if not self.kubeconfig.exists():
            raise LabError(f"no lab is up (no {self.kubeconfig}): run scripts/node up")
        bins = sorted((Path.home() / ".cache" / "podid" / "k8s").glob("*/bin/kubectl"))
        if not bins:
            raise LabError("kubectl is missing: scripts/control-plane build")
        self.kubectl_bin = str(bins[-1])
        self.endpoints = json.loads((self.state / "emulator.json").read_text())

    # --- Kubernetes ---------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return run(
            self.kubectl_bin, f"--kubeconfig={self.kubeconfig}", *args, stdin=stdin, check=check
        )

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", "-o", "json", *args))

    def apply_file(self, path: Path) -> None:
        self.kubectl("apply", "-f", str(path))

    def apply(self, obj: dict | list) -> None:
        items = obj if isinstance(obj, list) else [obj]
        self.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

    def objects_of(self, path: Path) -> list[dict]:
        """The objects of a manifest file, as JSON (kubectl prints one document per object)."""
        text = self.kubectl("create", "--dry-run=client", "-o", "json", "-f", str(path))
        decoder, at, objects = json.JSONDecoder(), 0, []
        while text[at:].strip():
            obj, at = decoder.raw_decode(text, at + len(text[at:]) - len(text[at:].lstrip()))
            objects += obj["items"] if obj.get("kind") == "List" else [obj]
        return objects

    def apply_trusting_lab_ca(self, path: Path) -> None:
        """Applies a user's manifest with the one addition the lab needs: its pods trust the
        lab's CA (the emulator stands in for management.azure.com). docs/node-lab.md."""
        self.apply([trusting_lab_ca(obj) for obj in self.objects_of(path)])

    def wait(self, what: str, check, timeout: float = 90, interval: float = 0.5):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = check()
            except LabError as error:
                last = error
            else:
                if last:
                    return last
            time.sleep(interval)
        raise LabError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")

    def pod(self, name: str, namespace: str = "default") -> dict:
        return self.get("pod", name, "-n", namespace)

    def wait_ready(self, name: str, namespace: str = "default", timeout: float = 90) -> dict:
        def ready():
            pod = self.pod(name, namespace)
            conditions = pod.get("status", {}).get("conditions", [])
            return pod if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None

        return self.wait(f"pod {namespace}/{name} Ready", ready, timeout)

    def pods_labelled(self, selector: str, namespace: str = "default") -> list[dict]:
        return self.get("pods", "-n", namespace, "-l", selector)["items"]

    def assigned_identities(self) -> list[dict]:
        return self.get("azureassignedidentities", "-A")["items"]

    def aai_status(self, pod_name: str, namespace: str = "default") -> str | None:
        for aai in self.assigned_identities():
            spec = aai.get("spec", {})
            if spec.get("pod") == pod_name and spec.get("podNamespace") == namespace:
                return aai.get("status", {}).get("status")
        return None

    def pause_pod(self, name: str, *, namespace: str = "default", labels: dict | None = None,
                  host_network: bool = False) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {
                "hostNetwork": host_network,
                "containers": [{"name": "pause", "image": "docker.io/podid/pause:v0.1.0",
                                "imagePullPolicy": "IfNotPresent"}],
                "terminationGracePeriodSeconds": 1,
            },
        }

    def container_log(self, pod_name: str, container: str, namespace: str = "default") -> str:
        """What the container wrote (kubelet's log files: the API server cannot reach kubelet)."""
        pod = self.pod(pod_name, namespace)
        folder = self.state / "var-log" / "pods" / f"{namespace}_{pod_name}_{pod['metadata']['uid']}" / container
        return "".join(p.read_text(errors="replace") for p in sorted(folder.glob("*.log")))

    # --- The node's namespace -----------------------------------------------------------------

    def node_exec(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        return run(str(NODE), "exec", "--", *args, check=check, timeout=timeout)

    def admin(self, method: str, path: str, body: object | None = None) -> object:
        """The emulator's admin API (plain HTTP on the node's loopback)."""
        args = ["curl", "-sS", "--fail-with-body", "-X", method, self.endpoints["admin"] + path]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
        out = self.node_exec(*args)
        return json.loads(out) if out.strip() else None

    def scale_set_identities(self) -> set[str]:
        """The user-assigned identities on the node pool's scale set, as ARM shows them."""
        world = self.admin("GET", "/admin/world")
        for scale_set in world["virtualMachineScaleSets"]:
            if scale_set["id"].lower() == SCALE_SET.lower():
                shown = scale_set["identity"]["arm"] or {}
                return {i.lower() for i in shown.get("userAssignedIdentities", {})}
        raise LabError(f"the emulator's world has no scale set {SCALE_SET}")

    def imds_token_count(self) -> int:
        counters = self.admin("GET", "/admin/counters")
        return int(counters.get("imds.token", {}).get("total", 0))

    def nat_rules(self) -> list[str]:
        return [line for line in self.node_exec("iptables", "-t", "nat", "-S").splitlines()
                if "aad-metadata" in line]

    def nmi_requests(self) -> float:
        """Token requests NMI has answered (its upstream-named metric, summed over labels)."""
        metrics = self.node_exec("curl", "-sS", "http://127.0.0.1:9090/metrics")
        prefix = "aadpodidentity_nmi_operations_duration_seconds_count{"
        return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix))

    # --- A pod's network namespace --------------------------------------------------------------

    def pod_pids(self, name: str, namespace: str = "default") -> list[int]:
        """The processes of the pod's containers (its sandbox's included), from the lab's cgroups."""
        uid = self.pod(name, namespace)["metadata"]["uid"]
        pids = []
        for procs in Path("/sys/fs/cgroup/pids/podid-node0/kubepods").glob(f"**/pod{uid}/*/cgroup.procs"):
            pids += [int(p) for p in procs.read_text().split()]
        if not pids:
            raise LabError(f"no process of pod {namespace}/{name} in the lab's cgroups")
        return sorted(pids)

    def pod_pid(self, name: str, namespace: str = "default") -> int:
        """A process in the pod's network namespace (its sandbox's)."""
        return self.pod_pids(name, namespace)[0]

    def process_of(self, pod: str, command: str, namespace: str = "default") -> int:
        """The pod's process running `command` (by /proc/PID/comm)."""
        for pid in self.pod_pids(pod, namespace):
            if Path(f"/proc/{pid}/comm").read_text().strip() == command:
                return pid
        raise LabError(f"pod {namespace}/{pod} runs no {command}")

    def check_pod_namespace(self, pid: int, *, node_checked: bool = False) -> None:
        """Refuses anything but a lab pod's own network namespace (the safety rule).
        `node_checked`: the caller ran `scripts/node check with-pods` just before (many pods)."""
        if os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            raise LabError(f"process {pid} shares the machine's network namespace")
        if not node_checked:
            run(str(NODE), "check", "with-pods")
        routes = run("nsenter", "-t", str(pid), "-n", "ip", "-o", "route", "show")
        if any(line.startswith("default") for line in routes.splitlines()):
            raise LabError(f"process {pid}'s namespace has a default route: {routes}")
        route = run("nsenter", "-t", str(pid), "-n", "ip", "-o", "route", "get", "169.254.169.254")
        if f"via {LAB_BRIDGE_GATEWAY} dev eth0" not in route:
            raise LabError(f"169.254.169.254 is not routed through the lab bridge: {route}")

    def pod_curl(self, name: str, url: str, *, namespace: str = "default",
                 headers: dict | None = None, max_time: float = 30) -> tuple[int, str]:
        """(HTTP status, body) of a request made from the pod's network namespace; status 0 when
        no connection could be made."""
        pid = self.pod_pid(name, namespace)
        self.check_pod_namespace(pid)
        return curl_in(pid, url, headers=headers, max_time=max_time)

    def pod_token(self, name: str, *, namespace: str = "default", client_id: str | None = None,
                  resource: str = ARM_RESOURCE, max_time: float = 30) -> tuple[int, dict]:
        return parse(self.pod_curl(name, token_url(client_id, resource), namespace=namespace,
                                   headers={"Metadata": "true"}, max_time=max_time))


def curl_in(pid: int, url: str, *, headers: dict | None = None, max_time: float = 30) -> tuple[int, str]:
    args = ["nsenter", "-t", str(pid), "-n", "curl", "-sS", "--max-time", str(max_time),
            "-w", "\n%{http_code}", url]
    for key, value in (headers or {}).items():
        args += ["-H", f"{key}: {value}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=max_time + 10)
    body, _, code = done.stdout.rpartition("\n")
    return int(code or 0), body


def token_url(client_id: str | None = None, resource: str = ARM_RESOURCE) -> str:
    from urllib.parse import urlencode

    query = {"api-version": "2018-02-01", "resource": resource}
    if client_id:
        query["client_id"] = client_id
    return "http://169.254.169.254/metadata/identity/oauth2/token?" + urlencode(query)


# Every access token a test saw in an answer (tests/node/test_zz_logs.py looks for them in the logs).
SEEN_TOKENS: set[str] = set()


def parse(answer: tuple[int, str]) -> tuple[int, dict]:
    code, body = answer
    try:
        parsed = json.loads(body)
    except ValueError:
        return code, {"raw": body}
    for item in parsed if isinstance(parsed, list) else [parsed]:
        if isinstance(item, dict) and isinstance(item.get("access_token"), str):
            SEEN_TOKENS.add(item["access_token"])
    return code, parsed


def claims(access_token: str) -> dict:
    """The token's claims (its payload, unverified): what tests and the sandbox show instead of
    the token itself."""
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def trusting_lab_ca(obj: dict) -> dict:
    """A pod or workload whose containers trust the lab's CA: a read-only hostPath of the CA and
    SSL_CERT_FILE naming it (the one addition to a user's manifest the lab needs). Other objects
    are returned as they are."""
    if obj.get("kind") not in ("Pod", "Deployment", "DaemonSet", "StatefulSet", "Job"):
        return obj
    spec = obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"]
    volumes = spec.setdefault("volumes", [])
    if not any(v["name"] == "podid-lab-ca" for v in volumes):
        volumes.append({"name": "podid-lab-ca", "hostPath": {"path": LAB_CA, "type": "File"}})
    for container in spec["containers"]:
        mounts = container.setdefault("volumeMounts", [])
        if not any(m["name"] == "podid-lab-ca" for m in mounts):
            mounts.append({"name": "podid-lab-ca", "mountPath": LAB_CA, "readOnly": True})
        env = container.setdefault("env", [])
        if not any(e["name"] == "SSL_CERT_FILE" for e in env):
            env.append({"name": "SSL_CERT_FILE", "value": LAB_CA})
    return obj


def install_podid(lab: Lab) -> None:
    """The seed's install: role assignments, then deployment-rbac.yaml and mic-exception.yaml as
    shipped, MIC trusting the lab's CA; waits until MIC and NMI are Ready."""
    lab.node_exec(
        "env", f"SUBSCRIPTION_ID={SUBSCRIPTION}", "RESOURCE_GROUP=study4dev-je",
        "CLUSTER_NAME=aks-study4dev-je", f"NODE_RESOURCE_GROUP={NODE_GROUP}",
        f"KUBELET_CLIENT_ID={KUBELET_CLIENT_ID}",
        str(ROOT / "scripts" / "role-assignment"), "--emulator", lab.endpoints["admin"],
    )
    lab.apply_trusting_lab_ca(ROOT / "deploy" / "infra" / "deployment-rbac.yaml")
    lab.apply_file(ROOT / "deploy" / "infra" / "mic-exception.yaml")
    lab.kubectl("rollout", "status", "deployment/mic", "--timeout=120s")
    lab.kubectl("rollout", "status", "daemonset/nmi", "--timeout=120s")
