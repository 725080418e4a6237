"""The sandbox's story and its "act as a pod" command, on a lab scripts/node brought up.

    python3 tests/node/sandbox.py story            install podid, run the seed's story, show it
    python3 tests/node/sandbox.py curl POD [URL]   a request from POD's network namespace

Standard library only. Tokens are never printed: the story and `curl` show their claims.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from lab import (  # noqa: E402
    DEMO_CLIENT_ID,
    DEMO_IDENTITY,
    NODE_GROUP,
    ROOT,
    SUBSCRIPTION,
    Lab,
    LabError,
    claims,
    install_podid,
    token_url,
)

SEED = ROOT / "examples" / "seed"
SHOWN_CLAIMS = ("aud", "iss", "appid", "oid", "xms_mirid", "exp")


def step(text: str) -> float:
    print(f"==> {text}", flush=True)
    return time.monotonic()


def done(started: float, text: str = "") -> None:
    print(f"    ok ({time.monotonic() - started:.1f} s){': ' + text if text else ''}", flush=True)


def story(lab: Lab) -> None:
    started = step("role assignments (scripts/role-assignment), then podid from deploy/infra/"
                   "deployment-rbac.yaml and mic-exception.yaml")
    install_podid(lab)
    done(started, "MIC and NMI Ready; NMI's rules: " + "; ".join(lab.nat_rules()))

    started = step("the seed's AzureIdentity and binding, and its demo pod (examples/seed/)")
    lab.apply_file(SEED / "azureidentity-demo.yaml")
    lab.apply_trusting_lab_ca(SEED / "pod-demo.yaml")
    lab.wait_ready("demo")
    done(started)

    started = step("MIC assigns DEMO to the node's scale set")
    lab.wait("the AzureAssignedIdentity Assigned", lambda: lab.aai_status("demo") == "Assigned")
    if DEMO_IDENTITY.lower() not in lab.scale_set_identities():
        raise LabError("the AzureAssignedIdentity is Assigned but DEMO is not on the scale set")
    done(started, "AzureAssignedIdentity default/demo-default-demo Assigned; the scale set's "
                  "identities: " + ", ".join(sorted(i.rsplit("/", 1)[1] for i in lab.scale_set_identities())))

    started = step("the demo pod asks http://169.254.169.254 for a token (NMI answers)")
    code, body = lab.pod_token("demo", client_id=DEMO_CLIENT_ID)
    if code != 200:
        raise LabError(f"the demo pod got HTTP {code}: {body}")
    seen = claims(body["access_token"])
    done(started, "the token's claims: " + json.dumps({k: seen.get(k) for k in SHOWN_CLAIMS}))

    started = step("the seed's Reader role for DEMO on the node resource group; the demo lists VMs")
    lab.admin("POST", "/admin/arm/role-assignments", {
        "principal": "DEMO", "role": "Reader",
        "scope": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_GROUP}",
    })
    lab.wait("the demo listing VMs", lambda: "scale set VM" in lab.container_log("demo", "demo"), timeout=60)
    # CRI log lines: "<time> stdout F <message>"; the demo's message: "… scale set VM name=… id=…".
    listed = [line.split(" ", 3)[-1].split("scale set VM", 1)[1].strip()
              for line in lab.container_log("demo", "demo").splitlines() if "scale set VM" in line]
    done(started, "the demo's listing:\n      " + "\n      ".join(listed))


def curl(lab: Lab, pod: str, url: str | None) -> int:
    namespace, _, name = pod.rpartition("/")
    code, body = lab.pod_curl(name, url or token_url(), namespace=namespace or "default",
                              headers={"Metadata": "true"})
    try:
        answer = json.loads(body)
        if isinstance(answer, dict) and "access_token" in answer:
            answer["access_token"] = {"claims (the token itself is not shown)": claims(answer["access_token"])}
        body = json.dumps(answer, indent=2)
    except ValueError:
        pass
    print(f"HTTP {code}\n{body}")
    return 0 if code == 200 else 1


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("story", "curl"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        lab = Lab()
        if argv[0] == "story":
            story(lab)
            return 0
        if len(argv) < 2:
            print("usage: sandbox.py curl [NAMESPACE/]POD [URL]", file=sys.stderr)
            return 2
        return curl(lab, argv[1], argv[2] if len(argv) > 2 else None)
    except LabError as error:
        print(f"sandbox: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
