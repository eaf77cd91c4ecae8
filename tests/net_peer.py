"""Two hv machines on one virtual switch, in one process: nettest and its peer netpeer.

Machine A runs nettest (10.0.2.15, QEMU's default MAC 52:54:00:12:34:56); machine B runs
netpeer, which claims 10.0.2.2 with the MAC slirp's gateway has (52:55:0a:00:02:02), so A
prints exactly its QEMU golden output. B answers A's three pings, then pings A three
times; A answers silently. Both sit on ``switch:<unique name>``; each machine runs in its
own thread (Unicorn releases the GIL while it emulates).

B starts first and A only once B prints "netpeer: serving": nettest ARPs for the gateway
once, so the gateway has to be listening before it asks.
"""
from __future__ import annotations

import itertools
import os
import re
import select
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from hv import guests
from hv.machine import DriveSpec, Machine, MachineConfig
from tests.guest_run import expect_finished

PEER_MAC = bytes.fromhex("52550a000202")     # slirp's gateway MAC, so A's output is QEMU's
READY = "netpeer: serving"
DEFAULT_TIMEOUT = 60.0

_names = itertools.count()


def unique_switch() -> str:
    """A switch name no other pair in this process uses (switches live for the process)."""
    return f"pair{os.getpid()}-{next(_names)}"


class _Runner(threading.Thread):
    def __init__(self, machine: Machine, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.machine = machine
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.machine.run()
        except BaseException as exc:   # reported by run_pair, not lost in the thread
            self.error = exc


def run_pair(timeout: float = DEFAULT_TIMEOUT, switch: str | None = None,
             pcap: str | None = None) -> tuple[str, str]:
    """Run nettest (A) and netpeer (B) on one switch; return (A's serial, B's serial).

    Each machine stops by itself (``cli; hlt`` after its summary) or at ``timeout``
    seconds. ``pcap``: capture B's port (everything A and B exchange) to this file.
    """
    net = f"switch:{switch or unique_switch()}"
    b = Machine(MachineConfig(fda=DriveSpec(str(guests.image_path("netpeer")), readonly=True),
                              net=net, nic_mac=PEER_MAC, pcap=pcap, timeout=timeout,
                              until=r"netpeer done: \d+ passed, \d+ failed\r\n"))
    a = None
    threads: list[_Runner] = []
    try:
        threads.append(_Runner(b, "netpeer"))
        threads[-1].start()
        deadline = time.monotonic() + timeout
        while READY not in b.serial_text() and threads[0].is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        a = Machine(MachineConfig(fda=DriveSpec(str(guests.image_path("nettest")), readonly=True),
                                  net=net, timeout=timeout))
        threads.append(_Runner(a, "nettest"))
        threads[-1].start()
        for t in threads:
            t.join(timeout + 10)
        for t in threads:
            if t.is_alive():
                raise TimeoutError(f"machine {t.name} did not stop")
            if t.error is not None:
                raise t.error
        expect_finished(b, b.result, "netpeer")
        expect_finished(a, a.result, "nettest")
        return a.serial_text(), b.serial_text()
    finally:
        if all(not t.is_alive() for t in threads):
            for m in (a, b):
                if m is not None:
                    m.close()


# ---- the same pair on the reference PC: two QEMUs joined by a socket netdev ------------------

A_DONE = r"nettest done: \d+ passed, \d+ failed\r\n"
B_DONE = r"netpeer done: \d+ passed, \d+ failed\r\n"


def _qemu(name: str, netdev: str, mac: str, tmp: Path) -> subprocess.Popen:
    from tests.qemu_util import FLOPPY_BYTES, QEMU
    disk = tmp / f"{name}.img"
    disk.write_bytes(guests.image_path(name).read_bytes().ljust(FLOPPY_BYTES, b"\0"))
    return subprocess.Popen(
        [QEMU, "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-m", "32",
         "-drive", f"file={disk},if=floppy,format=raw,index=0", "-boot", "a",
         "-device", f"ne2k_isa,iobase=0x300,irq=9,netdev=n0,mac={mac}", "-netdev", netdev],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _read_until(proc: subprocess.Popen, out: bytearray, pattern: str, deadline: float,
                timeout: float = 0) -> None:
    """Read QEMU's serial output into ``out`` until ``pattern`` appears; QemuTimeout if
    the deadline passes or QEMU exits first."""
    from tests.qemu_util import not_finished
    fd = proc.stdout.fileno()
    while not re.search(pattern, out.decode("latin-1")):
        if time.monotonic() >= deadline:
            raise not_finished("QEMU", timeout, out)
        if select.select([fd], [], [], 0.05)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise not_finished("QEMU", timeout, out, exited=True)
            out += chunk


def run_pair_qemu(timeout: float = 30.0) -> tuple[str, str]:
    """nettest and netpeer under qemu-system-i386 + SeaBIOS, B listening on a TCP socket
    netdev and A connecting to it; A starts once B serves. Returns (A's serial, B's)."""
    from tests.qemu_util import require_qemu
    require_qemu()
    with socket.socket() as s:     # a free port for B's listening netdev
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs: list[subprocess.Popen] = []
    a_out, b_out = bytearray(), bytearray()
    with tempfile.TemporaryDirectory(prefix="hv-qemu-pair-") as td:
        tmp = Path(td)
        deadline = time.monotonic() + timeout
        try:
            procs.append(_qemu("netpeer", f"socket,id=n0,listen=127.0.0.1:{port}",
                               "52:55:0a:00:02:02", tmp))
            _read_until(procs[0], b_out, READY, deadline, timeout)
            procs.append(_qemu("nettest", f"socket,id=n0,connect=127.0.0.1:{port}",
                               "52:54:00:12:34:56", tmp))
            _read_until(procs[1], a_out, A_DONE, deadline, timeout)
            _read_until(procs[0], b_out, B_DONE, deadline, timeout)
        finally:
            for p in procs:
                p.kill()
                p.wait()
                p.stdout.close()
    return a_out.decode("latin-1"), b_out.decode("latin-1")


if __name__ == "__main__":
    a_out, b_out = run_pair()
    print("--- A (nettest) ---")
    print(a_out, end="")
    print("--- B (netpeer) ---")
    print(b_out, end="")
