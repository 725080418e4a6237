"""Every log of a node run, read while the run goes on, and the scan for tokens and secrets in them
(tests/node/test_zz_logs.py; the same idea as crates/nmi/tests/attacks.rs's log scan).

kubelet removes a pod's log files soon after the pod is deleted (NMI's pods replaced by
test_upstream_nmi, MIC and NMI uninstalled by test_story), so conftest.py starts a `LogHarvest` for
the session: every second it reads what was appended to each log file under the lab's state dir
(containers' logs under kubelet's /var/log/pods, kubelet, containerd, the emulator, the lab's DNS
and forwarders, the control plane's API server, controller manager, scheduler and etcd).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

# A JWT: header and claims are base64url JSON objects, so both start with "eyJ" ('{"').
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


def log_files(state: Path) -> list[Path]:
    """The run's log files: everything under the node's log dirs, and the control plane's *.log."""
    files = []
    for root in (state / "log", state / "var-log"):
        # os.walk passes over a directory that goes while it walks (kubelet removing a deleted
        # pod's logs); Path.rglob raised, which ended the harvest thread in one CI run.
        for folder, _dirs, names in os.walk(root):
            files += [p for p in (Path(folder, name) for name in names)
                      if p.is_file() and not p.is_symlink()]
    control_plane = state / "control-plane"
    if control_plane.is_dir():
        files += [p for p in control_plane.glob("*.log") if p.is_file()]
    return sorted(files)


class LogHarvest:
    """Appends what each log file gained since the last sweep, every `interval` seconds."""

    def __init__(self, state: Path, interval: float = 1.0) -> None:
        self.state, self.interval = state, interval
        self.offsets: dict[Path, int] = {}
        self.texts: dict[Path, list[bytes]] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name="log-harvest")

    def sweep(self) -> None:
        with self.lock:
            for path in log_files(self.state):
                try:
                    with path.open("rb") as f:
                        f.seek(0, 2)
                        size = f.tell()
                        at = self.offsets.get(path, 0)
                        if size < at:  # truncated or replaced: read it again from the start
                            at = 0
                        f.seek(at)
                        data = f.read(size - at)
                except OSError:  # removed between the listing and the read
                    continue
                self.offsets[path] = at + len(data)
                if data:
                    self.texts.setdefault(path, []).append(data)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.sweep()

    def logs(self) -> dict[str, str]:
        """Everything read so far (a last sweep first), by path relative to the state dir."""
        self.sweep()
        with self.lock:
            return {str(path.relative_to(self.state)): b"".join(chunks).decode(errors="replace")
                    for path, chunks in self.texts.items()}

    def __enter__(self) -> LogHarvest:
        self.sweep()
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stopped.set()
        self.thread.join()


def findings(logs: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """What a log must not hold, with where (file and line number) and the line redacted:
    anything JWT-shaped, a private key, and each of `secrets` (what → value) as a whole word."""
    found = []
    for name, text in logs.items():
        for number, line in enumerate(text.splitlines(), 1):
            hits = [("something JWT-shaped", m.group(0)) for m in JWT.finditer(line)]
            hits += [("a private key", m.group(0)) for m in PRIVATE_KEY.finditer(line)]
            hits += [(what, value) for what, value in secrets.items()
                     if re.search(re.escape(value) + r"(?![A-Za-z0-9])", line)]
            for what, value in hits:
                found.append(f"{what} in {name}:{number}: {line.replace(value, '<REDACTED>')[:300]}")
    return found
