"""Spoofed source addresses from a pod (issue 11 §4, the CVE-2021-1677 class), on the real node:
NMI knows a pod by its connection's source IP, so an unbound pod on the lab's bridge tries to be
answered as a bound pod (the victim, DEMO's binding). Each attack runs tests/node/spoof.py in the
attacker's network namespace (`nsenter -n`, after lab.check_pod_namespace), with every capability
there (root entering the namespace: more than a container with NET_RAW or NET_ADMIN has), or with
only the capabilities an attack needs (`setpriv`: a root container's bounding set).

Each attack asks for a resource nothing else asks for, so its token can come from nowhere but a
fresh IMDS call: the attacker must get no token, NMI must answer no 200 for that resource, and
the emulator's IMDS must issue none for it.

What refuses them is the network, not NMI: the lab's CNI binds each bridge port to its pod's MAC
and IPv4 (scripts/node.d/cni-antispoof). The last tests take that binding off the attacker's port
and run the attacks again: on a plain bridge three of them get the victim's token from NMI, each
with only the capabilities it needs (NET_ADMIN; NET_RAW and NET_ADMIN; NET_RAW alone), and
none gets anything without those capabilities (as a pod under Pod Security `restricted`)."""

import json
import os
import sys
from pathlib import Path

import pytest

from lab import DEMO_CLIENT_ID, LAB_BRIDGE_GATEWAY, ROOT, claims, run

SEED = ROOT / "examples" / "seed"
SPOOF = Path(__file__).parent / "spoof.py"
# Each attack's resource (and the control's): first-party resources no other node test asks for.
RESOURCES = {
    "secondary-address": "https://cosmos.azure.com/",
    "arp-poison": "https://servicebus.azure.net/",
    "raw-syn": "https://eventhubs.azure.net/",
    "raw-arp-poison": "https://monitor.azure.com/",
}
CONTROL_RESOURCE = "https://cognitiveservices.azure.com/"
# The same attacks on a port without the anti-spoofing rules, each with its own resource and the
# only capabilities it needs.
UNGUARDED = {
    "secondary-address": ("https://api.loganalytics.io/", ["net_admin"]),
    "arp-poison": ("https://containerregistry.azure.net/", ["net_admin", "net_raw"]),
    "raw-arp-poison": ("https://redis.azure.com/", ["net_raw"]),
}
# And every attack on a port without the rules, by a process without capabilities.
CAPABILITY_LESS = {
    "secondary-address": "https://managedhsm.azure.net/",
    "arp-poison": "https://batch.core.windows.net/",
    "raw-syn": "https://datalake.azure.net/",
    "raw-arp-poison": "https://digitaltwins.azure.net/",
}
CHAIN = "PODID-ANTISPOOF"


@pytest.fixture(scope="module")
def victim_ip(lab):
    """An unbound attacker pod and a victim pod with DEMO's identity Assigned; the victim's IP."""
    lab.apply_file(SEED / "azureidentity-demo.yaml")
    lab.apply([lab.pause_pod("spoof-victim", labels={"aadpodidbinding": "DEMO"}),
               lab.pause_pod("spoof-attacker", labels={"aadpodidbinding": "not-bound-anywhere"})])
    victim = lab.wait_ready("spoof-victim")
    lab.wait_ready("spoof-attacker")
    lab.wait("the victim's AzureAssignedIdentity Assigned", lambda: lab.aai_status("spoof-victim") == "Assigned")
    yield victim["status"]["podIP"]
    lab.kubectl("delete", "pod", "spoof-victim", "spoof-attacker", "--wait=true")


def nmi_answers(lab, resource: str) -> dict[str, float]:
    """NMI's token answers for `resource`, by status code (its operations metric)."""
    metrics = lab.node_exec("curl", "-sS", "http://127.0.0.1:9090/metrics")
    prefix = "aadpodidentity_nmi_operations_duration_seconds_count{"
    answers: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith(prefix) and f'resource="{resource}"' in line:
            status = line.split('status_code="', 1)[1].split('"', 1)[0]
            answers[status] = answers.get(status, 0) + float(line.rsplit(" ", 1)[1])
    return answers


def imds_tokens_for(lab, resource: str) -> int:
    """IMDS token calls for `resource` (the emulator's journal)."""
    journal = lab.admin("GET", "/admin/journal?surface=imds")
    entries = journal if isinstance(journal, list) else journal.get("entries", [])
    host = resource.split("/")[2]
    return sum(1 for e in entries if e.get("operation") == "imds.token" and host in e.get("query", ""))


def attack(lab, name: str, victim_ip: str, resource: str, capabilities: list[str] | None = None) -> dict:
    """Runs one attack in the attacker's namespace, with every capability or only `capabilities`
    (its bounding set, as a root container's); what it got (never a token itself)."""
    pid = lab.pod_pid("spoof-attacker")
    lab.check_pod_namespace(pid)
    limit = [] if capabilities is None else [
        "setpriv", "--inh-caps=-all", "--bounding-set=" + ",".join(["-all"] + [f"+{c}" for c in capabilities])]
    try:
        out = run("nsenter", "-t", str(pid), "-n", *limit, sys.executable, str(SPOOF), "--attack", name,
                  "--victim", victim_ip, "--gateway", LAB_BRIDGE_GATEWAY, "--resource", resource,
                  "--client-id", DEMO_CLIENT_ID, "--machine-netns", os.readlink("/proc/self/ns/net"),
                  timeout=60)
    finally:
        # The node forgets whatever MAC the attack taught it for the victim's address.
        lab.node_exec("ip", "neigh", "del", victim_ip, "dev", "cni0", check=False)
    return json.loads(out)


def test_the_victim_itself_gets_demos_token(lab, victim_ip):
    """The control: from its own address the victim gets DEMO's token, so a refusal below is the
    attack's, not a missing identity's."""
    code, body = lab.pod_token("spoof-victim", client_id=DEMO_CLIENT_ID,
                               resource=CONTROL_RESOURCE)
    assert code == 200, body
    assert claims(body["access_token"])["appid"] == DEMO_CLIENT_ID


@pytest.mark.parametrize("name", list(RESOURCES))
def test_a_pod_claiming_anothers_address_gets_no_token(lab, victim_ip, name):
    resource = RESOURCES[name]
    assert nmi_answers(lab, resource) == {} and imds_tokens_for(lab, resource) == 0
    got = attack(lab, name, victim_ip, resource)
    print(f"{name}: {got}")
    assert not got["access_token"], got
    assert got.get("status") != 200, got
    assert "200" not in nmi_answers(lab, resource), nmi_answers(lab, resource)
    assert imds_tokens_for(lab, resource) == 0


def port_rules(lab, pod_ip: str) -> list[list[str]]:
    """The anti-spoofing rules of the port whose pod has `pod_ip` (ebtables' listing, as arguments)."""
    rules = [line.split() for line in lab.node_exec("ebtables", "-t", "filter", "-L", CHAIN).splitlines()
             if line.startswith("-")]
    ports = {rule[rule.index("-i") + 1] for rule in rules if pod_ip in rule}
    assert len(ports) == 1, (pod_ip, rules)
    return [rule for rule in rules if rule[rule.index("-i") + 1] in ports]


def test_every_pod_port_is_bound_to_its_pods_addresses(lab, victim_ip):
    attacker_ip = lab.pod("spoof-attacker")["status"]["podIP"]
    for ip in (victim_ip, attacker_ip):
        rules = [" ".join(rule) for rule in port_rules(lab, ip)]
        assert len(rules) == 4, rules
        assert sum(f"! {ip} -j DROP" in rule for rule in rules) == 2, rules  # ARP and IPv4 sources


def attack_unbound(lab, name: str, victim_ip: str, resource: str, capabilities: list[str]) -> dict:
    """The attack with the attacker's port unbound (as on a plain bridge, kubenet's included);
    the port's rules are put back afterwards."""
    rules = port_rules(lab, lab.pod("spoof-attacker")["status"]["podIP"])
    for rule in rules:
        lab.node_exec("ebtables", "-t", "filter", "-D", CHAIN, *rule)
    try:
        return attack(lab, name, victim_ip, resource, capabilities)
    finally:
        for rule in rules:
            lab.node_exec("ebtables", "-t", "filter", "-A", CHAIN, *rule)


@pytest.mark.parametrize("name", list(UNGUARDED))
def test_without_the_ports_binding_the_attack_gets_the_victims_token(lab, victim_ip, name):
    """The proof that the attacks are real and that the network is what stops them: with the
    attacker's port unbound, NMI gives the attacker the victim's token, to an attacker holding
    only the capabilities the attack needs."""
    resource, capabilities = UNGUARDED[name]
    got = attack_unbound(lab, name, victim_ip, resource, capabilities)
    print(f"{name} on an unbound port with {capabilities}: {got}")
    assert sorted(got["capabilities"]) == sorted(capabilities), got
    assert got["access_token"] and got["appid"] == DEMO_CLIENT_ID, got
    assert nmi_answers(lab, resource).get("200") == 1
    # Issued by IMDS for this request (once, or more when NMI's IMDS client retried).
    assert imds_tokens_for(lab, resource) >= 1


@pytest.mark.parametrize("name", list(CAPABILITY_LESS))
def test_without_capabilities_no_attack_gets_anything_even_on_an_unbound_port(lab, victim_ip, name):
    """What Pod Security `restricted` leaves a pod (no NET_RAW, no NET_ADMIN): none of the attacks
    can even start, binding or not."""
    resource = CAPABILITY_LESS[name]
    got = attack_unbound(lab, name, victim_ip, resource, [])
    print(f"{name} without capabilities on an unbound port: {got}")
    assert got["capabilities"] == [] and "Operation not permitted" in got.get("refused", ""), got
    assert not got["access_token"], got
    assert "200" not in nmi_answers(lab, resource)
    assert imds_tokens_for(lab, resource) == 0
