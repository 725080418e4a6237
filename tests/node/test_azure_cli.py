"""The seed's troubleshooting step (examples/seed/troubleshoot-azure-cli-pod.sh, issue 11 §2): a pod
carrying the binding's label (`aadpodidbinding=DEMO`) runs the real Azure CLI and signs in with
`az login -i`, then reads the node group as the seed's demo does.

The CLI is PyPI's azure-cli at tests/node/azure-cli-requirements.txt's pins
(`scripts/python-env --azure-cli`). It runs only in the lab pod's network namespace (`nsenter -n`,
after `check_pod_namespace`), with an empty environment but PATH, HOME and AZURE_CONFIG_DIR (a
fresh directory per test) and one addition: REQUESTS_CA_BUNDLE naming the lab's CA, whose
certificate stands in for management.azure.com's. No option or variable points the CLI anywhere:
it asks 169.254.169.254 for its token (NMI's rules redirect it, NMI answers with DEMO) and calls
https://management.azure.com, which the lab's DNS gives the emulator's address.

Name lookups: `nsenter -n` keeps the machine's mount namespace, so the CLI would read the
machine's /etc/resolv.conf, whose server the pod's namespace cannot reach. Each command therefore
runs under `unshare --mount` (a private mount namespace for that process alone), where
/etc/resolv.conf (the lab's DNS, 10.77.1.53), /etc/nsswitch.conf (`hosts: files dns`: no
resolver daemon of the machine's is asked) and /etc/hosts (localhost only) are bind-mounted over
the machine's; nothing on the machine changes. The config directory turns the CLI's telemetry off
(its uploader would only meet NXDOMAIN in the lab, but as a detached process).

Until DEMO holds a role, ARM lists no subscription for it and `az login -i` refuses with the
CLI's own message; with the seed's Reader on the node group it signs in, `az account show` names
the managed identity, and `az vmss list` / `az vm list` list the node group's machines, while
another group answers AuthorizationFailed."""

import json
import subprocess
from pathlib import Path

import pytest

from lab import DEMO_CLIENT_ID, DEMO_IDENTITY, NODE_GROUP, ROOT, SUBSCRIPTION, LabError, claims

SEED = ROOT / "examples" / "seed"
POD = "azure-cli"  # the seed's `kubectl run azure-cli … --labels=aadpodidbinding=DEMO`
LABELS = {"aadpodidbinding": "DEMO"}
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
LAB_DNS = "10.77.1.53"
ARM_IP = "10.77.1.1"
SCALE_SET_NAME = "aks-agentpool-23456789-vmss"
OTHER_GROUP = "study4dev-je"  # the DNS zone's group: DEMO never gets a role there
NO_SUBSCRIPTION = "No access was configured for the managed identity, hence no subscriptions were found"

# Runs in the private mount namespace `unshare` made: the lab's name service files over the
# machine's, then the command. nscd (if the machine runs one) would answer from the machine's
# namespace, so its socket directory is hidden too.
LAB_NAMES = """set -e
mount --bind "$0/resolv.conf" /etc/resolv.conf
mount --bind "$0/nsswitch.conf" /etc/nsswitch.conf
mount --bind "$0/hosts" /etc/hosts
for d in /run/nscd /var/run/nscd; do
  if [ -d "$d" ] && ! mountpoint -q "$d"; then mount -t tmpfs none "$d"; fi
done
exec "$@"
"""


@pytest.fixture(scope="module")
def cli_venv() -> Path:
    """The pinned Azure CLI's venv (created on first use: ~35 s, ~400 MB)."""
    out = subprocess.run([str(ROOT / "scripts" / "python-env"), "--azure-cli"], capture_output=True,
                         text=True, timeout=1200)
    if out.returncode != 0:
        raise LabError(f"scripts/python-env --azure-cli failed: {out.stderr[-2000:]}")
    venv = Path(out.stdout.strip())
    assert (venv / "bin" / "az").exists(), venv
    return venv


@pytest.fixture(scope="module")
def lab_names(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lab-names")
    (folder / "resolv.conf").write_text(f"nameserver {LAB_DNS}\noptions timeout:2 attempts:1\n")
    (folder / "nsswitch.conf").write_text("hosts: files dns\n")
    (folder / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
    return folder


class AzureCli:
    """`az` as the troubleshooting pod runs it."""

    def __init__(self, lab, venv: Path, names: Path, homes):
        self.lab, self.venv, self.names, self.homes = lab, venv, names, homes
        self.granted: list[str] = []
        self.ca = lab.state / "emulator-ca.pem"
        if not self.ca.exists():
            raise LabError(f"the lab's CA is missing: {self.ca}")

    def grant_reader(self) -> None:
        """The seed's Reader role for DEMO on the node group (the user's step; the lab's world
        starts without it). The fixture takes it back at the end."""
        self.granted.append(self.lab.admin("POST", "/admin/arm/role-assignments", {
            "principal": "DEMO", "role": "Reader",
            "scope": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_GROUP}",
        })["name"])

    def session(self) -> Path:
        """A fresh HOME whose CLI configuration has nothing but telemetry off: a new sign-in."""
        home = self.homes.mktemp("az-home")
        (home / ".azure").mkdir()
        (home / ".azure" / "config").write_text("[core]\ncollect_telemetry = no\n")
        return home

    def command(self, home: Path, *args: str) -> list[str]:
        pid = self.lab.pod_pid(POD)
        self.lab.check_pod_namespace(pid)
        return ["nsenter", "-t", str(pid), "-n",
                "unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", LAB_NAMES, str(self.names),
                "env", "-i", f"PATH={self.venv / 'bin'}:/usr/bin:/bin", f"HOME={home}",
                f"AZURE_CONFIG_DIR={home / '.azure'}", f"REQUESTS_CA_BUNDLE={self.ca}",
                *args]

    def run(self, home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(home, str(self.venv / "bin" / "az"), *args),
                              capture_output=True, text=True, timeout=timeout)

    def ok(self, home: Path, *args: str):
        done = self.run(home, *args, "--output", "json")
        if done.returncode != 0:
            raise LabError(f"az {' '.join(args)} exited {done.returncode}: {done.stderr[-3000:]}")
        return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.fixture(scope="module")
def az(lab, cli_venv, lab_names, tmp_path_factory):
    """The seed's troubleshooting pod (a pause container: the CLI comes from the venv) with the
    seed's identity and binding, its AzureAssignedIdentity Assigned."""
    lab.apply_file(SEED / "azureidentity-demo.yaml")
    lab.apply(lab.pause_pod(POD, labels=LABELS))
    cli = AzureCli(lab, cli_venv, lab_names, tmp_path_factory)
    try:
        lab.wait_ready(POD)
        lab.wait("the CLI pod's identity Assigned", lambda: lab.aai_status(POD) == "Assigned")
        yield cli
    finally:
        # The lab's world starts without DEMO's Reader role, and the story's demo test relies on it.
        for name in cli.granted:
            lab.admin("DELETE", f"/admin/arm/role-assignments/{name}")
        lab.kubectl("delete", "pod", POD, "--ignore-not-found", "--wait=true", "--timeout=60s")


def arm_since(lab, seq: int) -> list[dict]:
    """The CLI's ARM requests since `seq` (by its user agent: MIC may call ARM meanwhile)."""
    return [e for e in lab.admin("GET", f"/admin/journal?since={seq}&surface=arm")
            if "AZURECLI/" in (e.get("userAgent") or "")]


def last_seq(lab) -> int:
    entries = lab.admin("GET", "/admin/journal")
    return entries[-1]["seq"] if entries else 0


def test_the_pods_names_resolve_through_the_lab_dns_only(az):
    home = az.session()
    out = subprocess.run(az.command(home, "getent", "ahostsv4", "management.azure.com"),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert {line.split()[0] for line in out.stdout.splitlines()} == {ARM_IP}
    # Anything else is the lab DNS's NXDOMAIN: nothing is forwarded.
    out = subprocess.run(az.command(home, "getent", "hosts", "example.org"),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and not out.stdout


def test_az_login_identity_without_a_role_finds_no_subscription(az):
    lab = az.lab
    seq = last_seq(lab)
    before = lab.nmi_requests()
    done = az.run(az.session(), "login", "--identity")
    assert done.returncode != 0
    assert NO_SUBSCRIPTION in done.stderr, done.stderr[-3000:]
    # The token came through NMI; ARM answered the subscription list, empty.
    assert lab.nmi_requests() > before
    calls = [(e["method"], e["path"], e["status"]) for e in arm_since(lab, seq)]
    assert calls == [("GET", "/subscriptions", 200)], calls


def test_az_login_identity_signs_in_as_the_pods_identity(az):
    lab = az.lab
    az.grant_reader()
    seq = last_seq(lab)
    home = az.session()
    # The seed's exact command (`az login -i --debug`).
    done = az.run(home, "login", "-i", "--debug")
    assert done.returncode == 0, done.stderr[-3000:]
    accounts = json.loads(done.stdout)
    assert [(a["id"], a["tenantId"], a["state"]) for a in accounts] == [(SUBSCRIPTION, TENANT, "Enabled")]
    assert accounts[0]["isDefault"] is True
    assert accounts[0]["user"] == {"name": "systemAssignedIdentity", "type": "servicePrincipal",
                                   "assignedIdentityInfo": "MSI"}
    # Its default endpoints: the metadata address and management.azure.com, nothing configured.
    assert '169.254.169.254:80 "GET /metadata/identity/oauth2/token?' in done.stderr
    assert "Request URL: 'https://management.azure.com/subscriptions?api-version=" in done.stderr
    calls = [(e["method"], e["path"], e["status"]) for e in arm_since(lab, seq)]
    assert calls == [("GET", "/subscriptions", 200)], calls

    shown = az.ok(home, "account", "show")
    assert shown["id"] == SUBSCRIPTION
    assert shown["user"]["type"] == "servicePrincipal"
    assert shown["name"] == "Azure subscription 1"
    # What az reads its tokens with: the identity NMI gave the pod is DEMO.
    token = az.ok(home, "account", "get-access-token")
    assert token["subscription"] == SUBSCRIPTION and token["tenant"] == TENANT
    assert claims(token["accessToken"])["appid"] == DEMO_CLIENT_ID


@pytest.mark.parametrize("option, value, info", [
    ("--client-id", DEMO_CLIENT_ID, f"MSIClient-{DEMO_CLIENT_ID}"),
    ("--resource-id", DEMO_IDENTITY, f"MSIResource-{DEMO_IDENTITY}"),
], ids=["client-id", "resource-id"])
def test_az_login_identity_naming_the_identity(az, option, value, info):
    home = az.session()
    accounts = az.ok(home, "login", "--identity", option, value)
    assert [a["id"] for a in accounts] == [SUBSCRIPTION]
    assert accounts[0]["user"] == {"name": "userAssignedIdentity", "type": "servicePrincipal",
                                   "assignedIdentityInfo": info}
    assert az.ok(home, "account", "show")["user"]["assignedIdentityInfo"] == info


def test_az_lists_the_node_groups_machines_and_is_refused_elsewhere(az):
    lab = az.lab
    home = az.session()
    az.ok(home, "login", "--identity")
    seq = last_seq(lab)
    scale_sets = az.ok(home, "vmss", "list", "--resource-group", NODE_GROUP)
    assert [s["name"] for s in scale_sets] == [SCALE_SET_NAME]
    assert scale_sets[0]["sku"]["capacity"] == 3
    assert DEMO_IDENTITY.lower() in {i.lower() for i in scale_sets[0]["identity"]["userAssignedIdentities"]}
    vms = az.ok(home, "vm", "list", "--resource-group", NODE_GROUP)
    assert [v["name"] for v in vms] == ["aks-standalone-vm"]

    done = az.run(home, "vm", "list", "--resource-group", OTHER_GROUP)
    assert done.returncode != 0
    assert "(AuthorizationFailed)" in done.stderr, done.stderr[-3000:]
    assert (f"does not have authorization to perform action 'Microsoft.Compute/virtualMachines/read' "
            f"over scope '/subscriptions/{SUBSCRIPTION}/resourceGroups/{OTHER_GROUP}'") in done.stderr
    statuses = [(e["method"], e["path"].rsplit("/", 1)[-1], e["status"]) for e in arm_since(lab, seq)]
    assert statuses == [("GET", "virtualMachineScaleSets", 200), ("GET", "virtualMachines", 200),
                        ("GET", "virtualMachines", 403)], statuses
