"""Fixtures for the real-client conformance suite: the emulator process, a clean environment and
the network-hygiene guard. See README.md beside this file."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from azure_emulator import REDIRECTING_ENV_VARS, RunningEmulator, emulator_binary
from network_guard import NetworkGuard
from seed_world import SEED_WORLD_FILE


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No variable may steer a credential to a real endpoint, a proxy or another CA."""
    for name in REDIRECTING_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def network_guard():
    """Fails the test if anything in this process resolves or contacts a non-loopback address,
    even when the client under test swallowed the refusal."""
    guard = NetworkGuard()
    guard.install()
    try:
        yield guard
    finally:
        guard.uninstall()
    if guard.violations:
        pytest.fail(
            "network hygiene: the test tried to leave loopback: " + "; ".join(guard.violations),
            pytrace=False,
        )


@pytest.fixture(scope="session")
def azure_emulator_binary() -> Path:
    return emulator_binary()


@pytest.fixture(scope="session")
def _seed_world_document() -> dict:
    return yaml.safe_load(SEED_WORLD_FILE.read_text())


@pytest.fixture
def seed_world(_seed_world_document) -> dict:
    """A private copy of deploy/emulator/seed-world.yaml to extend for one test."""
    return copy.deepcopy(_seed_world_document)


@pytest.fixture
def start_emulator(azure_emulator_binary, tmp_path, request):
    """``start_emulator(world=None)``: starts azure-emulator with ``world`` (a WorldFile dict;
    default the seed world file itself) and stops it after the test."""
    running: list[RunningEmulator] = []

    def start(world: dict | None = None) -> RunningEmulator:
        workdir = tmp_path / f"emulator-{len(running)}"
        workdir.mkdir()
        if world is None:
            world_file = SEED_WORLD_FILE
        else:
            world_file = workdir / "world.json"  # JSON is YAML: the emulator reads either
            world_file.write_text(json.dumps(world, indent=2))
        emulator = RunningEmulator(azure_emulator_binary, world_file, workdir)
        running.append(emulator)
        emulator.start()
        return emulator

    yield start
    failed = any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )
    for emulator in running:
        emulator.stop()
        if failed:
            print(f"\n--- azure-emulator log ({emulator.log_file}) ---\n{emulator.log_tail()}")


@pytest.fixture
def emulator(start_emulator) -> RunningEmulator:
    """The emulator running the seed world, unchanged."""
    return start_emulator()
