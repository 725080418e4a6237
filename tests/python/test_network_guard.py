"""The network-hygiene guard itself (docs/testing.md, rules the tests keep): it must fire, before anything
leaves the machine, for exactly the non-loopback attempts."""

from __future__ import annotations

import socket

import msal
import pytest
import requests

from network_guard import NetworkAccessBlocked, NetworkGuard, is_loopback_host
from seed_world import ARM_SCOPE, TENANT_ID, ServicePrincipal


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.5.6.7", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        (b"127.0.0.1", True),
        ("169.254.169.254", False),
        ("10.0.0.1", False),
        ("192.0.2.1", False),
        ("::", False),
        ("0.0.0.0", False),
        ("login.microsoftonline.com", False),
        ("management.azure.com", False),
        ("localhost.evil.example", False),
        (None, False),
    ],
)
def test_only_loopback_hosts_pass(host, loopback):
    assert is_loopback_host(host) is loopback


class RecordingNetwork:
    """Stands in for the real socket functions under a guard, so that even a broken guard in
    this test cannot send anything: it records what reached it."""

    def __init__(self):
        self.reached: list[tuple] = []

    def install(self, monkeypatch):
        monkeypatch.setattr(socket, "getaddrinfo", self.getaddrinfo)
        monkeypatch.setattr(socket, "create_connection", self.create_connection)
        monkeypatch.setattr(socket.socket, "connect", self.connect)
        monkeypatch.setattr(socket.socket, "connect_ex", self.connect_ex)
        monkeypatch.setattr(socket.socket, "sendto", self.sendto)

    def getaddrinfo(self, host, port, *args, **kwargs):
        self.reached.append(("getaddrinfo", host))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    def create_connection(self, address, *args, **kwargs):
        self.reached.append(("create_connection", address[0]))
        return "connection"

    def connect(self, sock, address):
        self.reached.append(("connect", address[0]))

    def connect_ex(self, sock, address):
        self.reached.append(("connect_ex", address[0]))
        return 0

    def sendto(self, sock, data, *rest):
        self.reached.append(("sendto", rest[-1][0]))
        return len(data)


@pytest.fixture
def guarded_stub_network():
    # A private MonkeyPatch, undone here, so the autouse guard underneath is restored intact.
    with pytest.MonkeyPatch.context() as patch:
        network = RecordingNetwork()
        network.install(patch)
        guard = NetworkGuard()
        guard.install()
        try:
            yield network, guard
        finally:
            guard.uninstall()


def test_the_guard_refuses_non_loopback_before_the_network_sees_it(guarded_stub_network):
    network, guard = guarded_stub_network
    attempts = [
        lambda: socket.getaddrinfo("login.microsoftonline.com", 443),
        lambda: socket.getaddrinfo("169.254.169.254", 80),
        lambda: socket.create_connection(("192.0.2.1", 443)),
    ]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        attempts += [
            lambda: sock.connect(("169.254.169.254", 80)),
            lambda: sock.connect_ex(("10.0.0.1", 80)),
            lambda: udp.sendto(b"dns?", ("192.0.2.53", 53)),
            lambda: udp.sendto(b"dns?", 0, ("192.0.2.53", 53)),
        ]
        for attempt in attempts:
            with pytest.raises(NetworkAccessBlocked):
                attempt()
        assert network.reached == []
        assert len(guard.violations) == len(attempts)
        assert any("login.microsoftonline.com" in v for v in guard.violations)

        # Loopback goes through untouched.
        socket.getaddrinfo("localhost", 80)
        socket.create_connection(("127.0.0.1", 80))
        sock.connect(("127.0.0.1", 80))
        assert sock.connect_ex(("::1", 80)) == 0
        udp.sendto(b"ok", ("127.0.0.1", 9))
    finally:
        sock.close()
        udp.close()
    assert network.reached == [
        ("getaddrinfo", "localhost"),
        ("create_connection", "127.0.0.1"),
        ("connect", "127.0.0.1"),
        ("connect_ex", "::1"),
        ("sendto", "127.0.0.1"),
    ]
    assert len(guard.violations) == len(attempts)


def test_the_guard_catches_msal_instance_discovery(emulator):
    """MSAL with an unknown authority host asks the real login.microsoftonline.com unless
    instance discovery is off: exactly what the guard exists for. A second guard is stacked on
    the autouse one, which stays underneath as the safety net (and must see nothing)."""
    session = requests.Session()
    session.verify = str(emulator.endpoints.ca_file)
    inner = NetworkGuard()
    inner.install()
    try:
        with pytest.raises(NetworkAccessBlocked):
            app = msal.ConfidentialClientApplication(
                ServicePrincipal.client_id,
                client_credential=ServicePrincipal.secret,
                authority=f"{emulator.endpoints.entra}/{TENANT_ID}",
                http_client=session,
            )
            app.acquire_token_for_client(scopes=[ARM_SCOPE])
    finally:
        inner.uninstall()
        session.close()
    assert any("login.microsoftonline.com" in v for v in inner.violations), inner.violations
