"""Spoofed source addresses from a pod (issue 11 §4, the CVE-2021-1677 class), on the real node:
NMI knows a pod by its connection's source IP, so an unbound pod on the lab's bridge tries to be
answered as a bound pod (the victim, DEMO's binding). Each attack runs tests/node/spoof.py in the
attacker's network namespace (`nsenter -n`, after lab.check_pod_namespace), with every capability
there (root entering the namespace: more than a container with NET_RAW or NET_ADMIN has), or with
only the capabilities an attack needs (`setpriv`: a root container's bounding set).

Each attack asks for a resource nothing else asks for, so its token can come from nowhere but a
fresh IMDS call: the attacker must get no token, NMI must answer no 200 for that resource, and
the emulator's IMDS must issue none for it.

What refuses them is NMI's port guard (crates/nmi/src/port_guard.rs): from the CNI result cache
(/var/lib/cni/results, mounted read-only into NMI by the shipped manifests) it binds each pod's
bridge port to the pod's MAC and IPv4 in one nftables table, `bridge podid_nmi`: the set `ports`
names the guarded ports, `macs` holds port . MAC and `addresses` port . MAC . IPv4; its chains
`input` and `forward` send every frame from a port in `ports` to `check`, which drops the frame
unless its source MAC, and its ARP sender or IPv4 source, are the ones its port is bound to. The
tests read the table with the node's nft (`nft -j`). The lab's CNI is the plain `bridge` plugin,
nothing chained. The controls take the guard off the attacker's port the way NMI itself would:
the attacker's results file is moved out of the directory, so NMI removes that port's elements
(within its 1 s poll) and cannot put them back while the file is away; it is moved back
afterwards and NMI restores them. Without the guard three of the attacks get the victim's token
from NMI, each with only the capabilities it needs (NET_ADMIN; NET_RAW and NET_ADMIN; NET_RAW
alone), and none gets anything without those capabilities (as a pod under Pod Security
`restricted`). The last tests: a new pod's port is guarded within NMI's window (NEW_POD_WINDOW)
and released when the pod goes, and NMI takes its table away when it stops."""

import json
import os
import sys
import time
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
# NMI's table (family, name), and its chains as NMI writes them, each rule as `nft list` prints it
# but without its counter (whose numbers change): input and forward send the guarded ports' frames
# to check once each; check drops a frame whose source MAC, ARP sender (MAC and IPv4) or IPv4
# source (with the frame's MAC) is not its port's.
TABLE = ("bridge", "podid_nmi")
TO_CHECK = "iifname @ports jump check"
CHAINS = {
    "input": {"hook": "input", "policy": "accept", "rules": [TO_CHECK]},
    "forward": {"hook": "forward", "policy": "accept", "rules": [TO_CHECK]},
    "check": {"hook": None, "policy": None, "rules": [
        "iifname . ether saddr != @macs drop",
        "iifname . arp saddr ether . arp saddr ip != @addresses drop",
        "iifname . ether saddr . ip saddr != @addresses drop",
    ]},
}
RESULTS = "/var/lib/cni/results"
# Where a control moves the attacker's results file while the attack runs (the node's /var/lib,
# beside the results directory; NMI does not see it).
HIDDEN = "/var/lib/cni/podid-test-hidden-results"
# NMI looks at the results directory every second; a port is guarded at most this long after
# its pod's sandbox appears there (the poll, nft and the test's own polling).
NEW_POD_WINDOW = 3.0


@pytest.fixture(scope="module")
def victim_ip(lab):
    """An unbound attacker pod and a victim pod with DEMO's identity Assigned; the victim's IP."""
    lab.apply_file(SEED / "azureidentity-demo.yaml")
    lab.apply([lab.pause_pod("spoof-victim", labels={"aadpodidbinding": "DEMO"}),
               lab.pause_pod("spoof-attacker", labels={"aadpodidbinding": "not-bound-anywhere"})])
    victim = lab.wait_ready("spoof-victim")
    attacker = lab.wait_ready("spoof-attacker")
    lab.wait("the victim's AzureAssignedIdentity Assigned", lambda: lab.aai_status("spoof-victim") == "Assigned")
    # The attacks test the guard in place: a new pod's first moments, before NMI has seen its
    # port, are test_a_new_pods_port_is_guarded_within_the_window_…'s.
    for pod in (victim, attacker):
        lab.wait(f"{pod['metadata']['name']}'s port guarded",
                 lambda pod=pod: binding_for(lab, pod["status"]["podIP"]), timeout=30, interval=0.2)
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


def nft_text(value) -> str:
    """A value in nft's JSON (a meta key, a payload field, a concatenation, a set's name) as
    `nft list` writes it; anything else verbatim, so it matches nothing a test expects."""
    if isinstance(value, str):
        return value
    if "meta" in value:
        return value["meta"]["key"]
    if "payload" in value:
        return f"{value['payload']['protocol']} {value['payload']['field']}"
    if "concat" in value:
        return " . ".join(nft_text(part) for part in value["concat"])
    return json.dumps(value, sort_keys=True)


def rule_text(expr: list[dict]) -> str:
    """A rule's statements as `nft list` prints them, its counter left out."""
    words = []
    for statement in expr:
        if "match" in statement:
            match = statement["match"]
            # nft writes equality (a set lookup included) with no operator.
            op = "" if match["op"] == "==" else f"{match['op']} "
            words.append(f"{nft_text(match['left'])} {op}{nft_text(match['right'])}")
        elif "jump" in statement:
            words.append(f"jump {statement['jump']['target']}")
        elif "counter" in statement:
            continue
        elif len(statement) == 1 and next(iter(statement.values())) is None:
            words.append(next(iter(statement)))  # a verdict: {"drop": null}
        else:
            words.append(json.dumps(statement, sort_keys=True))
    return " ".join(words)


def element(value) -> str | tuple[str, ...]:
    """A set's element: a string, or a tuple for a concatenation (port, MAC[, IPv4])."""
    if isinstance(value, dict) and "concat" in value:
        return tuple(value["concat"])
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def guard_table(lab) -> dict | None:
    """NMI's table as the node's nft lists it: {"sets": {name: elements}, "chains": {name: {"hook",
    "policy", "rules"}}}; None when there is none."""
    # `nft list table` of a missing table exits 1, which node_exec(check=False) cannot tell from
    # nft failing; so the tables are listed first (checked), then the table itself (checked too:
    # if it went in between, the LabError makes lab.wait look again).
    tables = json.loads(lab.node_exec("nft", "-j", "list", "tables", TABLE[0]))["nftables"]
    if not any(item.get("table", {}).get("name") == TABLE[1] for item in tables):
        return None
    table: dict = {"sets": {}, "chains": {}}
    for item in json.loads(lab.node_exec("nft", "-j", "list", "table", *TABLE))["nftables"]:
        if "set" in item:  # a set without elements has no "elem"
            table["sets"][item["set"]["name"]] = {element(e) for e in item["set"].get("elem", [])}
        elif "chain" in item:  # nft lists every chain before any rule
            chain = item["chain"]
            table["chains"][chain["name"]] = {
                "hook": chain.get("hook"), "policy": chain.get("policy"), "rules": []}
        elif "rule" in item:
            table["chains"][item["rule"]["chain"]]["rules"].append(rule_text(item["rule"]["expr"]))
    return table


def binding_for(lab, pod_ip: str) -> tuple[str, str] | None:
    """The port and MAC NMI binds `pod_ip` to: its element of `addresses`, when the port's frames
    are checked (the port is in `ports`) and (port, MAC) is in `macs`; None when it is not
    guarded."""
    table = guard_table(lab)
    if table is None:
        return None
    sets = table["sets"]
    bound = [(port, mac) for port, mac, ip in sets["addresses"]
             if ip == pod_ip and port in sets["ports"] and (port, mac) in sets["macs"]]
    assert len(bound) <= 1, (pod_ip, sets)
    return bound[0] if bound else None


def elements_naming(table: dict | None, *values: str) -> dict[str, set]:
    """Each set's elements that name any of `values` (ports, MACs, addresses); {} with no table."""
    if table is None:
        return {}
    return {name: {e for e in elements if set(values) & set(e if isinstance(e, tuple) else (e,))}
            for name, elements in table["sets"].items()}


def bound_exactly(table: dict | None, port: str, mac: str, ip: str) -> bool:
    """The port is guarded and bound to that MAC and address only, and no other port to either."""
    return elements_naming(table, port, mac, ip) == {
        "ports": {port}, "macs": {(port, mac)}, "addresses": {(port, mac, ip)}}


def released(lab, port: str, ip: str) -> bool:
    """No element of NMI's sets names the port or the address any more (or there is no table)."""
    return not any(elements_naming(guard_table(lab), port, ip).values())


def guarded_ports(lab) -> set[str]:
    """The ports whose frames NMI's table checks; none when there is no table."""
    table = guard_table(lab)
    return table["sets"]["ports"] if table else set()


def pod_link(lab, pod: str) -> tuple[str, str]:
    """The pod's bridge port (the node's end of its eth0's veth pair) and eth0's MAC, as the
    kernel has them: what NMI must bind, learnt without NMI's source (the results file). Read
    with netlink; nothing is sent."""
    pid = lab.pod_pid(pod)
    [eth0] = json.loads(run("nsenter", "-t", str(pid), "-n", "ip", "-j", "link", "show", "eth0"))
    ports = [link["ifname"] for link in json.loads(lab.node_exec("ip", "-j", "link", "show"))
             if link["ifindex"] == eth0["link_index"] and link.get("master") == "cni0"]
    assert len(ports) == 1, (pod, eth0, ports)
    return ports[0], eth0["address"]


def test_every_pod_port_is_bound_to_its_pods_addresses(lab, victim_ip):
    table = guard_table(lab)
    assert table is not None and table["chains"] == CHAINS, table
    for pod in ("spoof-victim", "spoof-attacker"):
        ip = lab.pod(pod)["status"]["podIP"]
        port, mac = pod_link(lab, pod)
        assert binding_for(lab, ip) == (port, mac), (pod, ip, table)
        assert bound_exactly(table, port, mac, ip), (pod, port, mac, ip, table)


def results_file(lab, pod: str, namespace: str = "default") -> str:
    """The CNI result libcni cached for the pod's eth0 (what NMI's port guard reads)."""
    files = [path for path in lab.node_exec(
        "grep", "-rlF", f'["K8S_POD_NAME","{pod}"]', RESULTS, check=False).split()
        if path.endswith("-eth0") and f'["K8S_POD_NAMESPACE","{namespace}"]'
        in lab.node_exec("cat", path)]
    assert len(files) == 1, files
    return files[0]


def attack_unbound(lab, name: str, victim_ip: str, resource: str, capabilities: list[str]) -> dict:
    """The attack with the attacker's port unguarded (as on a plain bridge, kubenet's included):
    its results file is moved away, NMI takes the port's elements out of its sets, and they are
    back once the file is."""
    attacker_ip = lab.pod("spoof-attacker")["status"]["podIP"]
    binding = binding_for(lab, attacker_ip)
    assert binding, (attacker_ip, guard_table(lab))
    path = results_file(lab, "spoof-attacker")
    hidden = f"{HIDDEN}/{os.path.basename(path)}"
    lab.node_exec("mkdir", "-p", HIDDEN)
    lab.node_exec("mv", path, hidden)
    try:
        lab.wait("NMI taking the attacker's port out of its sets",
                 lambda: released(lab, binding[0], attacker_ip), timeout=10, interval=0.2)
        return attack(lab, name, victim_ip, resource, capabilities)
    finally:
        lab.node_exec("mv", hidden, path)
        lab.wait("NMI binding the attacker's port again",
                 lambda: binding_for(lab, attacker_ip) == binding, timeout=10, interval=0.2)


@pytest.mark.parametrize("name", list(UNGUARDED))
def test_without_the_ports_binding_the_attack_gets_the_victims_token(lab, victim_ip, name):
    """The proof that the attacks are real and that NMI's port guard is what stops them: with the
    attacker's port unguarded, NMI gives the attacker the victim's token, to an attacker holding
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


def test_a_new_pods_port_is_guarded_within_the_window_and_released_when_it_goes(lab, victim_ip):
    lab.apply(lab.pause_pod("spoof-newcomer", labels={"aadpodidbinding": "not-bound-anywhere"}))
    try:
        ip = lab.wait("the new pod's address", lambda: lab.pod("spoof-newcomer")["status"].get("podIP"),
                      timeout=60, interval=0.05)
        seen = time.monotonic()
        # The pod has its address once its sandbox's network is set up (the results file is
        # written then): NMI guards the port within its window of that.
        port, mac = lab.wait("the new pod's port guarded", lambda: binding_for(lab, ip),
                             timeout=30, interval=0.1)
        took = time.monotonic() - seen
        print(f"the new pod's port guarded {took:.2f} s after its address was visible")
        assert took <= NEW_POD_WINDOW, took
        assert (port, mac) == pod_link(lab, "spoof-newcomer")
        assert bound_exactly(guard_table(lab), port, mac, ip), guard_table(lab)
    finally:
        lab.kubectl("delete", "pod", "spoof-newcomer", "--wait=true")
    lab.wait("the gone pod's port released", lambda: released(lab, port, ip),
             timeout=NEW_POD_WINDOW, interval=0.1)
    # The others' ports keep theirs.
    assert binding_for(lab, victim_ip) == pod_link(lab, "spoof-victim")


def nmi_pods(lab) -> list[dict]:
    return lab.pods_labelled("component=nmi")


def test_nmi_takes_its_table_away_when_it_stops_and_puts_it_back_when_it_starts(lab, victim_ip):
    """As for its iptables rules (E2): NMI stopped (SIGTERM, its DaemonSet scheduled nowhere)
    leaves no table (so no hook); started again, it guards the ports again."""
    binding = binding_for(lab, victim_ip)
    assert binding, (victim_ip, guard_table(lab))
    nowhere = {"spec": {"template": {"spec": {"nodeSelector": {"podid-test/nowhere": "true"}}}}}
    back = {"spec": {"template": {"spec": {"nodeSelector": {"podid-test/nowhere": None}}}}}
    lab.kubectl("patch", "daemonset", "nmi", "--type=merge", "-p", json.dumps(nowhere))
    try:
        lab.wait("NMI stopped", lambda: not nmi_pods(lab), timeout=90, interval=0.5)
        assert guard_table(lab) is None
    finally:
        lab.kubectl("patch", "daemonset", "nmi", "--type=merge", "-p", json.dumps(back))
        lab.kubectl("rollout", "status", "daemonset/nmi", "--timeout=120s")
    lab.wait("NMI guarding the ports again", lambda: binding_for(lab, victim_ip) == binding,
             timeout=30, interval=0.2)
    assert guard_table(lab)["chains"] == CHAINS
    lab.wait("NMI serving again", lambda: lab.pod_token(
        "spoof-victim", client_id=DEMO_CLIENT_ID, resource=CONTROL_RESOURCE, max_time=10)[0] == 200,
        timeout=60, interval=1)
