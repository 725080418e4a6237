"""ExternalDNS, the seed's second workload (issue 11 §1), on the lab node: upstream's unmodified
ExternalDNS v0.21.0 (`scripts/build-images --external-dns`) with its Azure provider, in namespace
`external-dns` with the seed's identity and binding (examples/seed/external-dns-identity.yaml)
and the seed's azure.json (examples/seed/external-dns-azure.conf.json:
`useManagedIdentityExtension: true`, no client ID), both applied unchanged. It gets its token
from 169.254.169.254 through NMI and keeps the emulator's Azure DNS zone `study4dev.example` in
step with a Service: the A record (and ExternalDNS's TXT ownership record) appear, then go with
the Service. The Deployment is tests/node/external-dns.yaml (upstream's tutorial manifest; the
seed has none). The emulator's DNS lists are set to one item per page, so ExternalDNS's SDK has
to follow `nextLink` to see the zone's record sets."""

import json
import time

import pytest

from lab import EXTERNAL_DNS_CLIENT_ID, ROOT, LabError, claims

SEED = ROOT / "examples" / "seed"
MANIFEST = ROOT / "tests" / "node" / "external-dns.yaml"
NAMESPACE = "external-dns"
ZONE = "study4dev.example"
OWNER = "aks-study4dev-je"  # --txt-owner-id in the manifest
# TEST-NET-3 (RFC 5737): only ever written into a record, never sent to.
ADDRESS = "203.0.113.10"


def zone_record_sets(lab) -> dict[tuple[str, str], dict]:
    """The zone's record sets as the emulator holds them, by (type, name)."""
    for zone in lab.admin("GET", "/admin/world")["dnsZones"]:
        if zone["name"] == ZONE:
            return {(rs["type"].rsplit("/", 1)[1], rs["name"]): rs for rs in zone["recordSets"]}
    raise AssertionError(f"the emulator's world has no zone {ZONE}")


def arm_journal(lab, since: int) -> list[dict]:
    return lab.admin("GET", f"/admin/journal?since={since}&surface=arm")


def last_seq(lab) -> int:
    entries = lab.admin("GET", "/admin/journal")
    return entries[-1]["seq"] if entries else 0


@pytest.fixture(scope="module")
def external_dns(lab):
    if not (lab.state / "images" / "external-dns.oci.tar").exists():
        # Not a skip: a test that cannot run has not passed.
        raise LabError("ExternalDNS's image is not in the lab: scripts/build-images --external-dns, "
                       "then scripts/node up")
    lab.kubectl("create", "namespace", NAMESPACE, check=False)
    lab.apply_file(SEED / "external-dns-identity.yaml")
    # The seed's azure.json as upstream's tutorial makes it a Secret (`kubectl create secret
    # generic azure-config-file --from-file azure.json`).
    secret = lab.kubectl("create", "secret", "generic", "azure-config-file", "-n", NAMESPACE,
                         f"--from-file=azure.json={SEED / 'external-dns-azure.conf.json'}",
                         "--dry-run=client", "-o", "json")
    lab.apply(json.loads(secret))
    lab.admin("PATCH", "/admin/knobs", {"arm": {"dnsPageSize": 1}})
    since = last_seq(lab)
    lab.apply_trusting_lab_ca(MANIFEST)
    try:
        lab.kubectl("rollout", "status", "deployment/external-dns", "-n", NAMESPACE, "--timeout=120s")
        pod = lab.pods_labelled("app=external-dns", NAMESPACE)[0]["metadata"]["name"]
        yield {"pod": pod, "since": since}
    finally:
        lab.kubectl("delete", "service", "web", "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
        lab.kubectl("delete", "-f", str(MANIFEST), "--ignore-not-found", "--wait=true", "--timeout=60s")
        lab.wait("ExternalDNS's pod gone", lambda: not lab.pods_labelled("app=external-dns", NAMESPACE),
                 timeout=60)
        lab.kubectl("delete", "secret", "azure-config-file", "-n", NAMESPACE, "--ignore-not-found")
        lab.admin("PATCH", "/admin/knobs", {"arm": {"dnsPageSize": 100}})


def log_of(lab, pod: str) -> str:
    return lab.container_log(pod, "external-dns", NAMESPACE)


def test_external_dns_signs_in_through_nmi_as_its_identity_and_reads_the_zone(lab, external_dns):
    pod = external_dns["pod"]
    lab.wait("ExternalDNS's AzureAssignedIdentity Assigned",
             lambda: lab.aai_status(pod, NAMESPACE) == "Assigned", timeout=90)

    def zone_read():
        ops = {(e["operation"], e["status"]) for e in arm_journal(lab, external_dns["since"])}
        return ("arm.dns.zone.list", 200) in ops and ("arm.dns.recordset.list", 200) in ops

    try:
        lab.wait("ExternalDNS listing the zone and its record sets", zone_read, timeout=120, interval=1)
    except Exception:
        print(log_of(lab, pod)[-4000:])
        raise
    log = log_of(lab, pod)
    assert "Using managed identity extension" in log, log[-4000:]
    entries = arm_journal(lab, external_dns["since"])
    dns = [e for e in entries if e["operation"].startswith("arm.dns.")]
    # ExternalDNS's own SDK (armdns) made these, and followed nextLink past the first record set.
    assert all("armdns" in (e.get("userAgent") or "") for e in dns), dns
    assert any("$skipToken" in e["query"] or "%24skipToken" in e["query"] for e in dns
               if e["operation"] == "arm.dns.recordset.list"), dns
    assert not [e for e in dns if e["status"] >= 400], dns

    # What NMI gives this pod when it asks as ExternalDNS does (no client ID): its own identity.
    code, body = lab.pod_token(pod, namespace=NAMESPACE)
    assert code == 200, body
    assert claims(body["access_token"])["appid"] == EXTERNAL_DNS_CLIENT_ID


def test_a_service_gets_its_a_record_and_loses_it_when_deleted(lab, external_dns):
    pod = external_dns["pod"]
    apex = {key for key in zone_record_sets(lab) if key[1] == "@"}
    assert apex == {("NS", "@"), ("SOA", "@")}
    lab.apply({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NAMESPACE,
                     "annotations": {"external-dns.alpha.kubernetes.io/hostname": f"web.{ZONE}"}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 80}]},
    })
    # No cloud load balancer in the lab: the test plays its part and publishes the address.
    lab.kubectl("patch", "service", "web", "-n", NAMESPACE, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": ADDRESS}]}}}))
    started = time.monotonic()

    def published():
        sets = zone_record_sets(lab)
        return sets if ("A", "web") in sets and ("TXT", "a-web") in sets else None

    try:
        sets = lab.wait("the A record of web.study4dev.example", published, timeout=90, interval=1)
    except Exception:
        print(log_of(lab, pod)[-4000:])
        raise
    created_in = time.monotonic() - started
    record = sets[("A", "web")]["properties"]
    assert record["ARecords"] == [{"ipv4Address": ADDRESS}]
    assert record["fqdn"] == f"web.{ZONE}."
    ownership = sets[("TXT", "a-web")]["properties"]["TXTRecords"][0]["value"][0]
    assert f"external-dns/owner={OWNER}" in ownership, ownership
    assert "external-dns/resource=service/external-dns/web" in ownership, ownership
    print(f"A record created {created_in:.1f} s after the Service got its address")

    lab.kubectl("delete", "service", "web", "-n", NAMESPACE, "--wait=true")
    try:
        lab.wait("the records of web.study4dev.example removed",
                 lambda: not {("A", "web"), ("TXT", "a-web")} & set(zone_record_sets(lab)),
                 timeout=90, interval=1)
    except Exception:
        print(log_of(lab, pod)[-4000:])
        raise
    # What ExternalDNS does not own is left alone.
    assert {key for key in zone_record_sets(lab) if key[1] == "@"} == apex
    refused = [e for e in arm_journal(lab, external_dns["since"])
               if e["operation"].startswith("arm.dns.") and e["status"] >= 400]
    assert not refused, refused
