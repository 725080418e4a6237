"""The ``nmi`` binary as a test process: started for one node against the test control plane and
one emulated machine's IMDS, on loopback ports chosen here, without touching iptables.

Pods reach it as they would through the DNAT rule: by connecting to its metadata listener from
their own IP. Every pod IP here is a 127.0.0.0/8 address, which Linux routes locally, so a client
that binds to it as its source is seen by NMI as that pod.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import aiohttp
import requests
from azure.core.pipeline.transport import AioHttpTransport, RequestsTransport
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

NMI_BIN_ENV = "PODID_NMI_BIN"


class NmiError(RuntimeError):
    pass


def nmi_binary() -> Path:
    path = os.environ.get(NMI_BIN_ENV)
    if not path:
        raise NmiError(
            f"{NMI_BIN_ENV} is not set; build it with `cargo build -p podid-nmi --bin nmi` "
            f"and set {NMI_BIN_ENV}=target/debug/nmi (scripts/test does)"
        )
    binary = Path(path)
    if not binary.is_file():
        raise NmiError(f"{NMI_BIN_ENV}={path} does not exist")
    return binary


PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningNmi:
    """One NMI process; ``base`` is what a pod sets as AZURE_POD_IDENTITY_AUTHORITY_HOST."""

    def __init__(self, binary: Path, *, node: str, kubeconfig: str, imds: str, workdir: Path,
                 extra_args: tuple[str, ...] = ()):
        self.log_path = workdir / "nmi.log"
        # NMI refuses to start on a kubenet node (upstream's guard); this node's kubelet defaults
        # name no network plugin.
        kubelet_defaults = workdir / "kubelet-defaults"
        kubelet_defaults.write_text("KUBELET_FLAGS=--v=2\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
        env.setdefault("RUST_LOG", "info")
        # A port found free here can be taken by another process before NMI binds it: NMI then
        # exits naming the address in use, and a fresh set of ports is tried.
        for attempt in range(PORT_ATTEMPTS):
            self.port = free_port()
            self.probe_port = free_port()
            self.metrics_port = free_port()
            self.host_port = free_port()
            args = [
                str(binary),
                f"--node={node}",
                f"--kubeconfig={kubeconfig}",
                "--nmi-listen-address=127.0.0.1",
                f"--nmi-port={self.port}",
                f"--http-probe-port={self.probe_port}",
                f"--prometheus-port={self.metrics_port}",
                f"--host-token-port={self.host_port}",
                f"--imds-endpoint={imds}",
                f"--kubelet-config={kubelet_defaults}",
                "--manage-iptables=false",
                *extra_args,
            ]
            self._log = self.log_path.open("wb")
            self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
            self.base = f"http://127.0.0.1:{self.port}"
            try:
                self._wait_active()
                return
            except NmiError:
                self.stop()
                if attempt + 1 == PORT_ATTEMPTS or "in use" not in self.log_path.read_text(errors="replace"):
                    raise

    def _wait_active(self, within_s: float = 60.0) -> None:
        deadline = time.monotonic() + within_s
        url = f"http://127.0.0.1:{self.probe_port}/healthz"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NmiError(f"nmi exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.read() == b"Active":
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise NmiError(f"nmi was not Active within {within_s}s:\n{self.log_tail()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            return r.read().decode()

    def log_tail(self, lines: int = 60) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class _SourceBoundAdapter(HTTPAdapter):
    def __init__(self, source_ip: str, retry: Retry | None):
        self._source = (source_ip, 0)
        super().__init__(max_retries=retry if retry is not None else 0)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = self._source
        super().init_poolmanager(*args, **kwargs)


def bound_session(
    source_ip: str, seen: list | None = None, retry: Retry | None = None
) -> requests.Session:
    """A requests session whose connections leave from ``source_ip``; each final answer's status
    is appended to ``seen`` when given, so a test can count the client's attempts. ``retry`` is
    urllib3's retry policy (none by default): msal leaves retries to its HTTP client."""
    session = requests.Session()
    adapter = _SourceBoundAdapter(source_ip, retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if seen is not None:
        session.hooks["response"].append(lambda r, *a, **k: seen.append(r.status_code))
    return session


def sync_transport(source_ip: str, seen: list | None = None) -> RequestsTransport:
    return RequestsTransport(session=bound_session(source_ip, seen), session_owner=True)


def async_transport(source_ip: str, seen: list | None = None) -> AioHttpTransport:
    """Built inside the event loop that uses it (aiohttp sessions belong to one loop)."""
    trace = aiohttp.TraceConfig()
    if seen is not None:

        async def on_end(session, context, params):
            seen.append(params.response.status)

        trace.on_request_end.append(on_end)
    connector = aiohttp.TCPConnector(local_addr=(source_ip, 0))
    session = aiohttp.ClientSession(connector=connector, trace_configs=[trace])
    return AioHttpTransport(session=session, session_owner=True)
