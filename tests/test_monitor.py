"""The monitor (hv/debug/monitor.py): every command against a machine in this process, the
stdio and unix-socket front ends against ``hv run --monitor`` in a subprocess, the live
display's line editor, and the output format against qemu-system-i386's monitor."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading

import capstone
import pytest
from unicorn import x86_const as X

from hv import guests
from hv.debug import monitor as mon
from hv.debug.monitor import Monitor, TerminalMonitor
from hv.machine import DriveSpec, Machine, MachineConfig
from tests import hvcmd
from tests.debug_session import PtyProgram, wait_for

QEMU = shutil.which("qemu-system-i386")
HALT_AT = 0x7C1C            # hello's final cli; hlt (the run ends at CS:IP=0000:7C1E)


class Session:
    """A machine in a thread, stopped at the reset vector, and its monitor."""

    def __init__(self, image: str = "hello", bios: str = "synthetic", kernel: bool = False,
                 start_stopped: bool = True) -> None:
        cfg = (MachineConfig(kernel=str(guests.kernel_path(image)), timeout=60) if kernel else
               MachineConfig(fda=DriveSpec(str(guests.image_path(image)), readonly=True),
                             bios=bios, timeout=60))
        self.m = Machine(cfg)
        self.dbg = self.m.attach_debugger(start_stopped)
        self.monitor = Monitor(self.m)
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.result = self.m.run()

    def __call__(self, line: str) -> str:
        return self.monitor.handle_line(line)

    def run_to(self, address: int) -> None:
        self.dbg.request(lambda m: self.dbg.add_breakpoint(address))
        assert self("cont") == ""
        wait_for(lambda: self.dbg.stopped and self.dbg.event.address == address,
                 what=f"the breakpoint at {address:#x}")
        self.dbg.request(lambda m: self.dbg.remove_breakpoint(address))

    def poke(self, address: int, data: bytes) -> None:
        self.dbg.request(lambda m: m.mem.write(address, data))

    def wait_end(self, timeout: float = 30):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not end"
        return self.result

    def close(self) -> None:
        self.m.finish(0, "test over")
        self.m.wake_vcpu()
        self.thread.join(10)
        self.m.close()


@pytest.fixture
def session():
    s = Session()
    yield s
    s.close()


# -- info ---------------------------------------------------------------------------------------

def test_info_registers_at_the_reset_vector_shows_real_mode(session):
    out = session("info registers").splitlines()
    assert out[0] == "CPU#0"
    assert out[3].startswith("EIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0")
    cs = next(line for line in out if line.startswith("CS ="))
    assert cs.startswith("CS =f000 000f0000 0000ffff")
    assert "DPL" not in "\n".join(out)                    # no descriptor decoding in real mode
    assert out[2 + 1 + 6 + 2 + 2 + 1].startswith("CR0=60000010")


def test_info_registers_in_protected_mode_decodes_the_descriptors():
    s = Session("hellokernel", kernel=True)
    try:
        out = s("info registers")
    finally:
        s.close()
    assert "EIP=00100000" in out and "EAX=68760001" in out
    assert "CS =0008 00000000 ffffffff 00cf9b00 DPL=0 CS32 [-RA]" in out
    assert "SS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]" in out
    assert "CR0=00000011" in out


def test_info_stats_counts_the_exits_of_the_run_so_far(session):
    session.run_to(HALT_AT)
    rows = {(line[:12].strip(), line[13:29].strip()): int(line[30:])
            for line in session("info stats").splitlines()[1:-1]}
    assert rows[("softint", "int 0x10")] == len("Hello from hv!\r\n")      # one per character
    assert rows[("hypercall", "bios:int10")] == len("Hello from hv!\r\n")
    assert session("info stats").splitlines()[0].split() == ["exit", "kind", "device", "count"]


def test_info_devices_lists_ports_mmio_and_irqs(session):
    out = session("info devices").splitlines()
    com1 = next(line for line in out if line.startswith("com1 ")).split()
    assert com1 == ["com1", "0x3f8-0x3ff", "-", "4"]
    ide0 = next(line for line in out if line.startswith("ide0 ")).split()
    assert ide0 == ["ide0", "0x1f0-0x1f7,", "0x3f6-0x3f6", "-", "14"]
    lapic = next(line for line in out if line.startswith("lapic ")).split()
    assert lapic == ["lapic", "-", "0xfee00000-0xfee00fff", "-"]
    assert len(out) == 1 + len(session.m.devices) + 2


def test_info_irq_shows_the_pics_the_apics_and_the_routes(session):
    session.run_to(0x7C00)
    m = session.m

    def route(m) -> None:
        m.ioapic.redirection[2] = 0x31 | (1 << 15)       # level-triggered, vector 0x31
        m.lapic.irr |= 1 << 0x41
    session.dbg.request(route)
    out = session("info irq").splitlines()
    master = f"8259 master: IRR={m.pic.master.irr:02x} ISR={m.pic.master.isr:02x} " \
             f"IMR={m.pic.master.imr:02x} base=08 (ready)"
    assert out[0] == master
    assert out[1].startswith("8259 slave : ") and "base=70" in out[1]
    assert out[2].startswith("IMCR: PIC mode")
    assert out[4] == "  IRR: 0x41" and out[5] == "  ISR: -"
    assert out[6] == "I/O APIC: 24 pins, 1 unmasked"
    assert out[7].split() == ["pin", "2", "->", "vector", "0x31", "level", "active-high",
                              "mode", "0", "dest", "0"]


def test_info_timers_shows_the_armed_lapic_timer_and_the_pit(session):
    session.run_to(0x7C00)
    m = session.m

    def arm(m) -> None:
        m.lapic.write(0xF0, 4, 0x1FF)            # software-enabled (else every LVT stays masked)
        m.lapic.write(0x3E0, 4, 0xB)             # divide by 1
        m.lapic.write(0x320, 4, 0x40)            # LVT timer: one-shot, vector 0x40, unmasked
        m.lapic.write(0x380, 4, 0x100000)        # initial count: arms it
    session.dbg.request(arm)
    out = session("info timers").splitlines()
    assert out[0].startswith(f"clock: {m.config.clock}, now ")
    assert any("LocalApic" in line or "apic" in line.lower() for line in out[1:9]), out
    apic = next(line for line in out if line.startswith("local APIC timer:"))
    assert "one-shot, vector 0x40" in apic and "initial=0x100000" in apic and "divide=1" in apic
    assert "masked" not in apic
    pit0 = next(line for line in out if line.startswith("PIT channel 0:"))
    assert "mode 2" in pit0 or "mode 3" in pit0, pit0     # the BIOS programmed the 18.2 Hz tick


def test_info_without_a_topic_lists_the_topics(session):
    assert session("info") == "info registers|stats|devices|irq|timers -- show the machine's state"


# -- memory -----------------------------------------------------------------------------------

PATTERN = bytes([0x01, 0x02, 0x0A, 0x27, 0xFF, 0xFE, 0x41, 0x00, 0x5C, 0x0D])


def test_x_shows_bytes_halfwords_words_and_giants(session):
    session.poke(0x80000, PATTERN + bytes(6))
    assert session("x/8xb 0x80000") == \
        "00080000: 0x01 0x02 0x0a 0x27 0xff 0xfe 0x41 0x00"
    assert session("x/9xb 0x80000").splitlines()[1] == "00080008: 0x5c"
    assert session("x/2xh 0x80000") == "00080000: 0x0201 0x270a"
    assert session("x/2xw 0x80000") == "00080000: 0x270a0201 0x0041feff"
    assert session("x/1xg 0x80000") == "00080000: 0x0041feff270a0201"
    assert session("x/3dh 0x80002") == "00080002:  9994  -257    65"
    assert session("x/3uh 0x80002") == "00080002:  9994 65279    65"
    assert session("x/1db 0x80004") == "00080004:  -1"
    assert session("x/2ob 0x80000") == "00080000:  01  02"


def test_x_c_escapes_what_is_not_printable(session):
    session.poke(0x80000, PATTERN)
    assert session("x/10c 0x80000") == ("00080000: '\\x01' '\\x02' '\\n' '\\'' '\\xff' '\\xfe' "
                                        "'A' '\\x00'\n00080008: '\\\\' '\\r'")


def test_a_missing_format_or_size_is_the_last_one_used(session):
    session.poke(0x80000, PATTERN)
    assert session("x/2xh 0x80000") == "00080000: 0x0201 0x270a"
    assert session("x/2 0x80000") == "00080000: 0x0201 0x270a"
    assert session("x/1d 0x80000") == "00080000:   513"
    assert session("x 0x80000") == "00080000:   513"


def test_xp_reads_physical_memory_with_a_wide_address(session):
    assert session("xp/4xb 0xffff0") == "00000000000ffff0: " + " ".join(
        f"0x{b:02x}" for b in session.m.mem.read(0xFFFF0, 4))


def test_x_under_paging_walks_the_page_tables(session):
    """Linear 0x400000 mapped onto physical 0x80000 by a page directory at 0x90000."""
    session.poke(0x80000, PATTERN)
    session.poke(0x91000, (0x80000 | 3).to_bytes(4, "little"))        # PTE 0 of table 1
    session.poke(0x90004, (0x91000 | 3).to_bytes(4, "little"))        # PDE 1: 4 MiB..8 MiB

    def paging_on(m) -> None:
        m.vcpu.uc.reg_write(X.UC_X86_REG_CR3, 0x90000)
        m.vcpu.uc.reg_write(X.UC_X86_REG_CR0, m.vcpu.uc.reg_read(X.UC_X86_REG_CR0) | 0x80000001)
    session.dbg.request(paging_on)
    assert session("x/2xb 0x400000") == "00400000: 0x01 0x02"
    assert session("x/2xb 0x800000") == "00800000: Cannot access memory"
    assert session("xp/2xb 0x80000") == "0000000000080000: 0x01 0x02"


def test_x_i_disassembles_at_t_syntax_with_the_bytes(session):
    session.run_to(0x7C00)
    lines = session("x/3i 0x7c00").splitlines()
    code = session.m.mem.read(0x7C00, 16)
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16)
    cs.syntax = capstone.CS_OPT_SYNTAX_ATT
    for line, insn in zip(lines, cs.disasm(code, 0x7C00, 3)):
        assert line.startswith(f"0x{insn.address:08x}: " + "".join(f" {b:02x}" for b in insn.bytes))
        assert line.endswith(f"{insn.mnemonic:<8} {insn.op_str}".rstrip())
    assert "cli" in lines[0] and "xorw     %ax, %ax" in lines[1]
    assert session("x/1i $pc") == lines[0]


def test_x_i_follows_the_cpu_mode_unless_a_size_is_given():
    s = Session("hellokernel", kernel=True)
    try:
        assert s("x/1i $pc").endswith("movl     %eax, 0x10074c")
        assert "movw" in s("x/1ih $pc") or "mov" in s("x/1ih $pc")
        assert s("x/1ih $pc") != s("x/1i $pc")
    finally:
        s.close()


def test_addresses_are_expressions_of_numbers_and_registers(session):
    expected = session("xp/4xb 0xffff0").split(": ")[1]
    assert session("x/4xb $cs*16+$eip").split(": ")[1] == expected
    assert session("x/4xb $pc").split(": ")[1] == expected
    assert session("x/4xb (0xfff0 + 0xf000 * 0x10)").split(": ")[1] == expected
    assert session("x/4xb 1048560").split(": ")[1] == expected


@pytest.mark.parametrize("line,message", [
    ("x/100000xb 0", "too much memory requested: 100000 bytes (at most 65536)"),
    ("x/5000i 0", "too many instructions requested: 5000 (at most 1024)"),
    ("x/2xz 0", "invalid char in format: 'z'"),
    ("x/4xb", "x /fmt addr: an address is needed"),
    ("x/4xb 7c00", "bad number '7c00' (write hex as 0x7c00)"),
    ("x/4xb $nosuch", "unknown register $nosuch"),
    ("x/4xb (1+2", "missing ')' in '(1+2'"),
    ("x/4xb 1 2", "bad address expression '1 2'"),
    ("xp/2xg 0x7fffffffffff", "00007fffffffffff: Cannot access memory"),
    ("x/2xw 0xfffffff0", "fffffff0: Cannot access memory"),
    ("bogus", "unknown command: 'bogus' (try 'help')"),
    ("x" * 5000, "command line too long (at most 4096 characters)"),
    ("screendump shot.gif", "screendump: the file name must end in .png"),
    ("screendump", "usage: screendump FILE.png"),
    ("sendkey", "sendkey KEYS: for example sendkey ctrl-alt-del, sendkey a, sendkey f1 enter"),
    ("sendkey nosuchkey", "sendkey: unknown key 'nosuchkey'"),
])
def test_bad_commands_get_one_line_of_error(session, line, message):
    out = session(line)
    assert out.startswith(message) and "\n" not in out.replace('\nTry "help x"', "")
    assert session("info registers").startswith("CPU#0")        # and the monitor goes on


# -- run control ---------------------------------------------------------------------------------

def test_stop_cont_and_step_control_the_cpu():
    s = Session("keyecho")
    try:
        assert s("cont") == "" and not s.dbg.stopped
        wait_for(lambda: "Esc quits" in s.m.serial_text(), what="keyecho's prompt")
        out = s("stop")
        assert out.startswith("stopped at ") and s.dbg.stopped
        assert s("stop").startswith("already stopped at ")
        for _ in range(5):
            cs, eip, pc = s.dbg.request(lambda m: (m.vcpu.uc.reg_read(X.UC_X86_REG_CS),
                                                   m.vcpu.uc.reg_read(X.UC_X86_REG_EIP),
                                                   m.vcpu.pc()))
            code = s.dbg.request(lambda m, pc=pc: m.vcpu.read_linear(pc, 15))
            insn = next(capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16).disasm(code, eip, 1))
            out = s("step")
            new_cs, new_eip = s.dbg.request(lambda m: (m.vcpu.uc.reg_read(X.UC_X86_REG_CS),
                                                       m.vcpu.uc.reg_read(X.UC_X86_REG_EIP)))
            assert out.startswith(f"stopped at {new_cs:04x}:{new_eip:08x}")
            branches = insn.mnemonic.startswith(("j", "call", "ret", "int", "iret", "loop",
                                                 "lcall", "ljmp", "hlt", "vmcall"))
            assert branches or (new_cs, new_eip) == (cs, eip + insn.size), insn.mnemonic
        s("cont")
        assert s("step") == "the machine is running: 'stop' it first"
    finally:
        s.close()


def test_system_reset_restarts_the_machine_and_keeps_it_stopped(session):
    session.run_to(HALT_AT)
    assert session.m.serial_text().count("Hello from hv!") == 1
    assert session("system_reset") == ""
    wait_for(lambda: "EIP=0000fff0" in session("info registers"), what="the reset")
    assert session.dbg.stopped
    session("cont")
    assert session.wait_end().exit_code == 0
    assert session.m.serial_text().count("Hello from hv!") == 2


def test_quit_ends_the_run(session):
    assert session("quit") == ""
    result = session.wait_end()
    assert (result.exit_code, result.reason) == (0, "quit from the monitor")
    assert session("info registers").startswith("the run has ended")


def test_sendkey_types_on_the_keyboard():
    s = Session("keyecho", start_stopped=False)
    try:
        wait_for(lambda: "Esc quits" in s.m.serial_text(), what="keyecho's prompt")
        assert s("sendkey h i") == ""
        assert s("sendkey up") == ""
        assert s("sendkey esc") == ""
        assert s.wait_end().exit_code == 0
        assert "hi<up>" in s.m.serial_text() and "bye" in s.m.serial_text()
    finally:
        s.close()


def test_screendump_writes_the_display_as_png(session, tmp_path):
    session.run_to(HALT_AT)
    shot, reference = tmp_path / "shot.png", tmp_path / "reference.png"
    assert session(f"screendump {shot}") == ""
    session.dbg.request(lambda m: m.vga.screenshot_png(reference))
    assert shot.read_bytes() == reference.read_bytes()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert session(f"screendump {tmp_path}/no/such/dir/x.png") == \
        f"screendump: {tmp_path}/no/such/dir/x.png: No such file or directory"


def test_savevm_and_loadvm_restore_memory_or_say_they_are_not_available(session, tmp_path):
    state = tmp_path / "vm.state"
    out = session(f"savevm {state}")
    if not hasattr(session.m, "save"):
        assert out == "savevm: not available yet (snapshots are not built into this hv)"
        assert session(f"loadvm {state}") == \
            "loadvm: not available yet (snapshots are not built into this hv)"
        return
    assert out == "" and state.exists()
    session.poke(0x80000, b"changed!")
    assert session(f"loadvm {state}") == ""
    assert session.m.mem.read(0x80000, 8) == bytes(8)


def test_help_lists_every_command(session):
    text = session("help")
    for name in session.monitor.commands:
        assert re.search(rf"(^|\|){re.escape(name)}( |\||$)", text, re.M), name
    assert session("help x") == \
        "x /fmt addr -- dump memory at a linear address (fmt: count, x d u o c i, b h w g)"
    assert session("help nosuch") == "unknown command: 'nosuch'"


# -- the live display's line editor ------------------------------------------------------------

def test_the_terminal_monitor_edits_a_line_and_runs_it(session):
    term = TerminalMonitor(session.monitor)
    assert term.open().endswith(mon.PROMPT)
    echo, leave = term.feed(b"info regx\x7fisters")
    assert echo == "info regx\b \bisters" and not leave
    out, leave = term.feed(b"\r")
    assert "EIP=0000fff0" in out and out.endswith("\r\n" + mon.PROMPT) and "\r\n" in out
    assert "\n" not in out.replace("\r\n", "")                  # raw terminal: CR LF only
    term.feed(b"junk\x15")                                        # Ctrl-U drops the line
    assert term.line == ""
    term.feed(b"\x1b[A\x1bOP")                                    # arrows, F1: ignored
    assert term.line == ""
    out, leave = term.feed(b"help\x1dmore")
    assert leave and term.line == ""


def test_the_live_display_shows_the_monitor_on_ctrl_bracket_m():
    hv = PtyProgram([*hvcmd.HV, "run", "keyecho"], cwd=hvcmd.OUTSIDE, columns=100, rows=30,
                    env=dict(os.environ, TERM="xterm"))
    try:
        hv.expect("Ctrl-] m monitor")                       # the status line says how
        hv.expect("Esc quits")                               # the guest's prompt on screen
        hv.write(b"\x1dm")
        hv.expect("monitor - type 'help' for more information")
        hv.write(b"info devices\r")
        assert re.search(r"com1 +0x3f8-0x3ff", hv.expect("(hv) "))
        hv.write(b"\x1d")                                   # back to the guest's screen
        hv.expect("Esc quits")
        hv.write(b"ok\x1dq")
        hv.read_until(None, timeout=30)
        assert hv.proc.wait(30) == 0
    finally:
        hv.close()


# -- front ends: hv run --monitor ----------------------------------------------------------------

def hello_copy(tmp_path) -> str:
    path = tmp_path / "hello.img"
    shutil.copy(guests.image_path("hello"), path)
    return str(path)


def split_answers(stdout: str) -> list[str]:
    """stdout of a stdio monitor -> the answer to each command, in order."""
    parts = stdout.split(mon.PROMPT)
    return [p.rstrip("\n") for p in parts[1:]]


def test_the_stdio_monitor_answers_each_command_on_stdout(tmp_path):
    shot = tmp_path / "screen.png"
    commands = ["info registers", "x/4xb 0xffff0", "xp/2xh 0xffff0", "x/1i 0xffff0",
                "info devices", "info irq", "info stats", "step", "stop", "sendkey a",
                f"screendump {shot}", f"savevm {tmp_path}/vm", "help quit", "bogus",
                "system_reset", "info registers", "cont"]
    done = hvcmd.run(["run", hello_copy(tmp_path), "-S", "--monitor", "stdio", "--serial",
                      "none", "--screen"],
                     input="\n".join(commands) + "\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    banner, _, rest = done.stdout.partition("\n")
    assert re.fullmatch(r"hv \S+ monitor - type 'help' for more information", banner)
    answers = split_answers(rest)
    got = dict(zip(commands, answers))
    assert "EIP=0000fff0" in got["info registers"]
    assert got["x/4xb 0xffff0"].startswith("000ffff0: 0xea")
    assert got["xp/2xh 0xffff0"].startswith("00000000000ffff0: 0x")
    assert "ljmpw" in got["x/1i 0xffff0"]
    assert "com1" in got["info devices"] and "8259 master" in got["info irq"]
    assert got["info stats"].startswith("exit kind")
    assert got["step"].startswith("stopped at f000:")
    assert got["stop"].startswith("already stopped at f000:")
    assert got["sendkey a"] == "" and shot.read_bytes()[:4] == b"\x89PNG"
    assert got["help quit"] == "quit|q -- end the run"
    assert got["bogus"] == "unknown command: 'bogus' (try 'help')"
    assert "EIP=0000fff0" in answers[15]
    assert "Hello from hv!" in done.stdout               # --screen after the guest ran


def test_the_unix_socket_monitor_serves_clients_one_after_another(tmp_path):
    path = tmp_path / "hv.sock"
    path.write_bytes(b"")
    bad = hvcmd.run(["run", "keyecho", "--monitor", f"unix:{path}", "--serial", "none"],
                    capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and "exists and is not a socket" in bad.stderr
    path.unlink()
    proc = hvcmd.popen(["run", "keyecho", "--monitor", f"unix:{path}", "--serial", "none"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(path.exists, what="the monitor socket")

        def talk(lines: list[str]) -> list[str]:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(30)
                wait_for(lambda: s.connect_ex(str(path)) == 0, what="the monitor to listen")
                data = b""
                for line in lines:
                    while data.count(mon.PROMPT.encode()) <= lines.index(line):
                        data += s.recv(65536)
                    s.sendall(line.encode() + b"\n")
                while data.count(mon.PROMPT.encode()) <= len(lines) and lines[-1] != "quit":
                    data += s.recv(65536)
                if lines[-1] == "quit":
                    while chunk := s.recv(65536):
                        data += chunk
            return split_answers(data.decode().partition("\n")[2])

        first = talk(["stop", "info registers"])
        assert first[0].startswith("stopped at ") and "EIP=" in first[1]
        # (not esc: keyecho ends on it, and the run could end before "quit" is sent)
        second = talk(["x/2xb 0x450", "sendkey a", "cont", "quit"])
        assert second[0].startswith("00000450: 0x")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert not path.exists()                           # removed when the run ended


# -- against QEMU's monitor ----------------------------------------------------------------------

def qemu_answers(commands: list[str]) -> list[str]:
    proc = subprocess.Popen([QEMU, "-S", "-monitor", "stdio", "-display", "none", "-nodefaults"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc.stdin.write(("\n".join(commands) + "\nquit\n").encode())
    proc.stdin.flush()
    out = proc.communicate(timeout=60)[0].decode("latin-1")
    answers = []
    for chunk in out.split("(qemu) ")[1:len(commands) + 1]:
        _echoed, _, answer = chunk.partition("\r\n")         # QEMU echoes the typed line
        answers.append(answer.replace("\r\n", "\n").strip("\n"))
    return answers


def hv_answers(commands: list[str], tmp_path) -> list[str]:
    done = hvcmd.run(["run", hello_copy(tmp_path), "-S", "--monitor", "stdio", "--serial",
                      "none"], input="\n".join(commands) + "\nquit\n", capture_output=True,
                     text=True, timeout=60)
    return split_answers(done.stdout.partition("\n")[2])[:len(commands)]


@pytest.mark.skipif(QEMU is None, reason="qemu-system-i386 is not installed "
                                         "(apt-get install qemu-system-x86)")
def test_dumps_match_qemus_monitor_character_for_character(tmp_path):
    """Untouched RAM (0x80000) reads zero in both machines at the reset vector."""
    commands = ["x/4xb 0x80000", "x/9xb 0x80000", "x/4dh 0x80000", "x/4uw 0x80000",
                "x/3ow 0x80000", "x/2dg 0x80000", "x/3xg 0x80000", "xp/4xw 0x80000",
                "xp/3xh 0x80000", "x/2i 0x80000", "xp/2i 0x80000", "x/2xq 0x80000", "x/ 0x80000"]
    assert hv_answers(commands, tmp_path) == qemu_answers(commands)


@pytest.mark.skipif(QEMU is None, reason="qemu-system-i386 is not installed "
                                         "(apt-get install qemu-system-x86)")
def test_info_registers_has_qemus_layout(tmp_path):
    def shape(text: str) -> list[str]:
        return [re.sub(r"[0-9a-f]", "h", line) for line in text.splitlines() if line.strip()]
    ours, theirs = hv_answers(["info registers"], tmp_path)[0], qemu_answers(["info registers"])[0]
    assert shape(ours) == shape(theirs)
