"""The monitor: QEMU's human monitor (HMP) for hv, prompt ``(hv) ``.

    hv run hello --monitor stdio            # commands on the terminal
    hv run hello --monitor unix:/tmp/hv.sock   # on a socket (socat - UNIX-CONNECT:/tmp/hv.sock)
    (gdb) monitor info registers           # the same commands from gdb (hv/debug/gdbstub.py)

``Monitor.handle_line(text) -> str`` runs one command and returns what it prints; the
front ends (stdio, a unix socket, gdb's qRcmd, the live display's Ctrl-] m) only move lines.
Commands that look at the machine run on the vCPU thread through ``Debugger.request``
(hv/debug/control.py): the engine is not thread-safe. The command reference is
docs/debugging.md.

Whoever reaches the monitor owns the machine (it can write files with screendump), but
what it types still gets defined behaviour: a bad command, address, size or path is one
line of error, never an exception; a dump is bounded (MAX_DUMP bytes).
"""
from __future__ import annotations

import os
import select
import socket
import stat
import sys
import threading
from collections.abc import Callable

import capstone
from unicorn import UcError
from unicorn import x86_const as X

from hv.irq import GuestFault
from hv.memory import GuestMemoryError

PROMPT = "(hv) "
MAX_LINE = 4096                  # longer command lines are refused
MAX_DUMP = 64 * 1024             # bytes one x/xp may show
MAX_INSNS = 1024                 # instructions one x/i may show
STOP_WAIT = 10.0                 # seconds stop/step wait for the machine to stop
SIZES = {"b": 1, "h": 2, "w": 4, "g": 8}
FORMATS = "oxudci"
CAP_SPLIT = 8                    # bytes shown before the mnemonic (QEMU's cap_insn_split)

# QEMU's x86 monitor disassembles in AT&T syntax; so does this one, so they line up.
_DISASM: dict[int, capstone.Cs] = {}


def _disassembler(bits: int) -> capstone.Cs:
    cs = _DISASM.get(bits)
    if cs is None:
        cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16 if bits == 16 else
                         capstone.CS_MODE_32)
        cs.syntax = capstone.CS_OPT_SYNTAX_ATT
        _DISASM[bits] = cs
    return cs


class MonitorError(Exception):
    """A command that cannot run: its message is the command's whole output."""


# -- registers ---------------------------------------------------------------------------

REG_NAMES = {n: getattr(X, f"UC_X86_REG_{n.upper()}") for n in (
    "eax", "ebx", "ecx", "edx", "esi", "edi", "esp", "ebp", "eip", "eflags",
    "cs", "ds", "es", "fs", "gs", "ss", "cr0", "cr2", "cr3", "cr4")}
REG_NAMES.update({n: getattr(X, f"UC_X86_REG_{n.upper()}") for n in (
    "ax", "bx", "cx", "dx", "si", "di", "sp", "bp", "ip", "al", "ah", "bl", "bh", "cl",
    "ch", "dl", "dh")})
SEG_NAMES = ("ES", "CS", "SS", "DS", "FS", "GS")
HF_CPL_MASK = 3
DESC_P, DESC_S, DESC_CS, DESC_B = 1 << 15, 1 << 12, 1 << 11, 1 << 22


def _segment_cache(vcpu, index: int) -> tuple[int, int, int, int]:
    """(selector, base, limit, flags) of segment register ``index`` (ES CS SS DS FS GS)
    as the CPU holds it, read from the engine's state (hv/vcpu.py's context offsets)."""
    import ctypes
    from hv.vcpu import ENV_SEGS
    at = ENV_SEGS + 24 * index
    return (vcpu._peek_ctx(at) & 0xFFFF, vcpu._peek_ctx(at + 8, ctypes.c_uint64),
            vcpu._peek_ctx(at + 16), vcpu._peek_ctx(at + 20))


def _seg_line(name: str, sel: int, base: int, limit: int, flags: int, protected: bool) -> str:
    """One segment line of ``info registers``, as QEMU's x86_cpu_dump_seg_cache."""
    line = f"{name:<3}={sel:04x} {base & 0xFFFFFFFF:08x} {limit:08x} {flags & 0x00FFFF00:08x}"
    if not protected or not flags & DESC_P:
        return line
    line += f" DPL={(flags >> 13) & 3} "
    if flags & DESC_S:
        if flags & DESC_CS:
            line += "CS32" if flags & DESC_B else "CS16"
            line += f" [{'C' if flags & (1 << 10) else '-'}{'R' if flags & (1 << 9) else '-'}"
        else:
            line += "DS  " if flags & DESC_B else "DS16"
            line += f" [{'E' if flags & (1 << 10) else '-'}{'W' if flags & (1 << 9) else '-'}"
        line += f"{'A' if flags & (1 << 8) else '-'}]"
    else:
        kinds = {1: "TSS16-avl", 2: "LDT", 3: "TSS16-busy", 4: "CallGate16", 5: "TaskGate",
                 6: "IntGate16", 7: "TrapGate16", 9: "TSS32-avl", 11: "TSS32-busy",
                 12: "CallGate32", 14: "IntGate32", 15: "TrapGate32"}
        line += kinds.get((flags >> 8) & 15, "Reserved")
    return line


def dump_registers(m) -> str:
    """``info registers`` for the current mode, in QEMU's layout (32-bit x86)."""
    from hv.vcpu import ENV_HFLAGS, HF_INHIBIT_IRQ
    vcpu, uc = m.vcpu, m.vcpu.uc

    def reg(name: str) -> int:
        return uc.reg_read(getattr(X, f"UC_X86_REG_{name}"))

    def row(names: tuple[str, ...]) -> str:
        return " ".join(f"{n}={reg(n) & 0xFFFFFFFF:08x}" for n in names)
    eflags = reg("EFLAGS")
    flag_chars = "".join(c if eflags & bit else "-" for c, bit in (
        ("D", 1 << 10), ("O", 1 << 11), ("S", 1 << 7), ("Z", 1 << 6), ("A", 1 << 4),
        ("P", 1 << 2), ("C", 1 << 0)))
    hflags = vcpu._peek_ctx(ENV_HFLAGS)
    protected = bool(reg("CR0") & 1)
    lines = ["CPU#0", row(("EAX", "EBX", "ECX", "EDX")), row(("ESI", "EDI", "EBP", "ESP")),
             f"EIP={reg('EIP'):08x} EFL={eflags:08x} [{flag_chars}] "
             f"CPL={hflags & HF_CPL_MASK} II={1 if hflags & HF_INHIBIT_IRQ else 0} "
             f"A20={1 if vcpu.a20 else 0} SMM=0 HLT={1 if vcpu.halted else 0}"]
    for i, name in enumerate(SEG_NAMES):
        lines.append(_seg_line(name, *_segment_cache(vcpu, i), protected))
    for name, engine_name in (("LDT", "LDTR"), ("TR", "TR")):
        lines.append(_seg_line(name, *reg(engine_name), protected))
    for name in ("GDT", "IDT"):
        _sel, base, limit, _flags = reg(name + "R")
        lines.append(f"{name}=     {base & 0xFFFFFFFF:08x} {limit:08x}")
    lines.append(row(("CR0", "CR2", "CR3", "CR4")))
    lines.append(row(("DR0", "DR1", "DR2", "DR3")) + " ")       # QEMU's trailing space
    lines.append(row(("DR6", "DR7")))
    try:
        efer = uc.msr_read(0xC0000080)
    except UcError:
        efer = 0
    lines.append(f"EFER={efer:016x}")
    fsw, tags = reg("FPSW"), reg("FPTAG")
    ftw = sum(1 << i for i in range(8) if (tags >> (2 * i)) & 3 != 3)   # abridged: valid bits
    lines.append(f"FCW={reg('FPCW'):04x} FSW={fsw:04x} [ST={(fsw >> 11) & 7}] FTW={ftw:02x} "
                 f"MXCSR={reg('MXCSR'):08x}")
    fprs = []
    for i in range(8):
        mantissa, exponent = reg(f"FP{i}")
        fprs.append(f"FPR{i}={mantissa:016x} {exponent & 0xFFFF:04x}")
    xmms = [f"XMM{i:02d}={reg(f'XMM{i}') >> 64:016x} {reg(f'XMM{i}') & (1 << 64) - 1:016x}"
            for i in range(8)]
    lines += [" ".join(fprs[i:i + 2]) for i in range(0, 8, 2)]
    lines += [" ".join(xmms[i:i + 2]) for i in range(0, 8, 2)]
    return "\n".join(lines)


def _code_bits(m) -> int:
    """16 or 32: the default operand size of the code at CS:EIP."""
    uc = m.vcpu.uc
    if not uc.reg_read(X.UC_X86_REG_CR0) & 1:
        return 16
    return 32 if _segment_cache(m.vcpu, 1)[3] & DESC_B else 16


def location(m) -> str:
    """Where the CPU is: CS:EIP, the linear address and the instruction there."""
    uc = m.vcpu.uc
    cs, eip, pc = uc.reg_read(X.UC_X86_REG_CS), uc.reg_read(X.UC_X86_REG_EIP), m.vcpu.pc()
    try:
        code = m.vcpu.read_linear(pc, 15)
    except (GuestFault, GuestMemoryError):
        return f"{cs:04x}:{eip:08x} (linear {pc:#010x})"
    text = "(bad)"
    for insn in _disassembler(_code_bits(m)).disasm(code, eip, 1):
        text = f"{insn.mnemonic} {insn.op_str}".strip()
    return f"{cs:04x}:{eip:08x} (linear {pc:#010x}): {text}"


# -- expressions for addresses -------------------------------------------------------------

def _tokens(text: str) -> list[str]:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "+-*()":
            out.append(c)
            i += 1
        else:
            j = i + 1
            while j < len(text) and (text[j].isalnum() or text[j] == "_"):
                j += 1
            out.append(text[i:j])
            i = j
    return out


def evaluate(text: str, register: Callable[[str], int]) -> int:
    """An address: numbers (0x hex, decimal), ``$reg``, ``$pc`` (linear CS:EIP),
    + - * and parentheses. MonitorError for anything else."""
    tokens = _tokens(text)
    if not tokens or len(tokens) > 64:
        raise MonitorError(f"bad address expression {text!r}")
    at = 0

    def peek() -> str | None:
        return tokens[at] if at < len(tokens) else None

    def take() -> str:
        nonlocal at
        at += 1
        return tokens[at - 1]

    def atom() -> int:
        tok = peek()
        if tok is None:
            raise MonitorError(f"bad address expression {text!r}")
        take()
        if tok == "(":
            value = expr()
            if peek() != ")":
                raise MonitorError(f"missing ')' in {text!r}")
            take()
            return value
        if tok == "-":
            return -atom()
        if tok.startswith("$"):
            return register(tok[1:].lower())
        try:
            return int(tok, 0)
        except ValueError:
            raise MonitorError(f"bad number {tok!r} (write hex as 0x7c00)") from None

    def term() -> int:
        value = atom()
        while peek() == "*":
            take()
            value *= atom()
        return value

    def expr() -> int:
        value = term()
        while peek() in ("+", "-"):
            value = value + term() if take() == "+" else value - term()
        return value
    value = expr()
    if peek() is not None:
        raise MonitorError(f"bad address expression {text!r}")
    return value


def _register_value(m, name: str) -> int:
    if name == "pc":
        return m.vcpu.pc()
    reg = REG_NAMES.get(name)
    if reg is None:
        raise MonitorError(f"unknown register ${name}")
    return m.vcpu.uc.reg_read(reg)


# -- memory dumps ---------------------------------------------------------------------------

def parse_format(spec: str, last: tuple[str, int]) -> tuple[int, str, int | None]:
    """``/Nfs`` -> (count, format, size or None for "the CPU's" with i), QEMU's rules:
    a missing format or size is the last one used."""
    i, count = 0, 1
    digits = ""
    while i < len(spec) and spec[i].isdigit():
        digits += spec[i]
        i += 1
    if digits:
        count = int(digits)
    fmt, size = None, None
    for c in spec[i:]:
        if c in FORMATS:
            fmt = c
        elif c in SIZES:
            size = SIZES[c]
        else:
            raise MonitorError(f"invalid char in format: '{c}'\nTry \"help x\" for more "
                               "information")
    fmt = fmt or last[0]
    if fmt != "i" and size is None:
        size = last[1]
    return count, fmt, size


def _printc(v: int) -> str:
    c = {0x27: "\\'", 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r"}.get(v)
    if c is None:
        c = chr(v) if 32 <= v <= 126 else f"\\x{v:02x}"
    return f"'{c}'"


def format_words(data: bytes, fmt: str, size: int) -> list[str]:
    out = []
    if fmt == "c":
        return [_printc(b) for b in data]
    bits = size * 8
    for i in range(0, len(data) - size + 1, size):
        v = int.from_bytes(data[i:i + size], "little")
        if fmt == "x":
            out.append(f"0x{v:0{size * 2}x}")
        elif fmt == "o":
            digits = -(-bits // 3)
            out.append(f"{'0' + format(v, 'o') if v else '0':>{digits}}")
        elif fmt == "u":
            out.append(f"{v:>{-(-bits * 10 // 33)}}")
        else:                                             # d: signed
            if v >> (bits - 1):
                v -= 1 << bits
            out.append(f"{v:>{-(-bits * 10 // 33)}}")
    return out


def memory_dump(read: Callable[[int, int], bytes], addr: int, count: int, fmt: str, size: int,
                physical: bool) -> str:
    """x/xp output as QEMU's memory_dump: 8 bytes a line for bytes, 16 otherwise."""
    if fmt == "c":
        size = 1
    total = count * size
    if total > MAX_DUMP:
        raise MonitorError(f"too much memory requested: {total} bytes (at most {MAX_DUMP})")
    line_size = 8 if size == 1 else 16
    lines = []
    while total > 0:
        prefix = f"{addr:016x}:" if physical else f"{addr & 0xFFFFFFFF:08x}:"
        n = min(total, line_size)
        try:
            data = read(addr, n)
        except (GuestFault, GuestMemoryError, ValueError):
            lines.append(prefix + " Cannot access memory")
            break
        lines.append(prefix + "".join(" " + w for w in format_words(data, fmt, size)))
        addr += n
        total -= n
    return "\n".join(lines)


def disassemble(read: Callable[[int, int], bytes], addr: int, count: int, bits: int) -> str:
    """x/Ni as QEMU's capstone dump: address, up to 8 bytes, mnemonic, operands."""
    if count > MAX_INSNS:
        raise MonitorError(f"too many instructions requested: {count} (at most {MAX_INSNS})")
    cs = _disassembler(bits)
    lines = []
    for _ in range(count):
        try:
            code = read(addr, 15)
        except (GuestFault, GuestMemoryError, ValueError):
            try:
                code = read(addr, 1)
            except (GuestFault, GuestMemoryError, ValueError):
                lines.append(f"0x{addr:08x}:  Cannot access memory")
                break
        insn = next(cs.disasm(code, addr, 1), None)
        raw = bytes(insn.bytes) if insn is not None else code[:1]
        text = f"{insn.mnemonic:<8} {insn.op_str}" if insn is not None else "(bad)"
        head = raw[:CAP_SPLIT]
        lines.append(f"0x{addr:08x}: " + "".join(f" {b:02x}" for b in head)
                     + " " * (3 * (CAP_SPLIT - len(head))) + "  " + text)
        for i in range(CAP_SPLIT, len(raw), CAP_SPLIT):
            lines.append(f"0x{addr + i:08x}: " + "".join(f" {b:02x}" for b in raw[i:i + CAP_SPLIT]))
        addr += len(raw)
    return "\n".join(line.rstrip() for line in lines)


# -- the board --------------------------------------------------------------------------------

def _ranges(dev) -> str:
    parts = [f"{r.base:#x}-{r.base + r.length - 1:#x}" for r in dev.ports]
    return ", ".join(parts) or "-"


def dump_devices(m) -> str:
    lines = [f"{'device':<16} {'ports':<34} {'mmio':<24} irq"]
    for dev in m.devices:
        mmio = ", ".join(f"{b:#x}-{b + n - 1:#x}" for b, n in dev.mmio) or "-"
        irq = dev.irq if isinstance(getattr(dev, "irq", None), int) else "-"
        lines.append(f"{dev.name:<16} {_ranges(dev):<34} {mmio:<24} {irq}")
    lines.append(f"{'ram':<16} {'-':<34} {'0x0-' + hex(min(m.mem.size, 0xA0000) - 1):<24} -")
    lines.append(f"{'video memory':<16} {'-':<34} {'0xa0000-0xbffff':<24} -")
    return "\n".join(lines)


def _vectors(bits: int) -> str:
    vecs = [f"{v:#04x}" for v in range(256) if bits >> v & 1]
    return " ".join(vecs) if vecs else "-"


def dump_irq(m) -> str:
    """The interrupt controllers' state: 8259 pair, IMCR, local APIC, I/O APIC, the CPU.
    A board without one of them (the microVM has no 8259) leaves its lines out."""
    from hv.devices import ioapic as io
    lines = []
    pic, imcr, apic, ioapic = (getattr(m, n, None) for n in ("pic", "imcr", "lapic", "ioapic"))
    if pic is not None:
        for name, chip in (("master", pic.master), ("slave", pic.slave)):
            state = "ready" if chip.ready else "not initialised"
            lines.append(f"8259 {name:<6}: IRR={chip.irr:02x} ISR={chip.isr:02x} "
                         f"IMR={chip.imr:02x} base={chip.vector_base:02x} ({state})")
    if imcr is not None:
        lines.append("IMCR: " + ("APIC mode (8259 INTR through LINT0)" if imcr.apic_mode else
                                 "PIC mode (8259 INTR straight to the CPU)"))
    if apic is not None:
        enabled = ("enabled" if apic.hardware_enabled else "disabled") + \
            (", software enabled" if apic.software_enabled else ", software disabled")
        lines.append(f"local APIC: {enabled}, TPR={apic.tpr:02x}")
        lines.append(f"  IRR: {_vectors(apic.irr)}")
        lines.append(f"  ISR: {_vectors(apic.isr)}")
    if ioapic is not None:
        unmasked = []
        for pin, entry in enumerate(ioapic.redirection):
            if entry & io.MASKED:
                continue
            trigger = "level" if entry & io.TRIGGER_LEVEL else "edge"
            polarity = "active-low" if entry & io.POLARITY_LOW else "active-high"
            remote = " remote-IRR" if entry & io.REMOTE_IRR else ""
            mode = (entry >> io.DELIVERY_MODE_SHIFT) & 7
            unmasked.append(f"  pin {pin:<2} -> vector {entry & io.VECTOR_MASK:#04x} {trigger} "
                            f"{polarity} mode {mode} dest {entry >> io.DEST_SHIFT}"
                            f"{' logical' if entry & io.DEST_LOGICAL else ''}{remote}")
        lines.append(f"I/O APIC: {len(ioapic.redirection)} pins, "
                     f"{len(unmasked) or 'none'} unmasked")
        lines += unmasked
    iflag = (m.vcpu.uc.reg_read(X.UC_X86_REG_EFLAGS) >> 9) & 1
    intr = getattr(m, "intr", None) or imcr
    line = "asserted" if intr is not None and intr.has_interrupt() else "low"
    lines.append(f"CPU: EFLAGS.IF={iflag}, INTR {line}")
    return "\n".join(lines)


def dump_timers(m) -> str:
    """What will wake the CPU: the clock's pending timers (soonest first), the local APIC
    timer, the PIT's channels."""
    now = m.clock.now()
    lines = [f"clock: {m.config.clock}, now {now / 1e9:.9f} s"]
    pending = sorted((d, t) for d, _, t in m.clock._heap if not t.cancelled)
    for deadline, t in pending[:8]:
        owner = getattr(t.callback, "__self__", None)
        name = getattr(t.callback, "__qualname__", repr(t.callback))
        who = f"{type(owner).__name__}." if owner is not None else ""
        lines.append(f"  in {(deadline - now) / 1e6:12.3f} ms  {who}{name.rsplit('.', 1)[-1]}")
    if len(pending) > 8:
        lines.append(f"  ... {len(pending) - 8} more")
    if not pending:
        lines.append("  no timer pending")
    apic = getattr(m, "lapic", None)
    if apic is not None:
        from hv.devices.apic import LVT_MASKED, Lvt
        lvt = apic.lvt[Lvt.TIMER]
        mode = "periodic" if apic._periodic() else "one-shot"
        lines.append(f"local APIC timer: LVT={lvt:08x} ({mode}, vector {lvt & 0xFF:#04x}"
                     f"{', masked' if lvt & LVT_MASKED else ''}) initial={apic.timer_initial:#x} "
                     f"current={apic.current_count(now):#x} divide={apic._divisor()} "
                     f"fired={apic.timer_interrupts}")
    pit = getattr(m, "pit", None)
    if pit is not None:
        for i, ch in enumerate(pit.counters):
            state = (f"mode {ch.mode}, count register {ch.full_count():#x}, "
                     f"{'counting' if ch.armed else 'idle'}") if ch.programmed else "unprogrammed"
            lines.append(f"PIT channel {i}: {state}, gate {int(ch.gate)}")
        lines.append(f"PIT interrupts: {pit.irq_count}, lost ticks {pit.lost_ticks}")
    return "\n".join(lines)


# -- the monitor ----------------------------------------------------------------------------

HELP = [
    ("info registers", "the CPU state, as QEMU prints it"),
    ("info stats", "exits by kind and device"),
    ("info devices", "the board's devices: ports, MMIO windows, IRQs"),
    ("info irq", "8259 IRR/ISR/IMR, local APIC IRR/ISR, I/O APIC routes"),
    ("info timers", "pending clock timers, the local APIC timer, the PIT channels"),
    ("x /fmt addr", "dump memory at a linear address (fmt: count, x d u o c i, b h w g)"),
    ("xp /fmt addr", "dump memory at a physical address"),
    ("stop", "stop the guest"),
    ("cont|c", "let it run again"),
    ("step", "execute one instruction (while stopped)"),
    ("savevm FILE", "save the machine to FILE"),
    ("loadvm FILE", "restore the machine from FILE"),
    ("sendkey KEYS", "type keys: ctrl-alt-del, f1, enter, a... (hv's key names)"),
    ("screendump FILE.png", "save the display as PNG"),
    ("system_reset", "reset the machine"),
    ("quit|q", "end the run"),
    ("help|? [cmd]", "this list"),
]


class Monitor:
    def __init__(self, machine) -> None:
        self.m = machine
        self.dbg = machine.attach_debugger()
        self.last_format: tuple[str, int] = ("x", 4)   # QEMU's defaults: x, w
        self._stopped = threading.Event()
        self.dbg.listeners.append(lambda event: self._stopped.set())
        self.commands: dict[str, Callable[[str], str]] = {
            "info": self.cmd_info, "x": lambda a: self.cmd_x(a, False),
            "xp": lambda a: self.cmd_x(a, True), "stop": self.cmd_stop,
            "cont": self.cmd_cont, "c": self.cmd_cont, "step": self.cmd_step,
            "savevm": self.cmd_savevm, "loadvm": self.cmd_loadvm,
            "sendkey": self.cmd_sendkey, "screendump": self.cmd_screendump,
            "system_reset": self.cmd_system_reset, "quit": self.cmd_quit, "q": self.cmd_quit,
            "help": self.cmd_help, "?": self.cmd_help,
        }

    def handle_line(self, text: str) -> str:
        """Run one command line; its output without a trailing newline ('' for none)."""
        text = text.strip()
        if not text:
            return ""
        if len(text) > MAX_LINE:
            return f"command line too long (at most {MAX_LINE} characters)"
        name, args = text, ""
        for i, c in enumerate(text):
            if c.isspace() or c == "/":
                name, args = text[:i], text[i:].strip()
                break
        handler = self.commands.get(name)
        if handler is None:
            return f"unknown command: '{name}' (try 'help')"
        try:
            return handler(args)
        except MonitorError as e:
            return str(e)
        except TimeoutError:
            return "the machine did not answer (it is no longer running)"
        except (UcError, GuestFault, GuestMemoryError, OverflowError, ValueError) as e:
            return f"{name}: {e}"
        except Exception as e:              # a bug must not take the front end down with it
            return f"{name}: internal error: {type(e).__name__}: {e}"

    def request(self, fn):
        if self.m.result is not None:
            raise MonitorError(f"the run has ended ({self.m.result.reason})")
        return self.dbg.request(fn)

    # -- info -------------------------------------------------------------------------
    def cmd_info(self, args: str) -> str:
        what = args.split()[0] if args.split() else ""
        table = {"registers": dump_registers, "stats": lambda m: m.stats.table(),
                 "devices": dump_devices, "irq": dump_irq, "timers": dump_timers}
        fn = table.get(what)
        if fn is None:
            return "info " + "|".join(table) + " -- show the machine's state"
        return self.request(fn)

    # -- memory -----------------------------------------------------------------------
    def cmd_x(self, args: str, physical: bool) -> str:
        spec, addr_text = "", args
        if args.startswith("/"):
            spec, _, addr_text = args[1:].partition(" ")
        if not addr_text.strip():
            raise MonitorError(f"{'xp' if physical else 'x'} /fmt addr: an address is needed")
        count, fmt, size = parse_format(spec, self.last_format)
        self.last_format = (fmt, size if size is not None else self.last_format[1])

        def run(m) -> str:
            addr = evaluate(addr_text, lambda name: _register_value(m, name))
            addr &= (1 << 64) - 1 if physical else 0xFFFFFFFF
            read = m.mem.read if physical else m.vcpu.read_linear
            if fmt == "i":
                bits = {2: 16, 4: 32}.get(size or 0) or _code_bits(m)
                return disassemble(read, addr, count, bits)
            return memory_dump(read, addr, count, fmt, size, physical)
        return self.request(run)

    # -- run control ------------------------------------------------------------------
    def _wait_stop(self) -> str:
        if not self._stopped.wait(STOP_WAIT) and not self.dbg.stopped:
            return "the machine did not stop"
        return "stopped at " + self.request(location)

    def cmd_stop(self, args: str) -> str:
        if self.dbg.stopped:
            return "already stopped at " + self.request(location)
        self._stopped.clear()
        self.dbg.interrupt()
        return self._wait_stop()

    def cmd_cont(self, args: str) -> str:
        self.request(lambda m: self.dbg.cont())
        return ""

    def cmd_step(self, args: str) -> str:
        self._stopped.clear()
        try:
            self.request(lambda m: self.dbg.step())
        except RuntimeError:
            return "the machine is running: 'stop' it first"
        return self._wait_stop()

    # -- snapshots (hv/debug/snapshot.py: Machine.save / Machine.restore) -------------------
    # Both run on the vCPU thread between slices; a refused file is one line (SnapshotError is
    # a ValueError) and the run goes on. Machines without save/restore say so.
    def cmd_savevm(self, args: str) -> str:
        path = _one_path(args, "savevm FILE")
        save = getattr(self.m, "save", None)
        if save is None:
            return "savevm: not available yet (snapshots are not built into this hv)"
        self.request(lambda m: save(path))
        return ""

    def cmd_loadvm(self, args: str) -> str:
        path = _one_path(args, "loadvm FILE")
        restore = getattr(self.m, "restore", None)
        if restore is None:
            return "loadvm: not available yet (snapshots are not built into this hv)"
        self.request(lambda m: restore(path))
        return ""

    # -- devices --------------------------------------------------------------------------
    def cmd_sendkey(self, args: str) -> str:
        from hv.devices.keymap import named_key, parse_input
        if not args:
            raise MonitorError("sendkey KEYS: for example sendkey ctrl-alt-del, sendkey a, "
                               "sendkey f1 enter")
        if getattr(self.m, "kbd", None) is None:
            raise MonitorError("sendkey: this machine has no keyboard")
        events = []
        for word in args.split():
            try:
                keys = parse_input(word) if len(word) == 1 else [named_key(word)]
            except ValueError:
                raise MonitorError(f"sendkey: unknown key {word!r} (hv's key names: a, A, "
                                   "enter, esc, f1, up, ctrl-c, ctrl-alt-del...)") from None
            events += [ev for k in keys for ev in k.events]
        self.m.type_keys(events)
        self.m.wake_vcpu()
        return ""

    def cmd_screendump(self, args: str) -> str:
        path = _one_path(args, "screendump FILE.png")
        if not path.lower().endswith(".png"):
            raise MonitorError("screendump: the file name must end in .png")
        if getattr(self.m, "vga", None) is None:
            raise MonitorError("screendump: this machine has no display")

        def shoot(m) -> str:
            try:
                m.vga.screenshot_png(path)
            except OSError as e:
                return f"screendump: {path}: {e.strerror or e}"
            return ""
        return self.request(shoot)

    def cmd_system_reset(self, args: str) -> str:
        self.request(lambda m: m.request_reset())
        self.m.wake_vcpu()
        return ""

    def cmd_quit(self, args: str) -> str:
        self.m.finish(0, "quit from the monitor")
        return ""

    def cmd_help(self, args: str) -> str:
        want = args.strip()
        rows = [(c, d) for c, d in HELP
                if not want or want in c.replace("|", " ").replace("/", " ").split()]
        if not rows:
            return f"unknown command: '{want}'"
        width = max(len(c) for c, _ in rows)
        return "\n".join(f"{c:<{width}} -- {d}" for c, d in rows)


def _one_path(args: str, usage: str) -> str:
    path = args.strip()
    if not path:
        raise MonitorError(f"usage: {usage}")
    if "\0" in path:
        raise MonitorError(f"{usage.split()[0]}: bad file name")
    return os.path.expanduser(path)


# -- front ends ------------------------------------------------------------------------------

def banner() -> str:
    from hv import __version__
    return f"hv {__version__} monitor - type 'help' for more information"


class StdioMonitor:
    """``--monitor stdio``: lines from stdin, answers on stdout."""

    def __init__(self, monitor: Monitor, stdin=None, stdout=None) -> None:
        self.monitor = monitor
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name="hv-monitor-stdio", daemon=True)
        self.thread.start()

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self.stdout.write(text)
                self.stdout.flush()
            except (OSError, ValueError):
                pass

    def _loop(self) -> None:
        self._write(banner() + "\n" + PROMPT)
        while True:
            try:
                line = self.stdin.readline(MAX_LINE + 2)
            except (OSError, ValueError, UnicodeDecodeError):
                return
            if not line:
                return                                     # EOF: the guest runs on
            if not line.endswith("\n") and len(line) > MAX_LINE:
                self._skip_rest()
                out = f"command line too long (at most {MAX_LINE} characters)"
            else:
                out = self.monitor.handle_line(line)
            self._write((out + "\n" if out else "") + PROMPT)

    def _skip_rest(self) -> None:
        while True:
            rest = self.stdin.readline(MAX_LINE)
            if not rest or rest.endswith("\n"):
                return

    def close(self, result=None) -> None:
        """Nothing to release: the reader is a daemon thread blocked on stdin."""


def accept_clients(listener: socket.socket, closing):
    """Yield the clients of ``listener`` one after another until ``closing()`` or the
    listener is closed (a 0.2 s poll: close() needs no wake-up)."""
    while not closing():
        try:
            ready, _, _ = select.select([listener], [], [], 0.2)
            if not ready:
                continue
            client, _ = listener.accept()
        except (OSError, ValueError):
            return
        if closing():
            client.close()
            return
        yield client


class UnixMonitor:
    """``--monitor unix:PATH``: a socket; clients are served one after another."""

    def __init__(self, monitor: Monitor, path: str) -> None:
        self.monitor = monitor
        self.path = path
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None:
            if not stat.S_ISSOCK(mode):
                raise ValueError(f"--monitor unix:{path}: exists and is not a socket")
            os.unlink(path)                                # a stale socket from an old run
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.listener.bind(path)
        except OSError:
            self.listener.close()
            raise
        self.listener.listen(1)
        self._closing = False
        self.thread = threading.Thread(target=self._accept_loop, name="hv-monitor-unix",
                                       daemon=True)
        self.thread.start()

    def _accept_loop(self) -> None:
        for client in accept_clients(self.listener, lambda: self._closing):
            try:
                client.settimeout(30.0)           # a client that stops reading is dropped
                self._serve(client)
            finally:
                client.close()

    def _serve(self, client: socket.socket) -> None:
        def send(text: str) -> bool:
            try:
                client.sendall(text.encode("utf-8", "replace"))
                return True
            except OSError:
                return False
        if not send(banner() + "\n" + PROMPT):
            return
        buf = bytearray()
        while not self._closing:
            try:
                ready, _, _ = select.select([client], [], [], 0.2)
                if not ready:
                    continue
                data = client.recv(4096)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, _, rest = bytes(buf).partition(b"\n")
                buf = bytearray(rest)
                out = self.monitor.handle_line(line.decode("utf-8", "replace"))
                if not send((out + "\n" if out else "") + PROMPT):
                    return
                if line.strip() in (b"quit", b"q"):
                    return
            if len(buf) > MAX_LINE:
                buf.clear()
                if not send(f"command line too long (at most {MAX_LINE} characters)\n"
                            + PROMPT):
                    return

    def close(self, result=None) -> None:
        self._closing = True
        self.thread.join(2.0)
        self.listener.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class TerminalMonitor:
    """The monitor inside the live display (hv/console.py): a line editor on the bytes a
    raw-mode terminal sends. ``feed`` returns what to write back and whether the user
    left the monitor (Ctrl-] again returns to the guest's screen)."""

    LEAVE = 0x1D                                           # Ctrl-]

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.line = ""
        self._escape = 0            # 1: after ESC, 2: in ESC [ ... (CSI), 3: after ESC O

    def open(self) -> str:
        return ("\x1b[0m\x1b[2J\x1b[H" + banner() + " (Ctrl-] returns to the guest)\r\n"
                + PROMPT)

    def feed(self, data: bytes) -> tuple[str, bool]:
        out = []
        for b in data:
            if self._escape:                   # arrows, function keys: not for the editor
                if self._escape == 1 and b in (ord("["), ord("O")):
                    self._escape = 2 if b == ord("[") else 3
                elif self._escape == 3 or 0x40 <= b <= 0x7E or self._escape == 1:
                    self._escape = 0           # the final byte (or ESC and one key: Alt-x)
                continue
            if b == self.LEAVE:
                self.line = ""
                return "".join(out), True
            if b == 0x1B:
                self._escape = 1
            elif b in (0x0D, 0x0A):
                result = self.monitor.handle_line(self.line)
                self.line = ""
                out.append("\r\n")
                if result:
                    out.append(result.replace("\n", "\r\n") + "\r\n")
                out.append(PROMPT)
            elif b in (0x7F, 0x08):
                if self.line:
                    self.line = self.line[:-1]
                    out.append("\b \b")
            elif b == 0x03 or b == 0x15:                   # Ctrl-C, Ctrl-U: drop the line
                out.append("\b \b" * len(self.line))
                self.line = ""
            elif 0x20 <= b < 0x7F and len(self.line) < MAX_LINE:
                self.line += chr(b)
                out.append(chr(b))
        return "".join(out), False


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``stdio`` | ``unix:PATH`` | ``none`` -> (kind, path). ValueError otherwise."""
    if spec in ("stdio", "none"):
        return spec, None
    kind, sep, path = spec.partition(":")
    if kind == "unix" and sep and path:
        return "unix", path
    raise ValueError(f"--monitor {spec!r}: expected stdio or unix:PATH")


def attach(machine, spec: str, start_stopped: bool = False):
    """Start the monitor for ``--monitor SPEC``: a StdioMonitor, a UnixMonitor or None
    (``none``). ValueError for a bad SPEC, OSError if the socket cannot be made."""
    kind, path = parse_spec(spec)
    if kind == "none":
        return None
    machine.attach_debugger(start_stopped)
    monitor = Monitor(machine)
    if kind == "stdio":
        return StdioMonitor(monitor)
    return UnixMonitor(monitor, path)
