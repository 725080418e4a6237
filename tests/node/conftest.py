"""The node story's tests run on the lab node (`scripts/node run -- …`, root): see tests/node/README.md."""

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


@pytest.fixture(scope="session", autouse=True)
def harvested_logs():
    """Every log of the run, read while it runs (kubelet removes a deleted pod's logs):
    tests/node/test_zz_logs.py scans them at the end."""
    with LogHarvest(Lab().state) as harvest:
        yield harvest
