"""Unmodified SDK clients with default settings, from inside pods on the lab node (issue 11 §3):
no environment variable or option points anywhere, so each client calls 169.254.169.254 as it
would on AKS, NMI's rules redirect it, and NMI answers. In the same run, the status-code table
holds for each: a temporary failure is retried to success, a permanent one stops after one call.

Each client runs in the pod's network namespace only (`nsenter -n`, after `check_pod_namespace`),
with an empty environment but PATH. The Python clients are the pinned ones of tests/python; the Go
one is azidentity's ManagedIdentityCredential at tests/go's pin (tests/go/cmd/podtoken); the Rust
one is the azure_identity 1.x crate's ManagedIdentityCredential (tests/rust-sdk, its own pinned
Cargo project with the same command line and output as the Go one)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import DEMO_CLIENT_ID, ROOT, LabError, claims

SEED = ROOT / "examples" / "seed"
PYTHON = sys.executable  # the venv of tests/python's pins, which runs this suite

# Each prints {"token": …} or {"error": …} as JSON; the token is reduced to its claims below.
CLIENTS = {
    "azure-identity (sync)": """
import json, sys
from azure.identity import ManagedIdentityCredential
try:
    token = ManagedIdentityCredential(client_id=sys.argv[1] or None).get_token(sys.argv[2] + "/.default")
    print(json.dumps({"token": token.token}))
except Exception as error:
    print(json.dumps({"error": type(error).__name__ + ": " + str(error)[:300]}))
""",
    "azure-identity (async)": """
import asyncio, json, sys
from azure.identity.aio import ManagedIdentityCredential
async def main():
    async with ManagedIdentityCredential(client_id=sys.argv[1] or None) as credential:
        try:
            token = await credential.get_token(sys.argv[2] + "/.default")
            print(json.dumps({"token": token.token}))
        except Exception as error:
            print(json.dumps({"error": type(error).__name__ + ": " + str(error)[:300]}))
asyncio.run(main())
""",
    # msal leaves retries to the HTTP client it is given; this is the session its documentation
    # recommends (as tests/python/test_nmi_clients.py uses).
    "msal": """
import json, sys, requests, msal
from requests.adapters import HTTPAdapter
from urllib3.util import Retry
identity = msal.UserAssignedManagedIdentity(client_id=sys.argv[1]) if sys.argv[1] else msal.SystemAssignedManagedIdentity()
session = requests.Session()
session.mount("http://", HTTPAdapter(max_retries=Retry(total=3, backoff_factor=0.1, status_forcelist=[429, 500, 501, 502, 503, 504])))
client = msal.ManagedIdentityClient(identity, http_client=session)
result = client.acquire_token_for_client(resource=sys.argv[2])
print(json.dumps({"token": result["access_token"]} if "access_token" in result else {"error": str(result)[:300]}))
""",
}


GO_CLIENT = "azidentity (Go)"
RUST_CLIENT = "azure_identity (Rust)"
# Compiled clients: `podtoken CLIENT_ID RESOURCE`, printing {"token": …} or {"error": …}.
BINARY_CLIENTS = [GO_CLIENT, RUST_CLIENT]


@pytest.fixture(scope="module")
def go_client(tmp_path_factory):
    binary = tmp_path_factory.mktemp("go") / "podtoken"
    subprocess.run(["go", "build", "-o", str(binary), "./cmd/podtoken"], cwd=ROOT / "tests" / "go",
                   check=True, timeout=600)
    return binary


def cargo() -> str:
    """cargo from PATH, else rustup's default place (a root shell whose PATH lacks ~/.cargo/bin)."""
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    found = shutil.which("cargo") or shutil.which("cargo", path=str(home / "bin"))
    if not found:
        raise LabError("cargo is missing (rustup, as .ci/run expects): needed to build tests/rust-sdk")
    return found


@pytest.fixture(scope="module")
def rust_client():
    # Under the repository's target/ (CI caches it); about 3 min cold on 2 cores, under 1 s warm.
    target = ROOT / "target" / "rust-sdk"
    subprocess.run([cargo(), "build", "--release", "--locked", "--manifest-path",
                    str(ROOT / "tests" / "rust-sdk" / "Cargo.toml")],
                   env={**os.environ, "CARGO_TARGET_DIR": str(target)}, check=True, timeout=900)
    return target / "release" / "podtoken"


@pytest.fixture(scope="module")
def sdk_pods(lab, go_client, rust_client):
    lab.sdk_binaries = {GO_CLIENT: go_client, RUST_CLIENT: rust_client}
    lab.apply_file(SEED / "azureidentity-demo.yaml")
    lab.apply([lab.pause_pod("sdk-bound", labels={"aadpodidbinding": "DEMO"}),
               lab.pause_pod("sdk-unbound")])
    lab.wait_ready("sdk-bound")
    lab.wait_ready("sdk-unbound")
    lab.wait("the SDK pod's identity Assigned", lambda: lab.aai_status("sdk-bound") == "Assigned")
    return lab


def run_client(lab, pod: str, client: str, client_id: str, resource: str) -> dict:
    pid = lab.pod_pid(pod)
    lab.check_pod_namespace(pid)
    program = ([str(lab.sdk_binaries[client])] if client in BINARY_CLIENTS
               else [PYTHON, "-c", CLIENTS[client]])
    done = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "env", "-i", f"PATH={os.environ['PATH']}",
         *program, client_id, resource],
        capture_output=True, text=True, timeout=240,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise LabError(f"{client} exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("client", [*CLIENTS, *BINARY_CLIENTS])
@pytest.mark.parametrize("client_id", [DEMO_CLIENT_ID, ""], ids=["with-client-id", "no-client-id"])
def test_default_client_in_a_pod_gets_its_identity(sdk_pods, client, client_id):
    lab = sdk_pods
    answer = run_client(lab, "sdk-bound", client, client_id, "https://management.azure.com")
    assert "token" in answer, answer
    assert claims(answer["token"])["appid"] == DEMO_CLIENT_ID


# A resource per client, so NMI's cache cannot answer and the emulator's IMDS is really called.
FRESH_RESOURCES = {
    "azure-identity (sync)": "https://vault.azure.net",
    "azure-identity (async)": "https://storage.azure.com",
    "msal": "https://graph.microsoft.com",
    GO_CLIENT: "https://database.windows.net",
    RUST_CLIENT: "https://containerregistry.azure.net",
}

# Like azure-identity and azidentity, the Rust crate retries IMDS's 404, 410, 429 and 5xx and not
# NMI's 400 (IMDS's retry guidance), but it waits longest before its first retry: 1.34 s doubled,
# plus up to 255 ms of jitter (azidentity: 1.6-2.6 s; azure-identity: none), then 5.36 s, 10.72 s,
# 21.44 s, 30 s, at most 6 retries and none once 72 s have passed since the first answer
# (azure_identity 1.0.0's VirtualMachineManagedIdentityCredential, azure_core 1.1.0's
# ExponentialRetryPolicy). Its wait is checked as a lower bound.
RETRY_DELAY_AT_LEAST = {RUST_CLIENT: 2.68}


@pytest.mark.parametrize("client", [*CLIENTS, *BINARY_CLIENTS])
def test_a_temporary_imds_failure_is_retried_to_success(sdk_pods, client):
    lab = sdk_pods
    lab.admin("POST", "/admin/faults", {
        "surface": "imds", "path": "/metadata/identity/oauth2/token", "times": 1,
        "action": {"kind": "error", "status": 500},
    })
    try:
        before = lab.nmi_requests()
        started = time.monotonic()
        answer = run_client(lab, "sdk-bound", client, DEMO_CLIENT_ID, FRESH_RESOURCES[client])
        took = time.monotonic() - started
        unused = lab.admin("GET", "/admin/faults")
    finally:
        lab.admin("DELETE", "/admin/faults")  # the rule is gone once used; this clears a leftover
    assert "token" in answer, answer
    # IMDS failed once (the rule was used up) and NMI answered 503; the client asked again.
    assert unused == [], unused
    assert lab.nmi_requests() == before + 2
    assert took >= RETRY_DELAY_AT_LEAST.get(client, 0), took


@pytest.mark.parametrize("client", [*CLIENTS, *BINARY_CLIENTS])
def test_a_permanent_refusal_stops_after_one_request(sdk_pods, client):
    lab = sdk_pods
    before = lab.nmi_requests()
    answer = run_client(lab, "sdk-unbound", client, DEMO_CLIENT_ID, "https://management.azure.com")
    assert "error" in answer, answer
    assert lab.nmi_requests() == before + 1
