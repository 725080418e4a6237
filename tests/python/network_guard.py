"""Network hygiene for client tests: nothing may resolve or reach an address outside loopback.

Real Azure clients contact Microsoft on their own (MSAL's instance discovery goes to
login.microsoftonline.com unless it is switched off), and this machine must never send a packet
outside 127.0.0.0/8. The guard wraps the Python socket entry points every client here goes
through (requests/urllib3, aiohttp/asyncio, MSAL) and refuses, *before* calling the wrapped
function, any name other than ``localhost`` and any address that is not loopback. Each refusal is
recorded so a client that swallows the exception still fails the test (see conftest.py).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


class NetworkAccessBlocked(RuntimeError):
    """A client under test tried to resolve or reach something outside loopback.

    Deliberately not an OSError: HTTP stacks treat OSError as a connection failure and retry it
    with backoff, which would hide the attempt behind a slow, vague failure.
    """


def is_loopback_host(host: object) -> bool:
    """Whether ``host`` (an IP literal or a name, str or bytes) stays on this machine."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.strip("[]").split("%", 1)[0]
    if name.lower() in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _is_inet_address(address: object) -> bool:
    """AF_INET/AF_INET6 socket addresses are tuples; AF_UNIX ones are paths (always local)."""
    return isinstance(address, tuple) and len(address) >= 2


@dataclass
class NetworkGuard:
    """Installs over whatever the socket module currently holds; ``uninstall`` restores it."""

    violations: list[str] = field(default_factory=list)
    _saved: dict[str, object] = field(default_factory=dict)

    def _refuse(self, what: str) -> None:
        self.violations.append(what)
        raise NetworkAccessBlocked(
            f"network hygiene: refused {what}; tests may only use loopback "
            "(a client contacting Microsoft on its own? e.g. MSAL instance discovery: pass "
            "instance_discovery=False / disable_instance_discovery=True)"
        )

    def install(self) -> None:
        if self._saved:
            raise RuntimeError("this NetworkGuard is already installed")
        guard = self
        real_getaddrinfo = socket.getaddrinfo
        real_create_connection = socket.create_connection
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex
        real_sendto = socket.socket.sendto
        self._saved = {
            "getaddrinfo": real_getaddrinfo,
            "create_connection": real_create_connection,
            "connect": real_connect,
            "connect_ex": real_connect_ex,
            "sendto": real_sendto,
        }

        def check_address(operation: str, address: object) -> None:
            if _is_inet_address(address) and not is_loopback_host(address[0]):
                guard._refuse(f"{operation} to {address[0]!r}")

        def getaddrinfo(host, *args, **kwargs):
            if host is not None and not is_loopback_host(host):
                guard._refuse(f"resolving {host!r}")
            results = real_getaddrinfo(host, *args, **kwargs)
            for *_, sockaddr in results:
                check_address("resolving to", sockaddr)
            return results

        def create_connection(address, *args, **kwargs):
            check_address("create_connection", address)
            return real_create_connection(address, *args, **kwargs)

        def connect(sock, address):
            check_address("connect", address)
            return real_connect(sock, address)

        def connect_ex(sock, address):
            check_address("connect_ex", address)
            return real_connect_ex(sock, address)

        def sendto(sock, data, *rest):
            # sendto(data, address) or sendto(data, flags, address)
            if rest:
                check_address("sendto", rest[-1])
            return real_sendto(sock, data, *rest)

        socket.getaddrinfo = getaddrinfo
        socket.create_connection = create_connection
        socket.socket.connect = connect
        socket.socket.connect_ex = connect_ex
        socket.socket.sendto = sendto

    def uninstall(self) -> None:
        if not self._saved:
            return
        socket.getaddrinfo = self._saved["getaddrinfo"]
        socket.create_connection = self._saved["create_connection"]
        socket.socket.connect = self._saved["connect"]
        socket.socket.connect_ex = self._saved["connect_ex"]
        socket.socket.sendto = self._saved["sendto"]
        self._saved = {}
