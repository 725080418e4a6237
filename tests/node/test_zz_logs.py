"""No token and no secret in any log of the node run (issue 11 §4): runs last (file order). The
logs are those conftest.py's LogHarvest read during the whole run (tests/node/logscan.py): every
container's that wrote anything (NMI, podid's and upstream's, MIC, the demo, ExternalDNS; the
pause containers of the other pods write nothing), kubelet's, containerd's, the emulator's, the
lab DNS's and the control plane's."""

import base64
import re

from lab import ROOT, SEEN_TOKENS
from logscan import findings

WORLD = ROOT / "deploy" / "emulator" / "seed-world.yaml"
SP_KEY = ROOT / "tests" / "python" / "fixtures" / "seed-sp-key.pem"
# What every node run logs, whatever tests ran: NMI and MIC (installed for the session), kubelet,
# containerd and the emulator.
REQUIRED = {
    "NMI": r"^var-log/pods/default_nmi-[^/]+/nmi/",
    "MIC": r"^var-log/pods/default_mic-[^/]+/mic/",
    "kubelet": r"^log/kubelet\.log$",
    "containerd": r"^log/containerd\.log$",
    "the emulator": r"^log/emulator\.log$",
}


def secrets() -> dict[str, str]:
    """What no log may hold besides JWTs and private keys: the tokens tests were given (and their
    signatures alone), the world's service-principal secret (as given and as a Secret's data) and
    a line of the service principal's private key."""
    found = {}
    for number, token in enumerate(sorted(SEEN_TOKENS)):
        found[f"token {number} seen by a test"] = token
        signature = token.rsplit(".", 1)[-1]
        if len(signature) >= 16:
            found[f"the signature of token {number}"] = signature
    secret = re.search(r'secrets:\n\s+- "([^"]+)"', WORLD.read_text()).group(1)
    found["the world's service-principal secret"] = secret
    found["the service-principal secret as Secret data"] = base64.b64encode(secret.encode()).decode()
    found["a line of the service principal's private key"] = SP_KEY.read_text().splitlines()[1]
    return found


def test_the_scan_finds_each_thing_it_looks_for():
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhcHBpZCI6ImNiNTU2OSJ9.c2lnbmF0dXJlLW9mLWEtdG9rZW4"
    secret = secrets()["the world's service-principal secret"]
    sample = {
        "jwt.log": f'{{"level":"debug","body":"{{\\"access_token\\":\\"{token}\\"}}"}}\n',
        "signature.log": "signed c2lnbmF0dXJlLW9mLWEtdG9rZW4 ok\n",
        "secret.log": f"client_secret={secret}&grant_type=client_credentials\n",
        "key.log": "loaded -----BEGIN RSA PRIVATE KEY----- MIIE\n",
        "clean.log": "token served pod=default/demo identity=DEMO eyJhbGciOi truncated\n"
                     f"secret={secret}Longer is another word\n",
    }
    found = findings(sample, {"a signature": "c2lnbmF0dXJlLW9mLWEtdG9rZW4", "the secret": secret})
    assert [f.split(" in ", 1)[1].split(":", 1)[0] for f in found] == [
        "jwt.log", "jwt.log", "signature.log", "secret.log", "key.log"], found
    assert all(token not in f and secret not in f for f in found), found


def test_no_log_of_the_run_holds_a_token_or_a_secret(lab, harvested_logs):
    logs = harvested_logs.logs()
    missing = [what for what, pattern in REQUIRED.items() if not any(re.search(pattern, p) for p in logs)]
    assert not missing, f"not harvested: {missing}; harvested: {sorted(logs)}"
    containers = sorted({p.split("/")[2].rsplit("_", 1)[0] + "/" + p.split("/")[3]
                         for p in logs if p.startswith("var-log/pods/")})
    others = sorted(p for p in logs if not p.startswith("var-log/pods/"))
    print(f"scanned {len(logs)} log files ({sum(map(len, logs.values())):,} characters), "
          f"{len(SEEN_TOKENS)} tokens seen by tests; containers: {', '.join(containers)}; "
          f"other logs: {', '.join(others)}")
    found = findings(logs, secrets())
    assert not found, "\n".join(found[:20])


def test_nmis_log_has_no_colour_codes(lab, harvested_logs):
    """A container's log is a file: NMI writes colour codes only to a terminal."""
    nmi = {p: text for p, text in harvested_logs.logs().items() if re.search(REQUIRED["NMI"], p)}
    assert nmi and all(text.strip() for text in nmi.values()), sorted(nmi)
    assert not [p for p, text in nmi.items() if "\x1b[" in text], sorted(nmi)
