"""The 8042 keyboard controller (ports 0x60/0x64), its AT keyboard, and port 0x92.

Three parties talk through one output buffer: the controller itself (replies to
commands written to port 0x64), the keyboard (ACKs and replies to bytes written
to port 0x60) and the keyboard's scancodes, which the host queues with
``press``. The buffer holds one byte; the next one moves in only after the guest
has read the previous one, so the host can queue a whole string and nothing is
lost or overtaken. Controller replies come first, then keyboard replies, then
scancodes - a guest waiting for an ACK sees the ACK, not a keystroke.

The keyboard sends scancode set 1 directly (what set 2 through the 8042's
translation produces), whatever the command byte's XLATE bit or the set
selected with 0xF0 say; those are only stored and reported back.

No mouse is attached: bytes sent to the aux port are answered with 0xFE and the
status TIMEOUT bit, as a controller with an empty aux connector does.

A20: the output port powers on as 0x03 (not in reset, A20 enabled) because
QEMU/SeaBIOS hand a boot sector a machine with A20 already on; port 0x92 powers
on with its A20 bit set for the same reason. ``on_a20(bool)`` is called when a
write changes the gate, ``on_reset()`` when the guest pulses the reset line.
"""
from __future__ import annotations

from collections import deque
from enum import IntFlag
from typing import Callable

from hv.devices import state as st
from hv.devices.base import Device, IrqLine, NullIrq, PortRange


class Status(IntFlag):
    OBF = 0x01      # output buffer full: a byte waits at port 0x60
    IBF = 0x02      # input buffer full (we consume writes at once: always 0)
    SYS = 0x04      # system flag: set by self test / command byte bit 2
    A2 = 0x08       # 1 = last write went to port 0x64 (command), 0 = 0x60 (data)
    INH = 0x10      # inhibit switch: 1 = keyboard NOT inhibited (key lock open)
    AUXB = 0x20     # the byte in the output buffer came from the aux (mouse) port
    TIMEOUT = 0x40  # transmission timeout (aux device absent)
    PARITY = 0x80   # parity error on the serial link (never happens here)


class CmdByte(IntFlag):
    INT = 0x01      # IRQ 1 when a keyboard byte fills the output buffer
    INT2 = 0x02     # IRQ 12 when an aux byte fills it
    SYS = 0x04      # system flag, mirrored in status
    IGNLK = 0x08    # ignore key lock (AT only)
    DISABLE_KBD = 0x10
    DISABLE_AUX = 0x20
    XLATE = 0x40    # set 2 -> set 1 translation (our keyboard emits set 1 anyway)


class OutPort(IntFlag):
    RESET = 0x01    # 0 holds the CPU in reset
    A20 = 0x02      # A20 gate
    AUX_DATA = 0x04
    AUX_CLOCK = 0x08
    OBF_KBD = 0x10  # IRQ 1 output (reflects the output buffer)
    OBF_AUX = 0x20  # IRQ 12 output
    KBD_CLOCK = 0x40
    KBD_DATA = 0x80


STATUS_RESET = Status.INH            # no key lock; SYS clear until the BIOS self-tests
COMMAND_BYTE_RESET = CmdByte.INT | CmdByte.XLATE  # IRQ 1 on (as QEMU), translation on
OUTPUT_PORT_RESET = OutPort.RESET | OutPort.A20   # 0x03: running, A20 on (see module doc)
INPUT_PORT = 0x80                    # bit 7: keyboard not inhibited
SELF_TEST_OK = 0x55
INTERFACE_OK = 0x00
NO_PASSWORD = 0xF1

# Keyboard replies.
ACK = 0xFA
BAT_OK = 0xAA        # basic assurance test passed (after reset)
ECHO = 0xEE
RESEND = 0xFE
KBD_ID = (0xAB, 0x83)  # MF2 keyboard
SCANCODE_SET_DEFAULT = 2
# What a set number reads back as through the 8042's translation.
_XLATED_SET = {1: 0x43, 2: 0x41, 3: 0x3F}


class I8042(Device):
    name = "i8042"
    ports = (PortRange(0x60, 1, 0), PortRange(0x64, 1, 4))
    irq = 1

    DATA, STATUS = 0, 4   # offsets: data port 0x60, status/command port 0x64

    def __init__(self, irq1: IrqLine | None = None,
                 on_a20: Callable[[bool], None] | None = None,
                 on_reset: Callable[[], None] | None = None,
                 irq12: IrqLine | None = None) -> None:
        self._irq1 = irq1 if irq1 is not None else NullIrq()
        self._irq12 = irq12 if irq12 is not None else NullIrq()
        self.on_a20 = on_a20
        self.on_reset = on_reset
        self._keys: deque[int] = deque()   # host scancodes survive guest resets
        # Controller commands 0x64 <- cmd; None = no reply data byte expected.
        self._ctrl_cmds: dict[int, Callable[[int], None]] = {
            0xA4: lambda c: self._ctrl_reply(NO_PASSWORD),
            0xA7: lambda c: self._set_cmd_byte(self.command_byte | CmdByte.DISABLE_AUX),
            0xA8: lambda c: self._set_cmd_byte(self.command_byte & ~int(CmdByte.DISABLE_AUX)),
            0xA9: lambda c: self._ctrl_reply(INTERFACE_OK),
            0xAA: self._self_test,
            0xAB: lambda c: self._ctrl_reply(INTERFACE_OK),
            0xAD: lambda c: self._set_cmd_byte(self.command_byte | CmdByte.DISABLE_KBD),
            0xAE: lambda c: self._set_cmd_byte(self.command_byte & ~int(CmdByte.DISABLE_KBD)),
            0xC0: lambda c: self._ctrl_reply(INPUT_PORT),
            0xD0: lambda c: self._ctrl_reply(self._read_output_port()),
            0xDD: lambda c: self._write_output_port(self.output_port & ~int(OutPort.A20)),
            0xDF: lambda c: self._write_output_port(self.output_port | OutPort.A20),
            0xE0: lambda c: self._ctrl_reply(0x00),   # test inputs: clock/data low
        }
        for c in range(0x20, 0x40):
            self._ctrl_cmds[c] = lambda c: self._ctrl_reply(self.ram[c & 0x1F])
        for c in range(0xF0, 0x100):
            self._ctrl_cmds[c] = self._pulse
        # Controller commands that take the next byte written to port 0x60.
        self._ctrl_data_cmds: dict[int, Callable[[int, int], None]] = {
            0xD1: lambda c, v: self._write_output_port(v),
            0xD2: lambda c, v: self._ctrl_reply(v),
            0xD3: lambda c, v: self._ctrl_reply(v, aux=True),
            0xD4: lambda c, v: self._write_aux(v),
        }
        for c in range(0x60, 0x80):
            self._ctrl_data_cmds[c] = self._write_ram
        # Keyboard commands (bytes written to port 0x60).
        self._kbd_cmds: dict[int, Callable[[], None]] = {
            0xED: lambda: self._kbd_expect(0xED),      # set LEDs <byte>
            0xEE: lambda: self._kbd_reply(ECHO),       # echo answers without ACK
            0xF0: lambda: self._kbd_expect(0xF0),      # scancode set <byte>
            0xF2: lambda: self._kbd_reply(ACK, *KBD_ID),
            0xF3: lambda: self._kbd_expect(0xF3),      # typematic rate <byte>
            0xF4: lambda: self._kbd_enable(True),
            0xF5: lambda: self._kbd_defaults(scanning=False),
            0xF6: lambda: self._kbd_defaults(scanning=True),
            0xFE: lambda: self._kbd_reply(self._kbd_last),
            0xFF: self._kbd_reset,
        }
        for c in range(0xF7, 0xFE):   # set-3 key type commands: accepted, no effect
            self._kbd_cmds[c] = lambda: self._kbd_reply(ACK)
        self._kbd_args: dict[int, Callable[[int], None]] = {
            0xED: self._kbd_set_leds,
            0xF0: self._kbd_scancode_set,
            0xF3: self._kbd_typematic,
        }
        self.reset()

    # --- state -------------------------------------------------------------

    def reset(self) -> None:
        if getattr(self, "_obf", False) and self._out_src == "key":
            self._keys.appendleft(self._out)   # an unread host key is not lost
        self.ram = bytearray(32)                 # controller RAM; byte 0 = command byte
        self.ram[0] = COMMAND_BYTE_RESET
        self.output_port = int(OUTPUT_PORT_RESET)
        self._status = int(STATUS_RESET)         # SYS, A2, TIMEOUT; OBF/AUXB derived
        self._out = 0                            # output buffer contents
        self._obf = False
        self._out_aux = False
        self._out_src = ""                       # "ctrl", "kbd" or "key": who filled it
        self._ctrl_out: deque[tuple[int, bool]] = deque()
        self._kbd_out: deque[int] = deque()
        self._pending_cmd: int | None = None     # controller command awaiting data
        self._kbd_arg_for: int | None = None     # keyboard command awaiting its byte
        self._kbd_last = ACK                     # for the keyboard's 0xFE resend
        self.scanning = True                     # keyboards power up enabled after BAT
        self.leds = 0
        self.typematic = 0x2B                    # 10.9 cps, 500 ms: the keyboard default
        self.scancode_set = SCANCODE_SET_DEFAULT
        self._update_irq()
        self._refill()

    @property
    def command_byte(self) -> int:
        return self.ram[0]

    @property
    def a20(self) -> bool:
        return bool(self.output_port & OutPort.A20)

    def status(self) -> int:
        s = self._status & ~int(Status.OBF | Status.AUXB | Status.IBF)
        if self._obf:
            s |= Status.OBF | (Status.AUXB if self._out_aux else 0)
        return int(s)

    def _update_irq(self) -> None:
        cmd = self.command_byte
        self._irq1.set_level(self._obf and not self._out_aux and bool(cmd & CmdByte.INT))
        self._irq12.set_level(self._obf and self._out_aux and bool(cmd & CmdByte.INT2))

    def _fill(self, value: int, aux: bool, src: str) -> None:
        self._out, self._out_aux, self._out_src, self._obf = value & 0xFF, aux, src, True
        self._update_irq()

    def _refill(self) -> None:
        """Move the next waiting byte into an empty output buffer."""
        if self._obf:
            return
        if self._ctrl_out:
            value, aux = self._ctrl_out.popleft()
            self._fill(value, aux, "ctrl")
            return
        if self.command_byte & CmdByte.DISABLE_KBD:
            return  # the controller holds the keyboard clock low: it cannot send
        if self._kbd_out:
            self._fill(self._kbd_out.popleft(), False, "kbd")
        elif self._keys and self.scanning and self._kbd_arg_for is None:
            self._fill(self._keys.popleft(), False, "key")

    def _ctrl_reply(self, value: int, aux: bool = False) -> None:
        # A controller reply pre-empts an unread keyboard byte; put that back
        # at the head of its queue rather than lose it.
        if self._obf and self._out_src in ("kbd", "key"):
            (self._kbd_out if self._out_src == "kbd" else self._keys).appendleft(self._out)
            self._obf = False
        self._ctrl_out.append((value & 0xFF, aux))
        self._refill()
        self._update_irq()

    # --- controller commands -------------------------------------------------

    def _set_cmd_byte(self, value: int) -> None:
        self.ram[0] = value & 0xFF
        if value & CmdByte.SYS:
            self._status |= Status.SYS
        else:
            self._status &= ~int(Status.SYS)
        self._update_irq()
        self._refill()

    def _write_ram(self, cmd: int, value: int) -> None:
        if cmd & 0x1F == 0:
            self._set_cmd_byte(value)
        else:
            self.ram[cmd & 0x1F] = value & 0xFF

    def _self_test(self, _cmd: int) -> None:
        self._status |= Status.SYS
        self._ctrl_reply(SELF_TEST_OK)

    def _read_output_port(self) -> int:
        v = self.output_port & ~int(OutPort.OBF_KBD | OutPort.OBF_AUX)
        if self._obf:
            v |= OutPort.OBF_AUX if self._out_aux else OutPort.OBF_KBD
        return int(v) & 0xFF

    def _write_output_port(self, value: int) -> None:
        old = self.output_port
        self.output_port = value & 0xFF
        if (old ^ value) & OutPort.A20 and self.on_a20:
            self.on_a20(bool(value & OutPort.A20))
        if not value & OutPort.RESET:
            self._system_reset()

    def _pulse(self, cmd: int) -> None:
        # 0xF0-0xFF pulse output-port bits 0-3 low where the command bit is 0;
        # only the reset line (bit 0) has a visible effect.
        if not cmd & OutPort.RESET:
            self._system_reset()

    def _system_reset(self) -> None:
        if self.on_reset:
            self.on_reset()

    def _write_aux(self, _value: int) -> None:
        # Nothing on the aux connector: the transmission times out.
        self._status |= Status.TIMEOUT
        self._ctrl_reply(RESEND, aux=True)

    # --- the keyboard --------------------------------------------------------

    def _kbd_reply(self, *values: int) -> None:
        for v in values:
            self._kbd_out.append(v)
            if v != RESEND:
                self._kbd_last = v
        self._refill()

    def _kbd_expect(self, cmd: int) -> None:
        self._kbd_arg_for = cmd
        self._kbd_reply(ACK)

    def _kbd_enable(self, on: bool) -> None:
        self.scanning = on
        self._kbd_reply(ACK)

    def _kbd_defaults(self, scanning: bool) -> None:
        self.typematic = 0x2B
        self.scancode_set = SCANCODE_SET_DEFAULT
        self._kbd_enable(scanning)

    def _kbd_reset(self) -> None:
        self.leds = 0
        self._kbd_out.clear()
        self._kbd_defaults(scanning=True)
        self._kbd_reply(BAT_OK)

    def _kbd_set_leds(self, value: int) -> None:
        self.leds = value & 0x07   # scroll, num, caps lock
        self._kbd_reply(ACK)

    def _kbd_typematic(self, value: int) -> None:
        self.typematic = value & 0x7F
        self._kbd_reply(ACK)

    def _kbd_scancode_set(self, value: int) -> None:
        if value == 0:
            s = self.scancode_set
            if self.command_byte & CmdByte.XLATE:
                s = _XLATED_SET[s]
            self._kbd_reply(ACK, s)
        elif value in (1, 2, 3):
            self.scancode_set = value
            self._kbd_reply(ACK)
        else:
            self._kbd_reply(RESEND)

    def _write_keyboard(self, value: int) -> None:
        # Sending to the keyboard re-enables its interface (as QEMU and real
        # controllers do), so a guest that forgot 0xAE still gets its ACK.
        self.ram[0] &= ~int(CmdByte.DISABLE_KBD)
        arg_for, self._kbd_arg_for = self._kbd_arg_for, None
        if arg_for is not None:
            self._kbd_args[arg_for](value)
            return
        handler = self._kbd_cmds.get(value)
        if handler is None:
            self._kbd_reply(RESEND)
        else:
            handler()

    # --- ports -----------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        high = ((1 << (8 * size)) - 1) & ~0xFF
        if offset == self.STATUS:
            return high | self.status()
        if offset == self.DATA:
            value = self._out
            if self._obf:
                self._obf = False
                self._update_irq()   # lower the line so the next byte is a new edge
                self._refill()
            return high | value
        return high | 0xFF

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset == self.STATUS:
            self._status |= Status.A2
            self._status &= ~int(Status.TIMEOUT)
            self._pending_cmd = None
            if value in self._ctrl_data_cmds:
                self._pending_cmd = value
            else:
                handler = self._ctrl_cmds.get(value)
                if handler is not None:
                    handler(value)
        elif offset == self.DATA:
            self._status &= ~int(Status.A2)
            cmd, self._pending_cmd = self._pending_cmd, None
            if cmd is not None:
                self._ctrl_data_cmds[cmd](cmd, value)
            else:
                self._write_keyboard(value)

    # --- snapshots ----------------------------------------------------------------

    # Keyboard input queued by the host (scancodes not yet read) belongs to the machine's
    # state: the guest was typed at before the snapshot. Bounded on load.
    MAX_SAVED_QUEUE = 1 << 16

    def state(self) -> dict:
        """Controller RAM (the command byte), output port, status, the output buffer and
        who filled it, the reply queues and host scancodes in order, the pending
        controller/keyboard command, the keyboard's settings, and IRQ 1/12 levels."""
        return st.versioned(
            ram=bytes(self.ram), output_port=int(self.output_port), status=int(self._status),
            out=self._out, obf=self._obf, out_aux=self._out_aux, out_src=self._out_src,
            ctrl_out=[[v, aux] for v, aux in self._ctrl_out], kbd_out=list(self._kbd_out),
            keys=list(self._keys), pending_cmd=self._pending_cmd, kbd_arg_for=self._kbd_arg_for,
            kbd_last=self._kbd_last, scanning=self.scanning, leds=self.leds,
            typematic=self.typematic, scancode_set=self.scancode_set,
            irq1=st.line_level(self._irq1), irq12=st.line_level(self._irq12))

    def load_state(self, state: dict) -> None:
        """The A20 gate and the reset line are the CPU's (restored with it): nothing is
        called back."""
        who = self.name
        st.check_version(state, who)
        ram = st.blob(state, "ram", who, 32)
        byte = {n: st.integer(state, n, who, 0, 0xFF)
                for n in ("output_port", "status", "out", "kbd_last", "leds", "typematic")}
        flags = {n: st.flag(state, n, who) for n in ("obf", "out_aux", "scanning", "irq1", "irq12")}
        src = st.field(state, "out_src", who)
        if src not in ("", "ctrl", "kbd", "key"):
            raise ValueError(f"{who}: saved out_src {src!r} is not a source")
        ctrl_out = st.field(state, "ctrl_out", who)
        if not isinstance(ctrl_out, list) or len(ctrl_out) > self.MAX_SAVED_QUEUE or any(
                not isinstance(e, list) or len(e) != 2 or type(e[0]) is not int
                or not 0 <= e[0] <= 0xFF or type(e[1]) is not bool for e in ctrl_out):
            raise ValueError(f"{who}: saved ctrl_out is not a queue of (byte, aux)")
        kbd_out = st.int_list(state, "kbd_out", who, None, 0, 0xFF, self.MAX_SAVED_QUEUE)
        keys = st.int_list(state, "keys", who, None, 0, 0xFF, self.MAX_SAVED_QUEUE)
        pending = st.optional_integer(state, "pending_cmd", who, 0, 0xFF)
        arg_for = st.optional_integer(state, "kbd_arg_for", who, 0, 0xFF)
        if pending is not None and pending not in self._ctrl_data_cmds:
            raise ValueError(f"{who}: saved pending_cmd {pending:#x} takes no data byte")
        if arg_for is not None and arg_for not in self._kbd_args:
            raise ValueError(f"{who}: saved kbd_arg_for {arg_for:#x} takes no argument")
        scancode_set = st.integer(state, "scancode_set", who, 1, 3)
        self.ram[:] = ram
        self.output_port, self._status, self._out = byte["output_port"], byte["status"], byte["out"]
        self._kbd_last, self.leds, self.typematic = byte["kbd_last"], byte["leds"], byte["typematic"]
        self._obf, self._out_aux, self._out_src = flags["obf"], flags["out_aux"], src
        self._ctrl_out = deque((v, aux) for v, aux in ctrl_out)
        self._kbd_out, self._keys = deque(kbd_out), deque(keys)
        self._pending_cmd, self._kbd_arg_for = pending, arg_for
        self.scanning, self.scancode_set = flags["scanning"], scancode_set
        st.restore_level(self._irq1, flags["irq1"])
        st.restore_level(self._irq12, flags["irq12"])

    # --- host side ---------------------------------------------------------------

    def press(self, codes: bytes) -> None:
        """Queue scancode bytes (set 1) as if typed on the keyboard."""
        self._keys.extend(codes)
        self._refill()

    def pending_keys(self) -> int:
        """Host scancode bytes the guest has not read yet (queued or in the buffer)."""
        return len(self._keys) + (1 if self._obf and self._out_src == "key" else 0)

    def output_empty(self) -> bool:
        """Nothing waits for the guest: buffer empty and no queued byte of any kind."""
        return not (self._obf or self._ctrl_out or self._kbd_out or self._keys)


class SystemControlPortA(Device):
    """PS/2 system control port A (0x92): fast A20 gate and fast reset."""

    name = "port92"
    ports = (PortRange(0x92, 1),)

    FAST_RESET = 0x01   # a 0 -> 1 transition resets the CPU
    A20 = 0x02
    RESET_VALUE = A20   # A20 on at power-on, matching the 8042 output port

    def __init__(self, on_a20: Callable[[bool], None] | None = None,
                 on_reset: Callable[[], None] | None = None) -> None:
        self.on_a20 = on_a20
        self.on_reset = on_reset
        self.reset()

    def reset(self) -> None:
        self.value = self.RESET_VALUE

    @property
    def a20(self) -> bool:
        return bool(self.value & self.A20)

    def read(self, offset: int, size: int) -> int:
        high = ((1 << (8 * size)) - 1) & ~0xFF
        return high | (self.value if offset == 0 else 0xFF)

    def state(self) -> dict:
        return st.versioned(value=self.value)

    def load_state(self, state: dict) -> None:
        """The register alone: the A20 line it drives is the CPU's, restored with it."""
        st.check_version(state, self.name)
        self.value = st.integer(state, "value", self.name, 0, 0xFF)

    def write(self, offset: int, size: int, value: int) -> None:
        if offset != 0:
            return
        value &= 0xFF
        old, self.value = self.value, value
        if (old ^ value) & self.A20 and self.on_a20:
            self.on_a20(bool(value & self.A20))
        if value & self.FAST_RESET and not old & self.FAST_RESET and self.on_reset:
            self.on_reset()
