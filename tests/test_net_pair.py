"""Two hv machines on one virtual switch ping each other: nettest (A, 10.0.2.15) and
netpeer (B, 10.0.2.2 with the slirp gateway's MAC), each in its own thread."""
from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from hv.net import ETH_P_ARP, ETH_P_IP, inet_checksum
from tests.net_peer import PEER_MAC, run_pair, run_pair_qemu

GOLDEN = Path(__file__).parent / "golden"
A_MAC = bytes.fromhex("525400123456")
A_IP, B_IP = bytes([10, 0, 2, 15]), bytes([10, 0, 2, 2])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    pcap = tmp_path_factory.mktemp("pair") / "pair.pcap"
    a_out, b_out = run_pair(pcap=str(pcap))
    return a_out, b_out, pcap.read_bytes()


def frames(pcap: bytes) -> list[bytes]:
    magic, = struct.unpack_from("<I", pcap)
    assert magic == 0xA1B2C3D4
    out, off = [], 24
    while off + 16 <= len(pcap):
        _sec, _usec, caplen, _len = struct.unpack_from("<IIII", pcap, off)
        out.append(pcap[off + 16:off + 16 + caplen])
        off += 16 + caplen
    return out


def icmp_packets(pcap: bytes) -> list[tuple[bytes, bytes, bytes, bytes, bytes]]:
    """(eth dst, eth src, ip header, ip src, icmp message) of every IPv4 ICMP frame."""
    out = []
    for f in frames(pcap):
        if struct.unpack_from("!H", f, 12)[0] != ETH_P_IP or f[23] != 1:
            continue
        ihl = (f[14] & 15) * 4
        total, = struct.unpack_from("!H", f, 16)
        out.append((f[0:6], f[6:12], f[14:14 + ihl], f[26:30], f[14 + ihl:14 + total]))
    return out


def test_machine_a_prints_the_qemu_golden_output_with_machine_b_as_gateway(pair):
    assert pair[0] == (GOLDEN / "nettest.serial.txt").read_bytes().decode("latin-1")


def test_machine_b_answers_the_three_echo_requests_in_order(pair):
    assert re.findall(r"netpeer: answered echo seq=(\d+)\r\n", pair[1]) == ["1", "2", "3"]


def test_machine_b_gets_three_replies_from_machine_a(pair):
    assert re.findall(r"reply from 10\.0\.2\.15: icmp_seq=(\d+) bytes=64\r\n", pair[1]) == ["1", "2", "3"]


def test_machine_b_finds_machine_a_by_arp(pair):
    assert "host 10.0.2.15 is at 52:54:00:12:34:56\r\n" in pair[1]


def test_machine_b_answers_before_it_pings(pair):
    b = pair[1]
    assert b.index("answered echo seq=3") < b.index("PASS arp") < b.index("reply from 10.0.2.15")


def test_machine_b_reports_no_failures(pair):
    assert pair[1].endswith("netpeer done: 8 passed, 0 failed\r\n")


def test_the_capture_holds_an_arp_exchange_each_way(pair):
    arps = [f for f in frames(pair[2]) if struct.unpack_from("!H", f, 12)[0] == ETH_P_ARP]
    ops = {(struct.unpack_from("!H", f, 20)[0], f[28:32], f[38:42]) for f in arps}
    assert {(1, A_IP, B_IP), (2, B_IP, A_IP), (1, B_IP, A_IP), (2, A_IP, B_IP)} <= ops


@pytest.mark.parametrize("requester,responder,req_mac,resp_mac", [
    (A_IP, B_IP, A_MAC, PEER_MAC),
    (B_IP, A_IP, PEER_MAC, A_MAC),
], ids=["a_pings_b", "b_pings_a"])
def test_every_echo_reply_mirrors_its_request_with_correct_checksums(pair, requester, responder,
                                                                      req_mac, resp_mac):
    packets = icmp_packets(pair[2])
    requests = [p for p in packets if p[3] == requester and p[4][0] == 8]
    replies = [p for p in packets if p[3] == responder and p[4][0] == 0]
    assert len(requests) == 3 and len(replies) == 3
    for (_, _, _, _, req), (dst, src, ip, _, rep) in zip(requests, replies):
        assert (dst, src) == (req_mac, resp_mac)
        assert ip[16:20] == requester
        assert inet_checksum(ip) == 0 and inet_checksum(rep) == 0
        assert rep[1] == 0 and rep[4:] == req[4:]        # same id, sequence and payload


def test_the_pair_prints_the_same_on_hv_as_on_two_qemus_joined_by_a_socket(pair):
    assert run_pair_qemu() == pair[:2]
