"""The node story's tests run on the lab node (`scripts/node run -- …`, root): see tests/node/README.md."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lab import Lab, install_podid  # noqa: E402
from logscan import LogHarvest  # noqa: E402


@pytest.fixture(scope="session")
def lab() -> Lab:
    """The lab with podid installed from its manifests, once for the whole run."""
    lab = Lab()
    install_podid(lab)
    return lab


# The session's harvest, for the report of a failed test.
HARVEST: list[LogHarvest] = []
# The logs whose last lines a failed test's report ends with: NMI's, MIC's and the
# emulator's, whose order of events a failure in CI can only be understood from.
TAILED = re.compile(r"^var-log/pods/default_(nmi|mic)-[^/]+/|^log/emulator\.log$")
TAIL_LINES = 40


@pytest.fixture(scope="session", autouse=True)
def harvested_logs():
    """Every log of the run, read while it runs (kubelet removes a deleted pod's logs):
    tests/node/test_zz_logs.py scans them at the end."""
    with LogHarvest(Lab().state) as harvest:
        HARVEST.append(harvest)
        yield harvest
        HARVEST.remove(harvest)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the last lines of NMI's, MIC's and the emulator's logs
    (none holds a token or secret: test_zz_logs.py checks every line)."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or not HARVEST:
        return
    for path, text in sorted(HARVEST[0].logs().items()):
        if TAILED.search(path):
            report.sections.append((f"last lines of {path}", "\n".join(text.splitlines()[-TAIL_LINES:])))
