"""Attacks only a real node allows (issue 11 §4; the loopback-level battery is
crates/nmi/tests/attacks.rs): reaching NMI's listeners from a pod other than through the
metadata address. Each must get nothing, and the emulator's IMDS must issue nothing."""

import pytest

from lab import DEMO_CLIENT_ID, token_url

NODE_IP = "10.77.0.2"


@pytest.fixture(scope="module")
def attacker(lab):
    lab.apply(lab.pause_pod("attacker", labels={"aadpodidbinding": "not-bound-anywhere"}))
    lab.wait_ready("attacker")
    return lab


@pytest.mark.parametrize("url", [
    # NMI's host listener (/host/token names any pod in headers) is on the node's 127.0.0.1 only.
    f"http://{NODE_IP}:2580/host/token?resource=https://management.azure.com/",
    "http://169.254.169.254:2580/host/token?resource=https://management.azure.com/",
    # NMI's metadata listener is on 127.0.0.1: only the DNAT of port 80 reaches it.
    f"http://{NODE_IP}:2579" + token_url(DEMO_CLIENT_ID).removeprefix("http://169.254.169.254"),
    # IMDS itself on another port of the metadata address (the DNAT covers port 80 only).
    "http://169.254.169.254:8080" + token_url(DEMO_CLIENT_ID).removeprefix("http://169.254.169.254"),
], ids=["host-token-on-node-ip", "host-token-on-metadata-ip", "nmi-port-on-node-ip", "metadata-ip-other-port"])
def test_a_pod_reaches_no_listener_but_through_the_redirect(attacker, url):
    lab = attacker
    tokens_before = lab.imds_token_count()
    code, body = lab.pod_curl("attacker", url, headers={"Metadata": "true", "podname": "demo", "podns": "default"},
                              max_time=5)
    assert code == 0, (code, body)
    assert lab.imds_token_count() == tokens_before
