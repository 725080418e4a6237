"""The seed's story on a real node (issue 10 §3): kubelet + containerd run podid's images from its
manifests, NMI's iptables rules intercept the pods' traffic for 169.254.169.254, and MIC assigns
identities to the emulator's scale set signing in through the node's IMDS. Tests run in file
order: the story builds on what came before and uninstalls last."""

import os
import signal

from lab import (
    DEMO_CLIENT_ID,
    DEMO_IDENTITY,
    EXTERNAL_DNS_CLIENT_ID,
    KUBELET_CLIENT_ID,
    NODE_GROUP,
    ROOT,
    SUBSCRIPTION,
    claims,
    curl_in,
    run,
    token_url,
)

SEED = ROOT / "examples" / "seed"
VAULT = "https://vault.azure.net"
UPSTREAM_RULES = [
    "-N aad-metadata",
    "-A PREROUTING -j aad-metadata",
    "-A aad-metadata ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 "
    "-j DNAT --to-destination 127.0.0.1:2579",
    "-A aad-metadata -j RETURN",
]


def test_nmi_installs_exactly_upstreams_rules(lab):
    """E1: the chain, the DNAT to NMI and the PREROUTING jump, nothing else."""
    assert sorted(lab.nat_rules()) == sorted(UPSTREAM_RULES)


def test_demo_gets_its_identity_and_lists_vms_once_reader_is_granted(lab):
    lab.apply_file(SEED / "azureidentity-demo.yaml")
    lab.apply_trusting_lab_ca(SEED / "pod-demo.yaml")
    lab.wait_ready("demo")
    lab.wait("the demo's AzureAssignedIdentity Assigned", lambda: lab.aai_status("demo") == "Assigned")
    assert DEMO_IDENTITY.lower() in lab.scale_set_identities()

    code, body = lab.pod_token("demo", client_id=DEMO_CLIENT_ID)
    assert code == 200, body
    seen = claims(body["access_token"])
    assert seen["appid"] == DEMO_CLIENT_ID
    assert seen["xms_mirid"].lower() == DEMO_IDENTITY.lower()

    # Without DEMO's Reader role ARM refuses the listing with Azure's error.
    lab.wait("the demo's refused listing", lambda: "AuthorizationFailed" in lab.container_log("demo", "demo"),
             timeout=60)
    assert "scale set VM" not in lab.container_log("demo", "demo")
    lab.admin("POST", "/admin/arm/role-assignments", {
        "principal": "DEMO", "role": "Reader",
        "scope": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_GROUP}",
    })
    lab.wait("the demo listing the scale set's VMs", lambda: "scale set VM" in lab.container_log("demo", "demo"),
             timeout=60)


def test_a_pod_no_binding_selects_is_refused_at_once(lab):
    lab.apply(lab.pause_pod("unbound"))
    lab.wait_ready("unbound")
    tokens_before = lab.imds_token_count()
    code, body = lab.pod_token("unbound", max_time=20)
    assert code == 400, body
    assert body["error"] == "invalid_request"
    assert lab.imds_token_count() == tokens_before


def test_an_excepted_pod_goes_straight_to_imds_and_no_other_pod_does(lab):
    lab.apply(lab.pause_pod("excepted", namespace="kube-system",
                            labels={"kubernetes.azure.com/managedby": "aks"}))
    lab.wait_ready("excepted", "kube-system")
    tokens_before = lab.imds_token_count()
    # A resource nothing asked for yet: NMI's cache cannot answer, so the count shows the call.
    code, body = lab.pod_token("excepted", namespace="kube-system", client_id=KUBELET_CLIENT_ID,
                               resource=VAULT)
    assert code == 200, body
    assert claims(body["access_token"])["appid"] == KUBELET_CLIENT_ID
    assert lab.imds_token_count() == tokens_before + 1

    # The kubelet identity is on the node, but no binding gives it to an ordinary pod.
    code, body = lab.pod_token("unbound", client_id=KUBELET_CLIENT_ID, max_time=20)
    assert code == 400, body
    assert lab.imds_token_count() == tokens_before + 1


def test_a_host_network_pod_is_not_intercepted(lab):
    lab.apply(lab.pause_pod("on-host", host_network=True))
    lab.wait_ready("on-host")
    pid = lab.pod_pid("on-host")
    # The node's namespace (where the emulator owns the metadata address), not the machine's.
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert run("ip", "netns", "identify", str(pid)).strip() == "podid-node0"
    nmi_before = lab.nmi_requests()
    tokens_before = lab.imds_token_count()
    code, body = curl_in(pid, token_url(KUBELET_CLIENT_ID, VAULT), headers={"Metadata": "true"})
    assert code == 200, body
    assert lab.imds_token_count() == tokens_before + 1
    assert lab.nmi_requests() == nmi_before


def test_two_pods_each_get_their_own_identity_and_never_the_others(lab):
    lab.kubectl("create", "namespace", "external-dns", check=False)
    lab.apply_file(SEED / "external-dns-identity.yaml")
    lab.apply(lab.pause_pod("dns-client", namespace="external-dns",
                            labels={"aadpodidbinding": "external-dns-access-azure-dns-identity"}))
    lab.wait_ready("dns-client", "external-dns")
    lab.wait("the ExternalDNS identity Assigned",
             lambda: lab.aai_status("dns-client", "external-dns") == "Assigned")

    code, body = lab.pod_token("dns-client", namespace="external-dns")
    assert code == 200, body
    assert claims(body["access_token"])["appid"] == EXTERNAL_DNS_CLIENT_ID
    code, body = lab.pod_token("demo")
    assert code == 200, body
    assert claims(body["access_token"])["appid"] == DEMO_CLIENT_ID

    # Refused at once: each pod's only binding has its assignment recorded, so no other
    # identity can come (upstream searched 80 s, then answered 404).
    code, body = lab.pod_token("dns-client", namespace="external-dns", client_id=DEMO_CLIENT_ID,
                               max_time=20)
    assert code == 400, body
    code, body = lab.pod_token("demo", client_id=EXTERNAL_DNS_CLIENT_ID, max_time=20)
    assert code == 400, body


def test_tampered_rules_are_restored_within_the_resync_interval(lab):
    lab.node_exec("iptables", "-t", "nat", "-F", "aad-metadata")
    assert not any("DNAT" in rule for rule in lab.nat_rules())
    # --ipt-update-interval-sec is 60 in the shipped manifest.
    lab.wait("NMI restoring its rules", lambda: sorted(lab.nat_rules()) == sorted(UPSTREAM_RULES),
             timeout=90, interval=1)


def test_with_nmi_killed_pods_fail_closed(lab):
    nmi = lab.pods_labelled("component=nmi")[0]["metadata"]["name"]
    nmi_pid = lab.process_of(nmi, "nmi")
    # Everything checked before the kill, and the request sent right after it: kubelet restarts
    # NMI within about a second.
    demo_pid = lab.pod_pid("demo")
    lab.check_pod_namespace(demo_pid)
    tokens_before = lab.imds_token_count()
    os.kill(nmi_pid, signal.SIGKILL)
    code, body = curl_in(demo_pid, token_url(DEMO_CLIENT_ID), headers={"Metadata": "true"}, max_time=5)
    # The rules stay (a killed NMI cannot remove them): the redirected connection finds no
    # listener, so the pod gets nothing, and IMDS saw nothing.
    assert code == 0, body
    assert lab.imds_token_count() == tokens_before
    assert sorted(lab.nat_rules()) == sorted(UPSTREAM_RULES)
    lab.wait("NMI restarted by kubelet", lambda: lab.pod_token("demo", max_time=5)[0] == 200,
             timeout=120, interval=1)


def test_a_pod_recreated_by_its_deployment_keeps_the_identity_through_the_grace_period(lab):
    external_dns_identity = (
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{NODE_GROUP}"
        "/providers/microsoft.managedidentity/userassignedidentities/external-dns-aks-study4dev-je"
    ).lower()
    lab.kubectl("delete", "pod", "dns-client", "-n", "external-dns", "--wait=true")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "dns-app", "namespace": "external-dns"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "dns-app"}},
            "template": lab.pause_pod("ignored", namespace="external-dns", labels={
                "app": "dns-app", "aadpodidbinding": "external-dns-access-azure-dns-identity"}),
        },
    }
    del deployment["spec"]["template"]["apiVersion"], deployment["spec"]["template"]["kind"]
    del deployment["spec"]["template"]["metadata"]["name"]
    lab.apply(deployment)
    lab.kubectl("rollout", "status", "deployment/dns-app", "-n", "external-dns", "--timeout=90s")
    first = lab.pods_labelled("app=dns-app", "external-dns")[0]["metadata"]["name"]
    lab.wait("the first pod's identity", lambda: lab.aai_status(first, "external-dns") == "Assigned")
    assert lab.pod_token(first, namespace="external-dns")[0] == 200

    lab.kubectl("delete", "pod", first, "-n", "external-dns", "--wait=false")

    def replacement_served():
        assert external_dns_identity in lab.scale_set_identities(), \
            "the identity left the scale set while its Deployment's pod was being replaced"
        pods = [p["metadata"]["name"] for p in lab.pods_labelled("app=dns-app", "external-dns")
                if p["metadata"]["name"] != first and p["status"].get("podIP")]
        return pods and lab.aai_status(pods[0], "external-dns") == "Assigned" and \
            lab.pod_token(pods[0], namespace="external-dns", max_time=10)[0] == 200

    lab.wait("the replacement pod served", replacement_served, timeout=90, interval=0.5)
    assert external_dns_identity in lab.scale_set_identities()


def test_uninstall_removes_nmi_and_its_rules(lab):
    """E2: NMI removes its chain and jump when it stops."""
    lab.kubectl("delete", "daemonset", "nmi", "--wait=true", "--timeout=60s")
    lab.wait("NMI's rules removed", lambda: lab.nat_rules() == [], timeout=60)
    # Nothing intercepts any more: the pod reaches the node's IMDS itself and gets the node's
    # identity, which is what pod identity exists to prevent, so the rules are really gone.
    tokens_before = lab.imds_token_count()
    code, body = lab.pod_token("unbound", client_id=KUBELET_CLIENT_ID, max_time=10)
    assert code == 200, body
    assert lab.imds_token_count() == tokens_before + 1
