"""hv's virtual network, inside the host process.

Four parts, all thread-safe where threads meet:

* ``Switch`` -- a learning Ethernet switch. Every NIC (and the host stack) is
  one port on it. Unicast to a learned MAC goes to that port only; broadcast,
  multicast and unknown unicast are flooded; a frame never goes back to the
  port it came from. ``switch_named(name)`` is a process-wide registry, so
  ``--net switch:NAME`` on two machines run in one process puts them on one
  wire.
* ``NetPort`` -- what a NIC model is given. The NIC calls ``send(frame)`` from
  its machine's vCPU thread. Frames toward the NIC are queued by
  ``deliver(frame)`` (any thread; the queue is bounded and counts drops), then
  ``on_frame()`` is called so the machine can kick its vCPU / wake it from HLT;
  the machine later calls ``poll(receive)`` from its own thread to hand the
  queued frames to the NIC model. Each port may capture to a pcap file.
* ``UserNet`` -- a host stack in the style of QEMU's user-mode networking
  (slirp), attached to a switch like a NIC. Network 10.0.2.0/24; the gateway /
  host is 10.0.2.2 with MAC 52:55:0a:00:02:02 and the DNS address is 10.0.2.3
  with MAC 52:55:0a:00:02:03 (slirp's "52:55 + IPv4 address" scheme, so a guest
  prints the same thing under hv and under QEMU). It answers:

  - ARP requests for 10.0.2.2 and 10.0.2.3 (a 64-byte reply, as slirp sends);
  - ICMP echo requests to 10.0.2.2 or 10.0.2.3: the echo reply carries the
    same id, sequence and payload; IP TTL 255 (slirp's MAXTTL), TOS and DF
    copied from the request, IP options dropped, IP ID from a per-stack
    counter that starts at 0 and counts up with every IP packet sent (slirp's
    ``ip_id++`` in ``ip_output``);
  - UDP echo (RFC 862) on 10.0.2.2 port 7: the datagram comes back with the
    same payload from port 7, TTL 64 (slirp's IPDEFTTL for UDP), with a UDP
    checksum. This service is hv's own: slirp has none, it is here so a guest
    can test a UDP path without the outside world.

  Nothing else is answered (no DHCP, DNS, TCP or NAT to the host's network).
  The stack learns the guest's MAC from the frames it receives (ARP sender
  fields and IP source addresses). Malformed input -- short frames, bad
  lengths, bad IP/ICMP/UDP checksums, IP fragments, TTL 0 -- is dropped and
  counted, never raised.
* ``PcapWriter`` -- libpcap files (magic 0xa1b2c3d4, v2.4, snaplen 65535,
  LINKTYPE_ETHERNET), flushed after every frame so a crash keeps the capture.

``make_network(spec, pcap)`` turns the CLI's ``--net`` / ``--pcap`` into a
factory: ``none`` (no network), ``user`` (a private switch with a UserNet on
it) or ``switch:NAME`` (the named switch; no host stack on it -- it is a wire
between machines, and a UserNet there would answer for 10.0.2.2 on a LAN the
user has laid out themselves).
"""
from __future__ import annotations

import re
import struct
import sys
import threading
import time
from array import array
from collections import OrderedDict, deque
from typing import Callable, Protocol

# --- Ethernet / IPv4 constants (names as in the RFCs and <netinet/*.h>) --------

ETH_ALEN = 6
ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_ZLEN = 60                 # minimum frame without FCS
ETH_MAX_FRAME = 65535         # the largest frame the switch carries (= pcap snaplen)
BROADCAST_MAC = b"\xff" * 6

ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
ARP_LEN = 28                  # Ethernet/IPv4 ARP payload
SLIRP_ARP_FRAME_LEN = 64      # slirp's ARP reply buffer is MAX(14 + 28, 64) bytes

IPVERSION = 4
IP_HLEN_MIN = 20
IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFMASK = 0x1FFF
IPPROTO_ICMP = 1
IPPROTO_UDP = 17
MAXTTL = 255                  # slirp's icmp_reflect sets this
IPDEFTTL = 64                 # slirp's udp_output sets this

ICMP_ECHOREPLY = 0
ICMP_ECHO = 8
ICMP_MINLEN = 8
UDP_HLEN = 8
UDP_ECHO_PORT = 7             # RFC 862

DEFAULT_QUEUE_LIMIT = 256     # frames waiting for one NIC before new ones are dropped
MAC_TABLE_LIMIT = 1024        # learned MACs per switch; a guest inventing MACs can't grow it


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6 or not all(re.fullmatch(r"[0-9a-fA-F]{2}", p) for p in parts):
        raise ValueError(f"bad MAC address {text!r}")
    return bytes(int(p, 16) for p in parts)


def ip_bytes(text: str) -> bytes:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise ValueError(f"bad IPv4 address {text!r}")
    return bytes(int(p) for p in parts)


def is_multicast(mac: bytes) -> bool:
    """Group bit: broadcast and multicast destinations are flooded, never learned."""
    return bool(mac[0] & 1)


def inet_checksum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071 ones'-complement checksum, as the 16-bit value to store big-endian.

    Summing native-order words is fine: the ones'-complement sum is byte-order
    independent up to a final swap. A buffer whose checksum field is right sums
    to 0 here.
    """
    data = bytes(data)
    if len(data) & 1:
        data += b"\0"
    total = sum(array("H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    total = ~total & 0xFFFF
    if sys.byteorder == "little":
        total = ((total & 0xFF) << 8) | (total >> 8)
    return total


# --- pcap ---------------------------------------------------------------------

PCAP_MAGIC = 0xA1B2C3D4       # microsecond timestamps
PCAP_VERSION = (2, 4)
PCAP_SNAPLEN = 65535
LINKTYPE_ETHERNET = 1


class PcapWriter:
    """A libpcap capture file. Opening a bad path raises OSError (the CLI shows
    it as one line). Each record is flushed at once, so whatever was written
    survives a crash of hv. Safe to share between ports and threads."""

    def __init__(self, path: str, now: Callable[[], float] = time.time) -> None:
        self.path = path
        self._now = now
        self._lock = threading.Lock()
        # A write that fails mid-run (full disk, EFBIG, EIO) stops the capture and is
        # reported here once; the board ends the run with it (set by the machine).
        self.on_error: Callable[[OSError], None] | None = None
        self.error: OSError | None = None
        self._file = open(path, "wb")   # OSError for a bad path, by design
        self.frames = 0
        self._file.write(struct.pack("<IHHiIII", PCAP_MAGIC, *PCAP_VERSION, 0, 0,
                                     PCAP_SNAPLEN, LINKTYPE_ETHERNET))
        self._file.flush()

    def write(self, frame: bytes) -> None:
        stamp = self._now()
        sec = int(stamp)
        usec = min(int((stamp - sec) * 1_000_000), 999_999)
        caplen = min(len(frame), PCAP_SNAPLEN)
        with self._lock:
            if self._file is None or self.error is not None:
                return
            try:
                self._file.write(struct.pack("<IIII", sec & 0xFFFFFFFF, usec, caplen, len(frame)))
                self._file.write(frame[:caplen])
                self._file.flush()
            except OSError as e:
                self.error = e
            else:
                self.frames += 1
                return
        if self.on_error is not None:
            self.on_error(self.error)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError:     # the failed write was reported already
                    pass
                self._file = None

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- the switch and its ports ---------------------------------------------------

class Endpoint(Protocol):
    """Anything a switch can hand a frame to: a NetPort or a host stack."""

    def deliver(self, frame: bytes) -> bool: ...


class Switch:
    """A learning Ethernet switch. Ports are any objects with ``deliver(frame)``.

    Frames are handed to the destination ports outside the switch's lock: a
    host stack answers inside ``deliver`` by sending through the switch again.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._ports: list[Endpoint] = []
        self._macs: OrderedDict[bytes, Endpoint] = OrderedDict()
        self.forwarded = 0
        self.flooded = 0
        self.dropped = 0          # malformed, or addressed back to its own port

    def attach(self, port: Endpoint) -> None:
        with self._lock:
            if port not in self._ports:
                self._ports.append(port)

    def detach(self, port: Endpoint) -> None:
        with self._lock:
            if port in self._ports:
                self._ports.remove(port)
            for mac in [m for m, p in self._macs.items() if p is port]:
                del self._macs[mac]

    def new_port(self, name: str = "nic", **kwargs) -> "NetPort":
        """A NetPort already attached to this switch (kwargs go to NetPort)."""
        return NetPort(self, name=name, **kwargs)

    @property
    def ports(self) -> tuple[Endpoint, ...]:
        with self._lock:
            return tuple(self._ports)

    def lookup(self, mac: bytes) -> Endpoint | None:
        """Where the switch has learned ``mac`` lives (None if unknown)."""
        with self._lock:
            return self._macs.get(bytes(mac))

    def forward(self, source: Endpoint, frame: bytes) -> int:
        """Carry ``frame`` from ``source``; returns how many ports it went to."""
        if len(frame) < ETH_HLEN or len(frame) > ETH_MAX_FRAME:
            self.dropped += 1
            return 0
        dst, src = frame[0:6], frame[6:12]
        with self._lock:
            if source not in self._ports:
                self.dropped += 1
                return 0
            if not is_multicast(src):
                self._macs[src] = source
                self._macs.move_to_end(src)
                while len(self._macs) > MAC_TABLE_LIMIT:
                    self._macs.popitem(last=False)
            target = None if is_multicast(dst) else self._macs.get(dst)
            if target is source:
                # The destination sits on the sender's own port: nothing to do.
                self.dropped += 1
                return 0
            if target is not None:
                targets = [target]
                self.forwarded += 1
            else:
                targets = [p for p in self._ports if p is not source]
                self.flooded += 1
        for port in targets:
            port.deliver(frame)
        return len(targets)

    def __repr__(self) -> str:
        return f"Switch({self.name!r}, ports={len(self._ports)})"


_registry: dict[str, Switch] = {}
_registry_lock = threading.Lock()


def switch_named(name: str) -> Switch:
    """The process-wide switch called ``name``, created on first use."""
    with _registry_lock:
        sw = _registry.get(name)
        if sw is None:
            sw = _registry[name] = Switch(name)
        return sw


class NetPort:
    """One NIC's connection to a switch.

    NIC side (its machine's vCPU thread): ``send(frame)``.
    Toward the NIC: ``deliver(frame)`` from any thread queues the frame (or
    drops it and counts ``rx_dropped`` when ``queue_limit`` frames already
    wait) and then calls ``on_frame()``; the machine calls ``poll(receive)``
    in its own thread, which hands every queued frame to
    ``receive(frame) -> bool``. The frame is consumed either way: True means
    the NIC stored it (``rx_frames``), False that the NIC dropped it itself --
    address filter, receiver stopped, ring full -- (``rx_refused``), as a real
    NIC loses frames it has no room for. A NIC that would rather hold frames
    back passes ``ready() -> bool`` (QEMU's ``can_receive``): while it says
    False, frames stay queued (and the queue bound then drops new ones).
    With ``pcap`` set, every frame sent and every frame handed to the NIC in
    ``poll`` is captured (frames dropped on a full queue are not).
    ``on_frame`` runs in the delivering thread, which may be the NIC's own
    (the host stack answers synchronously inside ``send``), so it should only
    flag work (kick / wake), not poll.
    """

    def __init__(self, switch: Switch | None = None, name: str = "nic", *,
                 queue_limit: int = DEFAULT_QUEUE_LIMIT,
                 pcap: PcapWriter | None = None) -> None:
        self.name = name
        self.queue_limit = max(1, queue_limit)
        self.pcap = pcap
        self.on_frame: Callable[[], None] | None = None
        self._queue: deque[bytes] = deque()
        self._lock = threading.Lock()
        self.tx_frames = 0
        self.tx_dropped = 0       # sent while detached, or malformed (see Switch.forward)
        self.rx_frames = 0        # stored by the NIC
        self.rx_refused = 0       # handed over but dropped by the NIC (filter, ring full)
        self.rx_dropped = 0       # queue full
        self.switch: Switch | None = None
        if switch is not None:
            self.attach(switch)

    def attach(self, switch: Switch) -> None:
        if self.switch is not None:
            self.switch.detach(self)
        self.switch = switch
        switch.attach(self)

    def close(self) -> None:
        """Leave the switch and forget queued frames (the pcap is the owner's)."""
        if self.switch is not None:
            self.switch.detach(self)
            self.switch = None
        with self._lock:
            self._queue.clear()

    # NIC -> wire
    def send(self, frame: bytes | bytearray | memoryview) -> None:
        frame = bytes(frame)
        self.tx_frames += 1
        if self.pcap is not None:
            self.pcap.write(frame)
        if self.switch is None or not ETH_HLEN <= len(frame) <= ETH_MAX_FRAME:
            self.tx_dropped += 1
            return
        self.switch.forward(self, frame)

    # wire -> queue (any thread)
    def deliver(self, frame: bytes) -> bool:
        with self._lock:
            if len(self._queue) >= self.queue_limit:
                self.rx_dropped += 1
                return False
            self._queue.append(bytes(frame))
        hook = self.on_frame
        if hook is not None:
            hook()
        return True

    @property
    def pending(self) -> int:
        """Frames waiting for the NIC (the machine may use it to decide to wake)."""
        with self._lock:
            return len(self._queue)

    # queue -> NIC (the NIC's machine thread)
    def poll(self, receive: Callable[[bytes], bool], ready: Callable[[], bool] | None = None,
             limit: int | None = None) -> int:
        """Hand queued frames to ``receive`` until the queue is empty, ``ready()``
        says False, or ``limit`` frames were handed over. Returns how many were."""
        handed = 0
        while limit is None or handed < limit:
            if ready is not None and not ready():
                break
            with self._lock:
                if not self._queue:
                    break
                frame = self._queue.popleft()
            handed += 1
            if self.pcap is not None:
                self.pcap.write(frame)
            if receive(frame):
                self.rx_frames += 1
            else:
                self.rx_refused += 1
        return handed

    def __repr__(self) -> str:
        return f"NetPort({self.name!r}, pending={self.pending})"


# --- the user-mode host stack -----------------------------------------------------

USERNET_NETWORK = ip_bytes("10.0.2.0")
USERNET_NETMASK = ip_bytes("255.255.255.0")
USERNET_HOST = ip_bytes("10.0.2.2")
USERNET_DNS = ip_bytes("10.0.2.3")


def slirp_mac(ip: bytes) -> bytes:
    """slirp's emulated hosts use 52:55:<IPv4 address>."""
    return b"\x52\x55" + bytes(ip)


USERNET_HOST_MAC = slirp_mac(USERNET_HOST)   # 52:55:0a:00:02:02
USERNET_DNS_MAC = slirp_mac(USERNET_DNS)     # 52:55:0a:00:02:03

_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IP = struct.Struct("!BBHHHBBH4s4s")
_ICMP_ECHO = struct.Struct("!BBHHH")
_UDP = struct.Struct("!HHHH")


def in_usernet(ip: bytes) -> bool:
    return bytes(a & m for a, m in zip(ip, USERNET_NETMASK)) == USERNET_NETWORK


class UserNet:
    """A slirp-style host on a switch (see the module docstring for what it
    answers). Replies are produced synchronously inside ``deliver``, in the
    thread of whoever sent the request, and go out through the switch."""

    name = "user"

    def __init__(self, switch: Switch | None = None, *,
                 udp_echo_port: int = UDP_ECHO_PORT) -> None:
        self.udp_echo_port = udp_echo_port
        self._lock = threading.Lock()
        self.ip_id = 0                        # slirp's Slirp struct starts zeroed
        self.arp_table: dict[bytes, bytes] = {}   # guest IP -> MAC, 10.0.2.0/24 only
        self.guest_mac: bytes | None = None   # the last guest MAC seen
        self.received = 0
        self.replies = 0
        self.dropped = 0
        self.switch: Switch | None = None
        self._handlers = {ETH_P_ARP: self._arp_input, ETH_P_IP: self._ip_input}
        self._ip_handlers = {IPPROTO_ICMP: self._icmp_input, IPPROTO_UDP: self._udp_input}
        self._local = {USERNET_HOST: USERNET_HOST_MAC, USERNET_DNS: USERNET_DNS_MAC}
        if switch is not None:
            self.attach(switch)

    def attach(self, switch: Switch) -> None:
        self.switch = switch
        switch.attach(self)

    def close(self) -> None:
        if self.switch is not None:
            self.switch.detach(self)
            self.switch = None

    # Endpoint
    def deliver(self, frame: bytes) -> bool:
        """Take one frame from the switch; answer it if it is for us."""
        try:
            with self._lock:
                self.received += 1
                reply = self._input(frame)
        except (struct.error, IndexError, ValueError):
            reply = None    # belt and braces: the parsers check lengths first
        if reply is None:
            self.dropped += 1
            return True
        self.replies += 1
        if self.switch is not None:
            self.switch.forward(self, reply)
        return True

    def _input(self, frame: bytes) -> bytes | None:
        if len(frame) < ETH_HLEN:
            return None
        dst, src, ethertype = _ETH.unpack_from(frame)
        # Behave as an Ethernet host: only broadcast/multicast or our own MACs.
        if not is_multicast(dst) and dst not in self._local.values():
            return None
        if is_multicast(src):
            return None
        handler = self._handlers.get(ethertype)
        return handler(frame, src) if handler else None

    def _learn(self, ip: bytes, mac: bytes) -> None:
        if in_usernet(ip) and ip not in self._local and not is_multicast(mac):
            self.arp_table[ip] = mac
            self.guest_mac = mac

    # ARP
    def _arp_input(self, frame: bytes, eth_src: bytes) -> bytes | None:
        if len(frame) < ETH_HLEN + ARP_LEN:
            return None
        hrd, pro, hln, pln, op, sha, sip, tha, tip = _ARP.unpack_from(frame, ETH_HLEN)
        if hrd != ARPHRD_ETHER or pro != ETH_P_IP or hln != ETH_ALEN or pln != 4:
            return None
        if op == ARPOP_REPLY:
            self._learn(sip, sha)
            return None
        if op != ARPOP_REQUEST:
            return None
        if tip == sip:            # gratuitous ARP: learn, don't answer (as slirp)
            self._learn(sip, sha)
            return None
        our_mac = self._local.get(tip)
        if our_mac is None:
            return None
        self._learn(sip, sha)
        reply = _ETH.pack(eth_src, our_mac, ETH_P_ARP) + _ARP.pack(
            ARPHRD_ETHER, ETH_P_IP, ETH_ALEN, 4, ARPOP_REPLY, our_mac, tip, sha, sip)
        return reply.ljust(SLIRP_ARP_FRAME_LEN, b"\0")

    # IPv4
    def _ip_input(self, frame: bytes, eth_src: bytes) -> bytes | None:
        if len(frame) < ETH_HLEN + IP_HLEN_MIN:
            return None
        ver_ihl, tos, total_len, _ident, off, ttl, proto, _sum, src, dst = \
            _IP.unpack_from(frame, ETH_HLEN)
        hlen = (ver_ihl & 0x0F) * 4
        if ver_ihl >> 4 != IPVERSION or hlen < IP_HLEN_MIN:
            return None
        if total_len < hlen or ETH_HLEN + total_len > len(frame):
            return None          # claims more than arrived (Ethernet padding may follow)
        if inet_checksum(frame[ETH_HLEN:ETH_HLEN + hlen]) != 0:
            return None
        if ttl == 0 or off & (IP_MF | IP_OFFMASK):
            return None          # slirp would answer TTL 0 / reassemble; we drop
        if dst not in self._local:
            return None
        self._learn(src, eth_src)
        payload = frame[ETH_HLEN + hlen:ETH_HLEN + total_len]
        handler = self._ip_handlers.get(proto)
        if handler is None:
            return None
        return handler(payload, tos, off, src, dst, eth_src)

    def _ip_output(self, dst_mac: bytes, proto: int, tos: int, off: int, ttl: int,
                   src: bytes, dst: bytes, payload: bytes) -> bytes:
        """An IPv4 packet with no options in an Ethernet frame from the host's MAC
        (slirp's if_encap always uses the host address's MAC)."""
        ident = self.ip_id
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        header = bytearray(_IP.pack((IPVERSION << 4) | 5, tos, IP_HLEN_MIN + len(payload),
                                    ident, off & IP_DF, ttl, proto, 0, src, dst))
        struct.pack_into("!H", header, 10, inet_checksum(header))
        return _ETH.pack(dst_mac, USERNET_HOST_MAC, ETH_P_IP) + bytes(header) + payload

    def _reply_mac(self, ip: bytes, eth_src: bytes) -> bytes:
        return self.arp_table.get(ip, eth_src)

    # ICMP
    def _icmp_input(self, icmp: bytes, tos: int, off: int, src: bytes, dst: bytes,
                    eth_src: bytes) -> bytes | None:
        if len(icmp) < ICMP_MINLEN or inet_checksum(icmp) != 0:
            return None
        if icmp[0] != ICMP_ECHO:
            return None
        reply = bytearray(icmp)
        reply[0] = ICMP_ECHOREPLY
        reply[2:4] = b"\0\0"
        struct.pack_into("!H", reply, 2, inet_checksum(reply))
        return self._ip_output(self._reply_mac(src, eth_src), IPPROTO_ICMP, tos, off,
                               MAXTTL, dst, src, bytes(reply))

    # UDP
    def _udp_input(self, udp: bytes, tos: int, off: int, src: bytes, dst: bytes,
                   eth_src: bytes) -> bytes | None:
        if len(udp) < UDP_HLEN:
            return None
        sport, dport, ulen, csum = _UDP.unpack_from(udp)
        if ulen < UDP_HLEN or ulen > len(udp):
            return None
        udp = udp[:ulen]
        if csum and inet_checksum(_udp_pseudo(src, dst, ulen) + udp) != 0:
            return None
        if dst != USERNET_HOST or dport != self.udp_echo_port or sport == 0:
            return None
        data = udp[UDP_HLEN:]
        return self._ip_output(self._reply_mac(src, eth_src), IPPROTO_UDP, tos, 0,
                               IPDEFTTL, dst, src, udp_datagram(dst, src, dport, sport, data))


def _udp_pseudo(src: bytes, dst: bytes, length: int) -> bytes:
    return src + dst + struct.pack("!BBH", 0, IPPROTO_UDP, length)


def udp_datagram(src: bytes, dst: bytes, sport: int, dport: int, data: bytes) -> bytes:
    """A UDP header + data with its checksum over the IPv4 pseudo-header."""
    length = UDP_HLEN + len(data)
    body = bytearray(_UDP.pack(sport, dport, length, 0) + data)
    csum = inet_checksum(_udp_pseudo(src, dst, length) + body)
    struct.pack_into("!H", body, 6, csum or 0xFFFF)   # 0 means "no checksum"
    return bytes(body)


# --- the CLI's --net / --pcap -------------------------------------------------------

_SWITCH_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class NetworkFactory:
    """What ``make_network`` gives the board: call it once per NIC to get that
    NIC's NetPort (None for ``--net none``); ``close()`` at power-off."""

    def __init__(self, kind: str, switch: Switch | None, user_net: UserNet | None,
                 pcap: PcapWriter | None) -> None:
        self.kind = kind
        self.switch = switch
        self.user_net = user_net
        self.pcap = pcap
        self.ports: list[NetPort] = []

    @property
    def enabled(self) -> bool:
        return self.switch is not None

    def __call__(self, name: str = "nic0", queue_limit: int = DEFAULT_QUEUE_LIMIT) -> NetPort | None:
        if self.switch is None:
            return None
        port = NetPort(self.switch, name, queue_limit=queue_limit, pcap=self.pcap)
        self.ports.append(port)
        return port

    def close(self) -> None:
        for port in self.ports:
            port.close()
        self.ports.clear()
        if self.user_net is not None:
            self.user_net.close()
        if self.pcap is not None:
            self.pcap.close()


def make_network(spec: str, pcap: str | None = None) -> NetworkFactory:
    """Parse ``none|user|switch:NAME``. ValueError (one line) for anything else;
    OSError if the pcap file can't be created."""
    spec = (spec or "none").strip()
    if spec == "none":
        if pcap:
            raise ValueError("--pcap needs a network (--net user or --net switch:NAME)")
        return NetworkFactory("none", None, None, None)
    if spec == "user":
        switch = Switch("user")
        user_net = UserNet(switch)
    elif spec.startswith("switch:"):
        name = spec[len("switch:"):]
        if not _SWITCH_NAME.fullmatch(name):
            raise ValueError(f"bad switch name {name!r} in --net {spec} "
                             "(use letters, digits, '_', '.', '-')")
        switch, user_net = switch_named(name), None
    else:
        raise ValueError(f"unknown --net {spec!r} (expected none, user or switch:NAME)")
    writer = PcapWriter(pcap) if pcap else None
    kind = "user" if user_net is not None else "switch"
    return NetworkFactory(kind, switch, user_net, writer)
