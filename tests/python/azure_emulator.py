"""Runs the `azure-emulator` binary for client tests and talks to its admin API."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from seed_world import REPO_ROOT

# Environment variables that would aim a credential somewhere other than the emulator or change
# which source it uses; scrubbed from the tests' environment and the emulator's.
REDIRECTING_ENV_VARS = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_REGIONAL_AUTHORITY_NAME",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


class EmulatorError(RuntimeError):
    pass


def emulator_binary() -> Path:
    """$PODID_AZURE_EMULATOR_BIN, else the debug binary built with cargo (only this crate)."""
    configured = os.environ.get("PODID_AZURE_EMULATOR_BIN")
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise EmulatorError(f"PODID_AZURE_EMULATOR_BIN={configured} is not a file")
        return path
    build = subprocess.run(
        ["cargo", "build", "-p", "podid-emulator", "--bin", "azure-emulator"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        raise EmulatorError(
            "cargo build -p podid-emulator --bin azure-emulator failed; fix the build or set "
            f"PODID_AZURE_EMULATOR_BIN:\n{build.stderr[-4000:]}"
        )
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug" / "azure-emulator"


@dataclass
class Endpoints:
    arm: str
    entra: str
    admin: str
    imds: dict[str, str]
    ca_file: Path


class RunningEmulator:
    """One emulator process. Start with :meth:`start`; always :meth:`stop`."""

    def __init__(self, binary: Path, world_file: Path, workdir: Path):
        self.binary = binary
        self.world_file = world_file
        self.workdir = workdir
        self.ca_file = workdir / "ca.pem"
        self.endpoints_file = workdir / "endpoints.json"
        self.log_file = workdir / "azure-emulator.log"
        self.process: subprocess.Popen | None = None
        self.endpoints: Endpoints | None = None

    def start(self, ready_within_s: float = 60.0) -> Endpoints:
        env = {k: v for k, v in os.environ.items() if k not in REDIRECTING_ENV_VARS}
        env.setdefault("RUST_LOG", "info")
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    "--world",
                    str(self.world_file),
                    "--ca-file",
                    str(self.ca_file),
                    "--endpoints-file",
                    str(self.endpoints_file),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        # Readiness wait, not a timing assertion: the file appears once every listener is bound.
        deadline = time.monotonic() + ready_within_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmulatorError(
                    f"azure-emulator exited with {self.process.returncode} before it was ready:\n"
                    + self.log_tail()
                )
            endpoints = self._read_endpoints()
            if endpoints is not None:
                self.endpoints = endpoints
                return endpoints
            time.sleep(0.02)
        self.stop()
        raise EmulatorError(f"azure-emulator wrote no endpoints file in {ready_within_s}s:\n{self.log_tail()}")

    def _read_endpoints(self) -> Endpoints | None:
        try:
            raw = json.loads(self.endpoints_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None  # not written yet, or written half-way
        return Endpoints(
            arm=raw["arm"],
            entra=raw["entra"],
            admin=raw["admin"],
            imds=dict(raw["imds"]),
            ca_file=self.ca_file,
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # -- convenience --------------------------------------------------------------------------

    def _require(self) -> Endpoints:
        if self.endpoints is None:
            raise EmulatorError("the emulator is not running")
        return self.endpoints

    def imds(self, machine: str) -> str:
        endpoints = self._require()
        try:
            return endpoints.imds[machine]
        except KeyError:
            raise EmulatorError(
                f"no IMDS for machine {machine!r}; the world has {sorted(endpoints.imds)}"
            ) from None

    @property
    def admin_base(self) -> str:
        """The admin API's base URL (plain HTTP on loopback)."""
        return self._require().admin

    def admin(self, method: str, path: str, body: object | None = None) -> object:
        """Calls the admin API (plain HTTP on loopback) and returns the decoded JSON, if any."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self._require().admin + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else None

    def counters(self) -> dict[str, dict]:
        """``GET /admin/counters``: per operation name, ``{"total": n, "byStatus": {"200": n}}``."""
        raw = self.admin("GET", "/admin/counters")
        if not isinstance(raw, dict):
            raise EmulatorError(f"unexpected /admin/counters body: {raw!r}")
        return raw

    def count(self, operation: str, status: int | None = None) -> int:
        """How many requests the emulator answered as ``operation`` (optionally with ``status``)."""
        entry = self.counters().get(operation, {})
        if status is None:
            return int(entry.get("total", 0))
        return int(entry.get("byStatus", {}).get(str(status), 0))

    def journal(self, surface: str | None = None) -> list[dict]:
        """``GET /admin/journal``: the requests seen, oldest first."""
        query = f"?surface={surface}" if surface else ""
        raw = self.admin("GET", "/admin/journal" + query)
        if not isinstance(raw, list):
            raise EmulatorError(f"unexpected /admin/journal body: {raw!r}")
        return raw
