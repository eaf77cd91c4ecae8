"""hv.net: the switch, NIC ports, the slirp-style host stack and pcap capture."""
from __future__ import annotations

import shutil
import struct
import subprocess
import threading

import pytest
from hypothesis import given, settings, strategies as st

from hv import net
from hv.net import (
    BROADCAST_MAC, USERNET_DNS_MAC, NetPort, PcapWriter, Switch, UserNet, inet_checksum, ip_bytes,
    make_network, parse_mac, switch_named,
)

GUEST_MAC = parse_mac("52:54:00:12:34:56")   # QEMU's default NIC MAC
GUEST_IP = ip_bytes("10.0.2.15")             # what slirp's DHCP would hand out
HOST_IP = ip_bytes("10.0.2.2")
DNS_IP = ip_bytes("10.0.2.3")
SLIRP_HOST_MAC = bytes.fromhex("52550a000202")


# --- frame builders (independent of hv.net's own packers) -----------------------

def eth(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def arp_request(sha: bytes, sip: bytes, tip: bytes) -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, sha, sip, b"\0" * 6, tip)
    return eth(BROADCAST_MAC, sha, 0x0806, body)


def arp_reply(sha: bytes, sip: bytes, tha: bytes, tip: bytes) -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, sha, sip, tha, tip)
    return eth(tha, sha, 0x0806, body)


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, *, ident=0x1234, ttl=64,
         off=0x4000, tos=0) -> bytes:
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload), ident, off,
                                ttl, proto, 0, src, dst))
    struct.pack_into("!H", hdr, 10, inet_checksum(hdr))
    return bytes(hdr) + payload


def icmp_echo(ident: int, seq: int, data: bytes, kind: int = 8) -> bytes:
    msg = bytearray(struct.pack("!BBHHH", kind, 0, 0, ident, seq) + data)
    struct.pack_into("!H", msg, 2, inet_checksum(msg))
    return bytes(msg)


def udp(src: bytes, dst: bytes, sport: int, dport: int, data: bytes) -> bytes:
    length = 8 + len(data)
    seg = bytearray(struct.pack("!HHHH", sport, dport, length, 0) + data)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, length)
    struct.pack_into("!H", seg, 6, inet_checksum(pseudo + seg) or 0xFFFF)
    return bytes(seg)


def ping_frame(data=b"hv ping payload!", ident=0x4242, seq=7, dst_ip=HOST_IP,
               dst_mac=SLIRP_HOST_MAC) -> bytes:
    return eth(dst_mac, GUEST_MAC, 0x0800, ipv4(GUEST_IP, dst_ip, 1, icmp_echo(ident, seq, data)))


def parse_ip(frame: bytes) -> dict:
    ver_ihl, tos, total, ident, off, ttl, proto, csum, src, dst = struct.unpack_from(
        "!BBHHHBBH4s4s", frame, 14)
    hlen = (ver_ihl & 15) * 4
    return dict(ver=ver_ihl >> 4, hlen=hlen, tos=tos, total=total, id=ident, off=off, ttl=ttl,
                proto=proto, src=src, dst=dst, header=frame[14:14 + hlen],
                payload=frame[14 + hlen:14 + total])


# --- test fixtures ------------------------------------------------------------------

class Collector:
    """A NIC model stand-in: accepts every frame and remembers it."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def __call__(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True


def drain(port: NetPort) -> list[bytes]:
    got = Collector()
    port.poll(got)
    return got.frames


@pytest.fixture
def user_lan():
    switch = Switch("test")
    stack = UserNet(switch)
    port = switch.new_port("guest")
    return switch, stack, port


class FakeHost:
    """A minimal guest stack behind a NetPort: answers ARP for its IP and echo
    requests to it, and can ping a neighbour (ARP first, then ICMP)."""

    def __init__(self, switch: Switch, mac: str, ip: str) -> None:
        self.mac, self.ip = parse_mac(mac), ip_bytes(ip)
        self.port = switch.new_port(mac)
        self.neighbours: dict[bytes, bytes] = {}
        self.replies: list[bytes] = []

    def receive(self, frame: bytes) -> bool:
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        if ethertype == 0x0806:
            op, sha, sip, _tha, tip = struct.unpack_from("!6xH6s4s6s4s", frame, 14)
            if op == 1 and tip == self.ip:
                self.port.send(arp_reply(self.mac, self.ip, sha, sip))
            elif op == 2 and tip == self.ip:
                self.neighbours[sip] = sha
        elif ethertype == 0x0800:
            ip = parse_ip(frame)
            if ip["dst"] == self.ip and ip["proto"] == 1:
                icmp = ip["payload"]
                if icmp[0] == 8:
                    reply = icmp_echo(*struct.unpack_from("!HH", icmp, 4), icmp[8:], kind=0)
                    self.port.send(eth(frame[6:12], self.mac, 0x0800,
                                       ipv4(self.ip, ip["src"], 1, reply)))
                elif icmp[0] == 0:
                    self.replies.append(icmp)
        return True

    def poll(self) -> int:
        return self.port.poll(self.receive)

    def arp(self, ip: str) -> None:
        self.port.send(arp_request(self.mac, self.ip, ip_bytes(ip)))

    def ping(self, ip: str, data: bytes) -> None:
        dst = ip_bytes(ip)
        self.port.send(eth(self.neighbours[dst], self.mac, 0x0800,
                           ipv4(self.ip, dst, 1, icmp_echo(1, 1, data))))


def settle(*hosts: FakeHost) -> None:
    """Poll every host until no frame is left in flight (bounded)."""
    for _ in range(20):
        if sum(h.poll() for h in hosts) == 0:
            return
    raise AssertionError("frames still bouncing after 20 rounds")


# --- UserNet: ARP ----------------------------------------------------------------------

def test_arp_request_for_gateway_gets_reply_with_slirp_mac(user_lan):
    _, _, port = user_lan
    port.send(arp_request(GUEST_MAC, GUEST_IP, HOST_IP))
    [reply] = drain(port)
    assert reply[0:6] == GUEST_MAC and reply[6:12] == SLIRP_HOST_MAC
    assert struct.unpack_from("!H", reply, 12)[0] == 0x0806
    hrd, pro, hln, pln, op, sha, sip, tha, tip = struct.unpack_from("!HHBBH6s4s6s4s", reply, 14)
    assert (hrd, pro, hln, pln, op) == (1, 0x0800, 6, 4, 2)
    assert (sha, sip, tha, tip) == (SLIRP_HOST_MAC, HOST_IP, GUEST_MAC, GUEST_IP)


def test_arp_reply_is_padded_to_64_bytes_like_slirp(user_lan):
    _, _, port = user_lan
    port.send(arp_request(GUEST_MAC, GUEST_IP, HOST_IP))
    [reply] = drain(port)
    assert len(reply) == 64 and reply[42:] == bytes(22)


def test_arp_request_for_dns_address_gets_its_own_slirp_mac(user_lan):
    _, _, port = user_lan
    port.send(arp_request(GUEST_MAC, GUEST_IP, DNS_IP))
    [reply] = drain(port)
    assert reply[22:28] == bytes.fromhex("52550a000203")


def test_arp_request_for_other_address_is_not_answered(user_lan):
    _, _, port = user_lan
    port.send(arp_request(GUEST_MAC, GUEST_IP, ip_bytes("10.0.2.99")))
    assert drain(port) == []


def test_gratuitous_arp_is_learned_but_not_answered(user_lan):
    _, stack, port = user_lan
    port.send(arp_request(GUEST_MAC, GUEST_IP, GUEST_IP))
    assert drain(port) == []
    assert stack.arp_table[GUEST_IP] == GUEST_MAC


# --- UserNet: ICMP ---------------------------------------------------------------------

def test_ping_to_gateway_gets_echo_reply_with_identical_payload(user_lan):
    _, _, port = user_lan
    payload = bytes(range(56))
    port.send(ping_frame(payload, ident=0xBEEF, seq=3))
    [reply] = drain(port)
    ip = parse_ip(reply)
    kind, code, _csum, ident, seq = struct.unpack_from("!BBHHH", ip["payload"])
    assert (kind, code, ident, seq) == (0, 0, 0xBEEF, 3)
    assert ip["payload"][8:] == payload


def test_echo_reply_has_valid_ip_and_icmp_checksums(user_lan):
    _, _, port = user_lan
    port.send(ping_frame(b"odd-length payload"))
    [reply] = drain(port)
    ip = parse_ip(reply)
    assert inet_checksum(ip["header"]) == 0
    assert inet_checksum(ip["payload"]) == 0
    assert struct.unpack_from("!H", ip["header"], 10)[0] != 0


def test_echo_reply_ip_header_follows_slirp(user_lan):
    _, _, port = user_lan
    port.send(ping_frame())
    [reply] = drain(port)
    ip = parse_ip(reply)
    assert reply[0:6] == GUEST_MAC and reply[6:12] == SLIRP_HOST_MAC
    assert (ip["ver"], ip["hlen"], ip["ttl"], ip["proto"]) == (4, 20, 255, 1)
    assert (ip["src"], ip["dst"]) == (HOST_IP, GUEST_IP)
    assert ip["off"] == 0x4000          # DF copied from the request
    assert ip["total"] == len(reply) - 14


def test_ip_ids_count_up_from_zero_per_stack(user_lan):
    _, _, port = user_lan
    for seq in range(3):
        port.send(ping_frame(seq=seq))
    assert [parse_ip(f)["id"] for f in drain(port)] == [0, 1, 2]


def test_ping_to_dns_address_is_answered_from_it(user_lan):
    _, _, port = user_lan
    port.send(ping_frame(dst_ip=DNS_IP, dst_mac=bytes.fromhex("52550a000203")))
    [reply] = drain(port)
    assert parse_ip(reply)["src"] == DNS_IP


def test_ping_to_an_outside_address_is_dropped(user_lan):
    _, stack, port = user_lan
    port.send(ping_frame(dst_ip=ip_bytes("8.8.8.8")))
    assert drain(port) == [] and stack.dropped == 1


def test_reply_goes_to_mac_learned_from_request(user_lan):
    switch, stack, _ = user_lan
    other_mac = parse_mac("02:00:00:00:00:09")
    port = switch.new_port("second")
    frame = eth(SLIRP_HOST_MAC, other_mac, 0x0800,
                ipv4(ip_bytes("10.0.2.16"), HOST_IP, 1, icmp_echo(1, 1, b"x")))
    port.send(frame)
    [reply] = drain(port)
    assert reply[0:6] == other_mac
    assert stack.guest_mac == other_mac


# --- UserNet: UDP echo -----------------------------------------------------------------

def test_udp_echo_on_port_7_returns_same_payload(user_lan):
    _, _, port = user_lan
    data = b"echo me back, please"
    port.send(eth(SLIRP_HOST_MAC, GUEST_MAC, 0x0800,
                  ipv4(GUEST_IP, HOST_IP, 17, udp(GUEST_IP, HOST_IP, 40000, 7, data))))
    [reply] = drain(port)
    ip = parse_ip(reply)
    sport, dport, length, _ = struct.unpack_from("!HHHH", ip["payload"])
    assert (sport, dport, length) == (7, 40000, 8 + len(data))
    assert ip["payload"][8:] == data
    assert (ip["src"], ip["dst"], ip["proto"], ip["ttl"]) == (HOST_IP, GUEST_IP, 17, 64)


def test_udp_echo_reply_has_valid_checksums(user_lan):
    _, _, port = user_lan
    port.send(eth(SLIRP_HOST_MAC, GUEST_MAC, 0x0800,
                  ipv4(GUEST_IP, HOST_IP, 17, udp(GUEST_IP, HOST_IP, 1234, 7, b"abc"))))
    [reply] = drain(port)
    ip = parse_ip(reply)
    pseudo = HOST_IP + GUEST_IP + struct.pack("!BBH", 0, 17, len(ip["payload"]))
    assert inet_checksum(ip["header"]) == 0
    assert inet_checksum(pseudo + ip["payload"]) == 0


def test_udp_to_other_port_is_not_answered(user_lan):
    _, _, port = user_lan
    port.send(eth(SLIRP_HOST_MAC, GUEST_MAC, 0x0800,
                  ipv4(GUEST_IP, HOST_IP, 17, udp(GUEST_IP, HOST_IP, 1234, 9, b"abc"))))
    assert drain(port) == []


# --- UserNet: malformed input --------------------------------------------------------------

def _corrupt(frame: bytes, index: int, value: int) -> bytes:
    b = bytearray(frame)
    b[index] = value
    return bytes(b)


MALFORMED = {
    "runt": ping_frame()[:10],
    "ip header cut short": ping_frame()[:30],
    "truncated arp": arp_request(GUEST_MAC, GUEST_IP, HOST_IP)[:40],
    "ip total length beyond frame": _corrupt(ping_frame(), 17, 0xFF),
    "bad ip checksum": _corrupt(ping_frame(), 24, 0),
    "bad icmp checksum": _corrupt(ping_frame(), 36, 0),
    "ip version 6": _corrupt(ping_frame(), 14, 0x65),
    "ihl below 5": _corrupt(ping_frame(), 14, 0x44),
    "fragment": eth(SLIRP_HOST_MAC, GUEST_MAC, 0x0800,
                    ipv4(GUEST_IP, HOST_IP, 1, icmp_echo(1, 1, b"frag"), off=0x2000)),
    "ttl zero": eth(SLIRP_HOST_MAC, GUEST_MAC, 0x0800,
                    ipv4(GUEST_IP, HOST_IP, 1, icmp_echo(1, 1, b"x"), ttl=0)),
    "icmp shorter than 8": eth(SLIRP_HOST_MAC, GUEST_MAC, 0x0800,
                               ipv4(GUEST_IP, HOST_IP, 1, b"\x08\x00\xf7\xff")),
    "bad udp checksum": _corrupt(eth(SLIRP_HOST_MAC, GUEST_MAC, 0x0800, ipv4(
        GUEST_IP, HOST_IP, 17, udp(GUEST_IP, HOST_IP, 5, 7, b"data"))), 40, 0x55),
    "udp length beyond packet": eth(SLIRP_HOST_MAC, GUEST_MAC, 0x0800, ipv4(
        GUEST_IP, HOST_IP, 17, struct.pack("!HHHH", 5, 7, 99, 0) + b"data")),
    "arp for ipv6": _corrupt(arp_request(GUEST_MAC, GUEST_IP, HOST_IP), 16, 0x86),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_frame_is_dropped_without_reply(user_lan, name):
    _, stack, port = user_lan
    port.send(MALFORMED[name])
    assert drain(port) == []
    assert stack.replies == 0


def test_frame_for_another_unicast_mac_is_ignored_by_the_stack(user_lan):
    _, stack, port = user_lan
    port.send(ping_frame(dst_mac=parse_mac("02:00:00:00:00:01")))
    assert drain(port) == [] and stack.replies == 0


def test_ping_with_ethernet_padding_is_answered_without_the_padding(user_lan):
    _, _, port = user_lan
    port.send(ping_frame(b"").ljust(60, b"\0"))
    [reply] = drain(port)
    assert parse_ip(reply)["total"] == 28 and len(reply) == 42


def check_replies(sent: list[bytes], replies: list[bytes]) -> None:
    """What a host stack may send back: at most one reply a frame, each an ARP or IPv4
    frame to the sender from the stack's own address, IPv4 with a valid header checksum."""
    assert len(replies) <= len(sent)
    for reply in replies:
        assert len(reply) >= 42 and reply[6:12] in (SLIRP_HOST_MAC, USERNET_DNS_MAC)
        kind = struct.unpack_from("!H", reply, 12)[0]
        assert kind in (0x0806, 0x0800)
        if kind == 0x0800:
            assert inet_checksum(parse_ip(reply)["header"]) == 0
        assert any(reply[0:6] == f[6:12] for f in sent)   # to whoever asked


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_frames_into_usernet_get_at_most_one_well_formed_reply_each(frame):
    switch = Switch("fuzz")
    UserNet(switch)
    port = switch.new_port("guest")
    sent = [frame, ping_frame()[:14] + frame, BROADCAST_MAC + GUEST_MAC + b"\x08\x06" + frame,
            ping_frame()]                            # one that must be answered
    for f in sent:
        port.send(f)
    replies = drain(port)
    check_replies([f for f in sent if len(f) >= 14], replies)
    assert replies and replies[-1][34] == 0          # the echo request got its echo reply


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([ping_frame(), arp_request(GUEST_MAC, GUEST_IP, HOST_IP),
                        eth(SLIRP_HOST_MAC, GUEST_MAC, 0x0800, ipv4(
                            GUEST_IP, HOST_IP, 17, udp(GUEST_IP, HOST_IP, 5, 7, b"data")))]),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
       st.integers(0, 200))
def test_mutated_valid_frames_into_usernet_never_raise(frame, edits, cut):
    b = bytearray(frame)
    for i, v in edits:
        if i < len(b):
            b[i] = v
    switch = Switch("fuzz")
    UserNet(switch)
    port = switch.new_port()
    port.send(bytes(b[:cut]))
    for reply in drain(port):
        if struct.unpack_from("!H", reply, 12)[0] == 0x0800:
            assert inet_checksum(parse_ip(reply)["header"]) == 0


# --- the switch ---------------------------------------------------------------------------

def test_two_hosts_ping_each_other_through_a_switch_with_arp_first():
    switch = Switch("lan")
    a = FakeHost(switch, "02:00:00:00:00:0a", "10.0.2.10")
    b = FakeHost(switch, "02:00:00:00:00:0b", "10.0.2.11")
    a.arp("10.0.2.11")
    settle(a, b)
    a.ping("10.0.2.11", b"from a")
    settle(a, b)
    b.arp("10.0.2.10")
    settle(a, b)
    b.ping("10.0.2.10", b"from b")
    settle(a, b)
    assert a.neighbours[ip_bytes("10.0.2.11")] == b.mac
    assert [r[8:] for r in a.replies] == [b"from a"]
    assert [r[8:] for r in b.replies] == [b"from b"]


def test_broadcast_is_flooded_to_every_port_but_the_sender():
    switch = Switch("flood")
    ports = [switch.new_port(f"p{i}") for i in range(3)]
    frame = arp_request(parse_mac("02:00:00:00:00:01"), GUEST_IP, HOST_IP)
    ports[0].send(frame)
    assert [len(drain(p)) for p in ports] == [0, 1, 1]


def test_unknown_unicast_is_flooded():
    switch = Switch("unknown")
    ports = [switch.new_port(f"p{i}") for i in range(3)]
    ports[0].send(eth(parse_mac("02:00:00:00:00:99"), parse_mac("02:00:00:00:00:01"), 0x0800, b"x"))
    assert [len(drain(p)) for p in ports] == [0, 1, 1]


def test_learned_mac_gets_unicast_only_to_its_port():
    switch = Switch("learn")
    ports = [switch.new_port(f"p{i}") for i in range(3)]
    mac1, mac2 = parse_mac("02:00:00:00:00:01"), parse_mac("02:00:00:00:00:02")
    ports[2].send(eth(BROADCAST_MAC, mac2, 0x0800, b"hello"))   # switch learns mac2 on p2
    for p in ports:
        drain(p)
    ports[0].send(eth(mac2, mac1, 0x0800, b"to two"))
    assert [len(drain(p)) for p in ports] == [0, 0, 1]
    assert switch.lookup(mac1) is ports[0] and switch.lookup(mac2) is ports[2]


def test_frame_to_a_mac_on_the_senders_own_port_is_not_echoed():
    switch = Switch("echo")
    ports = [switch.new_port(f"p{i}") for i in range(2)]
    mac = parse_mac("02:00:00:00:00:01")
    ports[0].send(eth(BROADCAST_MAC, mac, 0x0800, b"learn"))
    drain(ports[1])
    ports[0].send(eth(mac, mac, 0x0800, b"self"))
    assert drain(ports[0]) == [] and drain(ports[1]) == []


def test_runt_frame_is_not_forwarded():
    switch = Switch("runt")
    a, b = switch.new_port("a"), switch.new_port("b")
    a.send(b"\xff" * 13)
    assert drain(b) == [] and a.tx_dropped == 1


def test_detached_port_no_longer_receives():
    switch = Switch("detach")
    a, b = switch.new_port("a"), switch.new_port("b")
    b.close()
    a.send(eth(BROADCAST_MAC, parse_mac("02:00:00:00:00:01"), 0x0800, b"x"))
    assert drain(b) == []


def test_switch_named_returns_one_switch_per_name():
    assert switch_named("reg-test-1") is switch_named("reg-test-1")
    assert switch_named("reg-test-1") is not switch_named("reg-test-2")


# --- NetPort queue ---------------------------------------------------------------------------

def test_queue_drops_and_counts_frames_beyond_its_bound():
    port = NetPort(name="bounded", queue_limit=4)
    accepted = [port.deliver(bytes([i]) * 20) for i in range(6)]
    assert accepted == [True] * 4 + [False] * 2
    assert port.rx_dropped == 2
    assert [f[0] for f in drain(port)] == [0, 1, 2, 3]


def test_on_frame_is_called_after_each_queued_frame():
    port = NetPort(name="hook")
    seen = []
    port.on_frame = lambda: seen.append(port.pending)
    port.deliver(b"a" * 20)
    port.deliver(b"b" * 20)
    assert seen == [1, 2]


def test_frame_the_nic_refuses_is_consumed_and_counted():
    port = NetPort(name="refuse")
    port.deliver(b"first" * 4)
    port.deliver(b"second" * 4)
    assert port.poll(lambda frame: False) == 2
    assert port.pending == 0 and port.rx_refused == 2 and port.rx_frames == 0


def test_frames_stay_queued_while_the_nic_is_not_ready():
    port = NetPort(name="not-ready")
    port.deliver(b"first" * 4)
    port.deliver(b"second" * 4)
    assert port.poll(Collector(), ready=lambda: False) == 0
    assert port.pending == 2
    assert drain(port) == [b"first" * 4, b"second" * 4]


def test_poll_limit_hands_over_at_most_that_many_frames():
    port = NetPort(name="limit")
    for i in range(5):
        port.deliver(bytes([i]) * 20)
    assert port.poll(Collector(), limit=2) == 2 and port.pending == 3


def test_frames_delivered_from_another_thread_arrive_in_order():
    count = 2000
    port = NetPort(name="threads", queue_limit=count)
    kicked = threading.Event()
    port.on_frame = kicked.set
    got = Collector()

    def producer():
        for i in range(count):
            port.deliver(struct.pack("!I", i) * 4)

    thread = threading.Thread(target=producer)
    thread.start()
    while thread.is_alive():
        port.poll(got)
    thread.join()
    port.poll(got)
    assert kicked.is_set()
    assert port.rx_dropped == 0
    assert [struct.unpack_from("!I", f)[0] for f in got.frames] == list(range(count))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_random_frames_sent_into_a_switch_reach_the_other_port_unchanged_or_not_at_all(frame):
    switch = Switch("fuzz-switch")
    UserNet(switch)
    a, b = switch.new_port("a"), switch.new_port("b")
    a.send(frame)
    to_a, to_b = drain(a), drain(b)
    assert to_b in ([], [frame])                     # forwarded as sent, never altered
    if len(frame) >= 14 and frame[0] & 1:
        assert to_b == [frame]                       # broadcast and multicast are flooded
    check_replies([frame], to_a)                     # only the host stack answers a


# --- pcap ------------------------------------------------------------------------------------

def read_pcap(path) -> tuple[tuple, list[tuple[int, int, bytes]]]:
    data = open(path, "rb").read()
    header = struct.unpack_from("<IHHiIII", data)
    records, pos = [], 24
    while pos < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, pos)
        pos += 16
        records.append((sec, usec, data[pos:pos + incl]))
        assert incl == orig
        pos += incl
    assert pos == len(data)
    return header, records


def test_pcap_header_is_libpcap_2_4_ethernet(tmp_path):
    path = tmp_path / "empty.pcap"
    PcapWriter(str(path)).close()
    header, records = read_pcap(path)
    assert header == (0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) and records == []


def test_pcap_records_frames_sent_and_received_by_a_port(tmp_path, user_lan):
    switch, _, _ = user_lan
    path = tmp_path / "ping.pcap"
    writer = PcapWriter(str(path), now=lambda: 1700000000.25)
    port = NetPort(switch, "captured", pcap=writer)
    request = arp_request(GUEST_MAC, GUEST_IP, HOST_IP)
    port.send(request)
    port.send(ping_frame(b"pcap"))
    replies = drain(port)
    _, records = read_pcap(path)      # readable before close: flushed per frame
    assert [r[2] for r in records] == [request, ping_frame(b"pcap")] + replies
    assert records[0][:2] == (1700000000, 250000)
    writer.close()


def test_pcap_bad_path_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        PcapWriter(str(tmp_path / "no-such-dir" / "x.pcap"))


def test_tshark_reads_the_capture_as_arp_and_icmp(tmp_path, user_lan):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (CI installs it with apt-get install tshark)")
    switch, _, _ = user_lan
    path = tmp_path / "tshark.pcap"
    with PcapWriter(str(path)) as writer:
        port = NetPort(switch, "captured", pcap=writer)
        port.send(arp_request(GUEST_MAC, GUEST_IP, HOST_IP))
        port.send(ping_frame(b"tshark"))
        drain(port)
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.protocols"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    lines = out.split()
    assert len(lines) == 4
    assert sum("arp" in line for line in lines) == 2
    assert sum(line.endswith("ip:icmp:data") for line in lines) == 2


# --- make_network ---------------------------------------------------------------------------

def test_make_network_user_gives_ports_answered_by_a_private_stack():
    factory = make_network("user")
    port = factory("nic0")
    port.send(arp_request(GUEST_MAC, GUEST_IP, HOST_IP))
    assert len(drain(port)) == 1
    assert factory.user_net is not None and factory.switch is not make_network("user").switch
    factory.close()


def test_make_network_none_gives_no_port():
    factory = make_network("none")
    assert not factory.enabled and factory("nic0") is None


def test_make_network_switch_connects_two_machines_by_name():
    one, two = make_network("switch:mk-test"), make_network("switch:mk-test")
    a, b = one("a"), two("b")
    assert one.user_net is None
    a.send(eth(BROADCAST_MAC, parse_mac("02:00:00:00:00:01"), 0x0800, b"hi"))
    assert len(drain(b)) == 1
    one.close(), two.close()


@pytest.mark.parametrize("spec", ["tap", "switch:", "switch:a b", "user:x", "USER", "switch:" + "x" * 65])
def test_make_network_rejects_unknown_spec_with_one_line(spec):
    with pytest.raises(ValueError) as err:
        make_network(spec)
    assert "\n" not in str(err.value)


def test_make_network_pcap_with_user_captures(tmp_path):
    path = tmp_path / "user.pcap"
    factory = make_network("user", str(path))
    port = factory("nic0")
    port.send(ping_frame())
    drain(port)
    factory.close()
    assert len(read_pcap(path)[1]) == 2


def test_make_network_bad_pcap_path_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        make_network("user", str(tmp_path / "missing" / "x.pcap"))


def test_make_network_pcap_without_network_is_an_error(tmp_path):
    with pytest.raises(ValueError):
        make_network("none", str(tmp_path / "x.pcap"))


def test_inet_checksum_matches_rfc1071_example():
    # RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2 -> checksum 220d.
    assert inet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert net.USERNET_HOST_MAC == SLIRP_HOST_MAC
