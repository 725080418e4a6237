"""The node story's tests run on the lab node (`scripts/node run -- …`, root): see tests/node/README.md."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lab import Lab, install_podid  # noqa: E402


@pytest.fixture(scope="session")
def lab() -> Lab:
    """The lab with podid installed from its manifests, once for the whole run."""
    lab = Lab()
    install_podid(lab)
    return lab
