"""The GDB remote serial protocol: ``hv run --gdb tcp::1234`` (``-s``), ``-S`` to start stopped.

    $ hv run hello -s -S                 # in one terminal
    $ gdb -q -ex 'target remote :1234'   # in another (docs/debugging.md)

One client at a time on a localhost TCP port. The connection thread owns the socket; it
never touches the engine, it hands work to the vCPU thread with ``Debugger.request``
(hv/debug/control.py). Stops (a breakpoint, a watchpoint, a step, Ctrl-C, the monitor's
``stop``) reach it through a listener that only queues the event and wakes the thread, so
a slow or silent peer can never hold up the vCPU.

Addresses are *linear* (segment base plus offset, then the page walk), as QEMU's stub has
them: in real mode gdb's $pc is EIP alone, so a breakpoint at the boot sector is
``break *0x7c00`` (CS=0) and code at F000:E05B is ``x/i 0xfe05b``.

The peer is not trusted: a malformed packet gets ``E..`` or the empty reply, an oversized
one is dropped, a disconnect detaches (breakpoints and watchpoints cleared, the guest
continues). Nothing a peer sends raises in the host.
"""
from __future__ import annotations

import queue
import select
import socket
import threading
from dataclasses import dataclass

from unicorn import UcError
from unicorn import x86_const as X

from hv.debug.control import SIGTRAP, StopEvent
from hv.irq import GuestFault
from hv.memory import GuestMemoryError

DEFAULT_PORT = 1234
LOOPBACK = ("", "localhost", "127.0.0.1", "::1", "[::1]")
PACKET_SIZE = 0x4000                     # announced in qSupported: gdb's largest packet
MAX_MEMORY = (PACKET_SIZE - 64) // 2     # bytes per m/M reply or request (hex doubles them)
MAX_BUFFERED = 2 * PACKET_SIZE + 64      # an unfinished packet longer than this is dropped
THREAD_ID = 1                            # one vCPU, one "thread"
WATCH_STOP_KEY = {"w": "watch", "r": "rwatch", "a": "awatch"}
Z_WATCH_KIND = {2: "w", 3: "r", 4: "a"}
STOP_WAIT = 10.0                         # seconds to wait for a stop the stub asked for
SEND_TIMEOUT = 30.0                      # a peer that stops reading is dropped after this
MAX_BREAKPOINTS = 256                    # per client: each one is an engine hook
MAX_WATCHPOINTS = 64

# Errno-style error replies (gdb prints the number).
E_INVAL = b"E16"       # EINVAL (22): a malformed or unsupported argument
E_FAULT = b"E0e"       # EFAULT (14): memory not mapped or outside guest RAM
E_BUSY = b"E10"        # EBUSY (16): the machine is running or gone
E_NOSPC = b"E1c"       # ENOSPC (28): too many breakpoints or watchpoints


class ProtocolError(Exception):
    """A packet that cannot be served: answered with ``reply``."""

    def __init__(self, reply: bytes = E_INVAL) -> None:
        super().__init__(reply.decode())
        self.reply = reply


# -- registers ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Register:
    name: str
    bits: int
    type: str
    group: str
    uc: int | None               # the engine's register; None: x87 stack register (below)


_CORE_32 = [("eax", "int32"), ("ecx", "int32"), ("edx", "int32"), ("ebx", "int32"),
            ("esp", "data_ptr"), ("ebp", "data_ptr"), ("esi", "int32"), ("edi", "int32"),
            ("eip", "code_ptr"), ("eflags", "i386_eflags"), ("cs", "int32"), ("ss", "int32"),
            ("ds", "int32"), ("es", "int32"), ("fs", "int32"), ("gs", "int32")]
# gdb's i386 core feature must also hold the x87 registers, in this order.
_X87_CONTROL = [("fctrl", X.UC_X86_REG_FPCW), ("fstat", X.UC_X86_REG_FPSW),
                ("ftag", X.UC_X86_REG_FPTAG), ("fiseg", X.UC_X86_REG_FCS),
                ("fioff", X.UC_X86_REG_FIP), ("foseg", X.UC_X86_REG_FDS),
                ("fooff", X.UC_X86_REG_FDP), ("fop", X.UC_X86_REG_FOP)]
_SYSTEM = [("cr0", X.UC_X86_REG_CR0), ("cr2", X.UC_X86_REG_CR2), ("cr3", X.UC_X86_REG_CR3),
           ("cr4", X.UC_X86_REG_CR4)]

REGISTERS: list[Register] = (
    [Register(n, 32, t, "general", getattr(X, f"UC_X86_REG_{n.upper()}")) for n, t in _CORE_32]
    + [Register(f"st{i}", 80, "i387_ext", "float", None) for i in range(8)]
    + [Register(n, 32, "int", "float", r) for n, r in _X87_CONTROL]
    + [Register(n, 32, "int32", "system", r) for n, r in _SYSTEM])
CORE_COUNT = len(_CORE_32) + 8 + len(_X87_CONTROL)     # the org.gnu.gdb.i386.core feature
REG_BYTES = [r.bits // 8 for r in REGISTERS]

_EFLAGS = [("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8),
           ("IF", 9), ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17),
           ("AC", 18), ("VIF", 19), ("VIP", 20), ("ID", 21)]


def target_xml(architecture: str = "i386") -> bytes:
    """The target description gdb reads with qXfer:features:read:target.xml.

    ``architecture`` is i386, or i8086 while the CPU is in real mode: gdb lets
    ``set architecture`` choose between the two only when the description names the
    smaller one (described as i386, ``set architecture i8086`` is ignored for disassembly).
    The registers are the same i386 set either way; no OS ABI (a guest is no Linux process).
    """
    def reg(i: int, r: Register) -> str:
        return (f'    <reg name="{r.name}" bitsize="{r.bits}" type="{r.type}" '
                f'group="{r.group}" regnum="{i}"/>')
    flags = "\n".join(f'      <field name="{n}" start="{b}" end="{b}"/>' for n, b in _EFLAGS)
    core = "\n".join(reg(i, r) for i, r in enumerate(REGISTERS[:CORE_COUNT]))
    system = "\n".join(reg(i, r) for i, r in enumerate(REGISTERS) if i >= CORE_COUNT)
    return f"""<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
  <architecture>{architecture}</architecture>
  <osabi>none</osabi>
  <feature name="org.gnu.gdb.i386.core">
    <flags id="i386_eflags" size="4">
{flags}
    </flags>
{core}
  </feature>
  <feature name="org.hv.i386.system">
{system}
  </feature>
</target>
""".encode()


def _x87_physical(uc, stack_index: int) -> int:
    """st(i) is relative to the x87 stack top (FSW bits 13:11)."""
    top = (uc.reg_read(X.UC_X86_REG_FPSW) >> 11) & 7
    return X.UC_X86_REG_FP0 + ((top + stack_index) & 7)


def read_register(uc, number: int) -> bytes:
    r = REGISTERS[number]
    if r.uc is None:
        mantissa, exponent = uc.reg_read(_x87_physical(uc, number - len(_CORE_32)))
        return mantissa.to_bytes(8, "little") + (exponent & 0xFFFF).to_bytes(2, "little")
    return (uc.reg_read(r.uc) & 0xFFFFFFFF).to_bytes(4, "little")


def write_register(uc, number: int, data: bytes) -> None:
    r = REGISTERS[number]
    if r.uc is None:
        uc.reg_write(_x87_physical(uc, number - len(_CORE_32)),
                     (int.from_bytes(data[:8], "little"), int.from_bytes(data[8:10], "little")))
        return
    uc.reg_write(r.uc, int.from_bytes(data, "little"))


# -- packet framing ----------------------------------------------------------------------

def checksum(body: bytes) -> bytes:
    return b"%02x" % (sum(body) & 0xFF)


def frame(body: bytes) -> bytes:
    """``$body#cs``, with the bytes the protocol reserves escaped (}-xor-0x20)."""
    out = bytearray()
    for b in body:
        if b in b"$#}*":
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return b"$" + bytes(out) + b"#" + checksum(bytes(out))


def unescape(data: bytes) -> bytes:
    """Binary data of an X packet: }-escapes undone."""
    out, i = bytearray(), 0
    while i < len(data):
        if data[i] == 0x7D:
            if i + 1 >= len(data):
                raise ProtocolError()
            out.append(data[i + 1] ^ 0x20)
            i += 2
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def _hex_int(text: bytes) -> int:
    """A protocol number: 1 to 16 hex digits and nothing else (int() would also take
    signs, spaces, underscores and 0x)."""
    if not text or len(text) > 16 or not _HEX_DIGITS.issuperset(text):
        raise ProtocolError()
    return int(text, 16)


def _hex_bytes(text: bytes) -> bytes:
    try:
        return bytes.fromhex(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError() from None


def _addr_len(text: bytes) -> tuple[int, int]:
    addr, sep, length = text.partition(b",")
    if not sep:
        raise ProtocolError()
    return _hex_int(addr) & 0xFFFFFFFF, _hex_int(length)


def stop_reply(event: StopEvent | None, hw_breakpoints: set[int] = frozenset()) -> bytes:
    """``T`` stop reply for a stop event (gdb's signal numbers: 5 TRAP, 2 INT)."""
    thread = b"thread:%x;" % THREAD_ID
    if event is None:
        return b"T%02x" % SIGTRAP + thread
    if event.reason == "watch":
        key = WATCH_STOP_KEY.get(event.kind or "w", "watch")
        return b"T%02x%s:%x;" % (SIGTRAP, key.encode(), event.address) + thread
    if event.reason == "break":
        kind = b"hwbreak" if event.address in hw_breakpoints else b"swbreak"
        return b"T%02x%s:;" % (SIGTRAP, kind) + thread
    return b"T%02x" % event.signal + thread


# -- one client ------------------------------------------------------------------------

class Connection:
    """One gdb: reads packets, answers them, sends stop replies when the guest stops."""

    def __init__(self, server: GdbServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.dbg = server.dbg
        self.machine = server.machine
        self.inbuf = bytearray()
        self.ack = True                  # until QStartNoAckMode
        self.last_sent = b""
        self.resumed = False             # gdb waits for a stop reply
        self.hw_breakpoints: set[int] = set()
        self.description: bytes | None = None      # the target.xml this gdb is reading
        self.closed = False

    # -- sending (this thread only) ----------------------------------------------------
    def _send_raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def send(self, body: bytes) -> None:
        self.last_sent = frame(body)
        self._send_raw(self.last_sent)

    # -- the loop -----------------------------------------------------------------------
    def serve(self) -> None:
        self._stop_for_attach()
        wake = self.server.wake_r
        while not self.closed:
            try:
                ready, _, _ = select.select([self.sock, wake], [], [], 0.5)
            except (OSError, ValueError):
                break
            if wake in ready:
                self.server.drain_wake()
            self._deliver_events()
            if self.closed:
                break
            if self.sock in ready:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                self.feed(data)
        self.detach()

    def _stop_for_attach(self) -> None:
        """gdb expects a stopped target when it connects (QEMU stops the VM too)."""
        if self.dbg.stopped or self.server.ended():
            return
        self.dbg.interrupt()
        try:
            self.server.events.get(timeout=STOP_WAIT)
        except queue.Empty:
            pass

    def _deliver_events(self) -> None:
        while True:
            try:
                item = self.server.events.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, bytes):          # the run ended: W or nothing
                if self.resumed:
                    self.send(item)
                self.closed = True
                return
            if self.resumed:
                self.resumed = False
                self.send(stop_reply(item, self.hw_breakpoints))

    def feed(self, data: bytes) -> None:
        """Split the byte stream into acks, interrupts and packets."""
        buf = self.inbuf
        buf += data
        while buf and not self.closed:
            head = buf[0]
            if head == 0x03:                          # Ctrl-C
                del buf[0]
                self.dbg.interrupt()
            elif head == ord("-"):                    # the peer wants the last packet again
                del buf[0]
                if self.ack and self.last_sent:
                    self._send_raw(self.last_sent)
            elif head == ord("$"):
                end = buf.find(b"#")
                if end < 0:
                    if len(buf) > MAX_BUFFERED:       # no end in sight: drop it
                        buf.clear()
                        if self.ack:
                            self._send_raw(b"-")
                    return
                if len(buf) < end + 3:
                    return                            # the checksum has not arrived yet
                body, cs = bytes(buf[1:end]), bytes(buf[end + 1:end + 3])
                del buf[:end + 3]
                if cs.lower() != checksum(body):
                    if self.ack:
                        self._send_raw(b"-")
                    continue
                if self.ack:
                    self._send_raw(b"+")
                reply = self.dispatch(body)
                if reply is not None:
                    self.send(reply)
            else:                                     # "+" and line noise
                del buf[0]

    # -- packets --------------------------------------------------------------------------
    def dispatch(self, body: bytes) -> bytes | None:
        """The reply to one packet (None: none now). Never raises."""
        try:
            return self.handle(body)
        except ProtocolError as e:
            return e.reply
        except (GuestFault, GuestMemoryError):
            return E_FAULT
        except (UcError, ValueError, OverflowError, IndexError):
            return E_INVAL
        except (TimeoutError, RuntimeError):
            return E_BUSY
        except Exception:                   # whatever else a packet provokes: an error reply
            return E_INVAL

    def handle(self, body: bytes) -> bytes | None:
        if not body:
            return b""
        cmd, rest = body[:1], body[1:]
        if self.server.ended() and cmd not in (b"?", b"D", b"k"):
            raise ProtocolError(E_BUSY)
        handler = self.SIMPLE.get(cmd)
        if handler is not None:
            return handler(self, rest)
        if cmd == b"q":
            return self.query(rest)
        if cmd == b"Q":
            if rest == b"StartNoAckMode":
                self.send(b"OK")                      # acknowledged before acks stop
                self.ack = False
                return None
            return b""
        if cmd == b"v":
            return self.v_packet(rest)
        return b""                                    # unsupported: the empty reply

    def request(self, fn):
        return self.dbg.request(fn)

    def _status(self, rest: bytes) -> bytes:
        if self.server.ended():
            return b"W%02x" % self.server.final_code()
        event = self.dbg.event
        if event is not None and event.reason in ("start", "interrupt"):
            event = None                              # attached: a plain SIGTRAP, as QEMU
        return stop_reply(event, self.hw_breakpoints)

    def _read_registers(self, rest: bytes) -> bytes:
        data = self.request(lambda m: b"".join(read_register(m.vcpu.uc, i)
                                               for i in range(len(REGISTERS))))
        return data.hex().encode()

    def _write_registers(self, rest: bytes) -> bytes:
        data = _hex_bytes(rest)
        if len(data) != sum(REG_BYTES):
            raise ProtocolError()

        def write(m) -> None:
            at = 0
            for i, n in enumerate(REG_BYTES):
                write_register(m.vcpu.uc, i, data[at:at + n])
                at += n
        self.request(write)
        return b"OK"

    def _read_register(self, rest: bytes) -> bytes:
        n = _hex_int(rest)
        if n >= len(REGISTERS):
            raise ProtocolError()
        return self.request(lambda m: read_register(m.vcpu.uc, n)).hex().encode()

    def _write_register(self, rest: bytes) -> bytes:
        number, sep, value = rest.partition(b"=")
        n = _hex_int(number)
        data = _hex_bytes(value)
        if not sep or n >= len(REGISTERS) or len(data) != REG_BYTES[n]:
            raise ProtocolError()
        self.request(lambda m: write_register(m.vcpu.uc, n, data))
        return b"OK"

    def _read_memory(self, rest: bytes) -> bytes:
        addr, length = _addr_len(rest)
        length = min(length, MAX_MEMORY)

        def read(m) -> bytes:
            # Page by page: gdb takes a short read, an error only if nothing was readable.
            out, at, left = bytearray(), addr, length
            while left > 0:
                chunk = min(left, 0x1000 - (at & 0xFFF))
                try:
                    out += m.vcpu.read_linear(at, chunk)
                except (GuestFault, GuestMemoryError):
                    break
                at, left = (at + chunk) & 0xFFFFFFFF, left - chunk
            return bytes(out)
        if length == 0:
            return b""
        data = self.request(read)
        if not data:
            raise ProtocolError(E_FAULT)
        return data.hex().encode()

    def _write(self, rest: bytes, decode, limit: int) -> bytes:
        """M (hex payload) and X (binary payload): ADDR,LENGTH:DATA."""
        spec, sep, payload = rest.partition(b":")
        addr, length = _addr_len(spec)
        data = decode(payload)
        if not sep or length != len(data) or length > limit:
            raise ProtocolError()
        if data:
            self.request(lambda m: self.dbg.poke(addr, data))
        return b"OK"

    def _write_memory(self, rest: bytes) -> bytes:
        return self._write(rest, _hex_bytes, MAX_MEMORY)

    def _write_binary(self, rest: bytes) -> bytes:
        return self._write(rest, unescape, PACKET_SIZE)

    def _breakpoint(self, rest: bytes, insert: bool) -> bytes:
        kind_text, _, spec = rest.partition(b",")
        kind = _hex_int(kind_text)
        addr, size = _addr_len(spec.split(b";")[0])
        dbg = self.dbg
        if kind in (0, 1):
            if insert:
                if addr not in dbg.breakpoints and len(dbg.breakpoints) >= MAX_BREAKPOINTS:
                    raise ProtocolError(E_NOSPC)
                self.request(lambda m: dbg.add_breakpoint(addr))
                (self.hw_breakpoints.add if kind == 1 else self.hw_breakpoints.discard)(addr)
            else:
                self.request(lambda m: dbg.remove_breakpoint(addr))
                self.hw_breakpoints.discard(addr)
            return b"OK"
        if kind in Z_WATCH_KIND:
            if not 1 <= size <= 4096:
                raise ProtocolError()
            how = Z_WATCH_KIND[kind]
            if insert:
                if len(dbg.watchpoints) >= MAX_WATCHPOINTS:
                    raise ProtocolError(E_NOSPC)
                self.request(lambda m: dbg.add_watchpoint(addr, size, how))
            else:
                self.request(lambda m: dbg.remove_watchpoint(addr, size, how))
            return b"OK"
        return b""                                   # unsupported kind

    def _resume(self, step: bool, address: bytes = b"") -> bytes | None:
        """c/s/vCont: go on (optionally at a new EIP); the stop reply comes later."""
        dbg = self.dbg
        eip = _hex_int(address) & 0xFFFFFFFF if address else None
        if self.resumed:
            return None                               # already running: nothing to add

        def go(m) -> None:
            if not dbg.stopped:
                raise RuntimeError("the machine is running")
            if eip is not None:
                m.vcpu.uc.reg_write(X.UC_X86_REG_EIP, eip)
            dbg.step() if step else dbg.cont()
        self.resumed = True
        try:
            self.request(go)
        except BaseException:
            self.resumed = False
            raise
        return None

    def _continue(self, rest: bytes) -> bytes | None:
        return self._resume(False, rest)

    def _step(self, rest: bytes) -> bytes | None:
        return self._resume(True, rest)

    def _continue_signal(self, rest: bytes) -> bytes | None:
        _sig, _, address = rest.partition(b";")     # no signal reaches a bare-metal guest
        return self._resume(False, address)

    def _step_signal(self, rest: bytes) -> bytes | None:
        _sig, _, address = rest.partition(b";")
        return self._resume(True, address)

    def _set_thread(self, rest: bytes) -> bytes:
        return b"OK"

    def _thread_alive(self, rest: bytes) -> bytes:
        return b"OK" if rest in (b"%x" % THREAD_ID, b"0", b"-1") else b"E01"

    def _kill(self, rest: bytes) -> None:
        self.machine.finish(1, "killed from gdb")
        self.machine.wake_vcpu()
        self.closed = True                  # k has no reply

    def _detach(self, rest: bytes) -> None:
        self.send(b"OK")                    # before closing: the reply is due first
        self.closed = True

    SIMPLE = {b"?": _status, b"g": _read_registers, b"G": _write_registers,
              b"p": _read_register, b"P": _write_register, b"m": _read_memory,
              b"M": _write_memory, b"X": _write_binary,
              b"Z": lambda self, rest: self._breakpoint(rest, True),
              b"z": lambda self, rest: self._breakpoint(rest, False),
              b"c": _continue, b"s": _step, b"C": _continue_signal, b"S": _step_signal,
              b"H": _set_thread, b"T": _thread_alive, b"k": _kill, b"D": _detach}

    def query(self, rest: bytes) -> bytes:
        name, _, args = rest.partition(b":")
        if name == b"Supported":
            return (b"PacketSize=%x;qXfer:features:read+;QStartNoAckMode+;swbreak+;"
                    b"hwbreak+;vContSupported+" % PACKET_SIZE)
        if name == b"Xfer":
            return self.xfer(args)
        if rest == b"Attached" or name == b"Attached":
            return b"1"                               # attached to an existing machine
        if rest == b"C":
            return b"QC%x" % THREAD_ID
        if rest == b"fThreadInfo":
            return b"m%x" % THREAD_ID
        if rest == b"sThreadInfo":
            return b"l"
        if rest.startswith(b"ThreadExtraInfo,"):
            mode = self.request(lambda m: _cpu_mode(m.vcpu.uc))
            return f"vCPU 0, {mode}".encode().hex().encode()
        if rest.startswith(b"Rcmd,"):
            return self.monitor_command(rest[5:])
        if rest == b"Symbol::":
            return b"OK"
        return b""

    def xfer(self, args: bytes) -> bytes:
        parts = args.split(b":")
        if len(parts) != 4 or parts[0] != b"features" or parts[1] != b"read":
            return b""
        if parts[2] != b"target.xml":
            raise ProtocolError(b"E00")
        offset, length = _addr_len(parts[3])
        if offset == 0 or self.description is None:     # gdb starts at 0: the mode now
            real = self.request(lambda m: not m.vcpu.uc.reg_read(X.UC_X86_REG_CR0) & 1)
            self.description = target_xml("i8086" if real else "i386")
        xml = self.description
        chunk = xml[offset:offset + min(length, PACKET_SIZE - 16)]
        more = offset + len(chunk) < len(xml)
        return (b"m" if more else b"l") + chunk

    def monitor_command(self, hexcmd: bytes) -> bytes:
        """``monitor CMD`` in gdb: the same commands as --monitor (hv/debug/monitor.py)."""
        try:
            line = _hex_bytes(hexcmd).decode("utf-8", "replace")
        except ProtocolError:
            return E_INVAL
        output = self.server.monitor.handle_line(line)
        if output and not output.endswith("\n"):
            output += "\n"
        data = output.encode("utf-8", "replace")
        for i in range(0, len(data), MAX_MEMORY):      # console output, in O packets
            self.send(b"O" + data[i:i + MAX_MEMORY].hex().encode())
        return b"OK"

    def v_packet(self, rest: bytes) -> bytes | None:
        if rest == b"Cont?":
            return b"vCont;c;C;s;S"
        if rest.startswith(b"Cont;"):
            for action in rest[5:].split(b";"):
                what, _, thread = action.partition(b":")
                if thread and thread not in (b"%x" % THREAD_ID, b"-1", b"0", b"p1.1",
                                             b"p1.-1", b"p-1.-1"):
                    continue
                if what[:1] in (b"c", b"C"):
                    return self._resume(False)
                if what[:1] in (b"s", b"S"):
                    return self._resume(True)
                raise ProtocolError()                 # t, r...: not supported
            raise ProtocolError()
        return b""                                    # vMustReplyEmpty and the rest

    def detach(self) -> None:
        """The peer is gone (D, EOF, an error): clear its breakpoints, let the guest run."""
        dbg = self.dbg
        try:
            self.sock.close()
        except OSError:
            pass
        if self.server.ended():
            return

        def release(m) -> None:
            dbg.clear()
            dbg.cont()
        try:
            dbg.request(release)
        except (TimeoutError, RuntimeError):
            pass


def _cpu_mode(uc) -> str:
    cr0 = uc.reg_read(X.UC_X86_REG_CR0)
    if not cr0 & 1:
        return "real mode"
    return "protected mode, paging" if cr0 & 0x80000000 else "protected mode"


# -- the server ----------------------------------------------------------------------------

def parse_spec(spec: str) -> tuple[str, int]:
    """``tcp::PORT`` or ``tcp:localhost:PORT`` (loopback only) -> (host, port).
    ValueError with a one-line reason otherwise."""
    kind, sep, rest = spec.partition(":")
    if kind != "tcp" or not sep:
        raise ValueError(f"--gdb {spec!r}: expected tcp::PORT (for example tcp::1234)")
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        raise ValueError(f"--gdb {spec!r}: expected tcp::PORT (for example tcp::1234)")
    if host not in LOOPBACK:
        raise ValueError(f"--gdb {spec!r}: the stub listens on localhost only "
                         "(it gives full access to the machine)")
    try:
        port = int(port_text, 10)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"--gdb {spec!r}: {port_text!r} is not a TCP port")
    return ("::1" if host in ("::1", "[::1]") else "127.0.0.1"), port


class GdbServer:
    """Listens for gdb on a loopback port; serves one client at a time."""

    def __init__(self, machine, host: str, port: int, start_stopped: bool = False) -> None:
        from hv.debug.monitor import Monitor
        self.machine = machine
        self.dbg = machine.attach_debugger(start_stopped)
        self.monitor = Monitor(machine)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, port), family=family, backlog=1)
        self.host, self.port = host, self.listener.getsockname()[1]
        self.events: queue.Queue = queue.Queue()
        self.wake_r, self._wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.exit_code: int | None = None
        self.connection: Connection | None = None
        self._closing = False
        self.dbg.listeners.append(self._on_stop)
        self.thread = threading.Thread(target=self._accept_loop, name="hv-gdbstub", daemon=True)
        self.thread.start()

    def describe(self) -> str:
        where = f"[{self.host}]" if ":" in self.host else self.host
        return (f"gdb stub listening on {where}:{self.port} "
                f"(gdb: target remote :{self.port})")

    def ended(self) -> bool:
        """The run is over (or ending: the vCPU serves no more requests)."""
        return self.exit_code is not None or self.machine.result is not None

    def final_code(self) -> int:
        result = self.machine.result
        code = self.exit_code if self.exit_code is not None else getattr(result, "exit_code", 0)
        return code & 0xFF

    # -- from the vCPU thread: queue, never block ---------------------------------------
    def _on_stop(self, event: StopEvent) -> None:
        if self.connection is not None:
            self.events.put(event)
            self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"!")
        except OSError:
            pass

    def drain_wake(self) -> None:
        try:
            while self.wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _accept_loop(self) -> None:
        from hv.debug.monitor import accept_clients
        for sock in accept_clients(self.listener, lambda: self._closing):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(SEND_TIMEOUT)
            while not self.events.empty():            # stale stops from before this client
                self.events.get_nowait()
            self.connection = Connection(self, sock)
            try:
                self.connection.serve()
            finally:
                self.connection = None

    def close(self, result=None) -> None:
        """The run is over (``result``: its RunResult): tell a waiting gdb (``W``), stop
        listening."""
        code = getattr(result, "exit_code", 0) if result is not None else 0
        self.exit_code = code
        self._closing = True
        if self.connection is not None:
            self.events.put(b"W%02x" % (code & 0xFF))
            self._wake()
            self.thread.join(2.0)
        try:
            self.listener.close()
        except OSError:
            pass
        if self.connection is not None:
            try:
                self.connection.sock.close()
            except OSError:
                pass
        self.thread.join(2.0)
        if self._on_stop in self.dbg.listeners:
            self.dbg.listeners.remove(self._on_stop)
        self.wake_r.close()
        self._wake_w.close()


def attach(machine, spec: str, start_stopped: bool = False) -> GdbServer:
    """Start the stub for ``--gdb SPEC`` (``-s`` is ``tcp::1234``). ValueError for a bad
    SPEC, OSError when the port cannot be bound."""
    host, port = parse_spec(spec)
    return GdbServer(machine, host, port, start_stopped)
