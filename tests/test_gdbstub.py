"""The gdb stub (hv/debug/gdbstub.py): Debian's gdb against ``hv run --gdb`` in a subprocess,
and every packet kind from a protocol client of our own against a machine in this process."""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import xml.etree.ElementTree as ET

import pytest

from hv import guests
from hv.debug import gdbstub
from hv.debug.gdbstub import REG_BYTES, REGISTERS, target_xml
from hv.machine import DriveSpec, Machine, MachineConfig
from tests import hvcmd
from tests.debug_session import GDB, NO_GDB, HvProcess, RspClient, frame, run_gdb, wait_for

HELLO_MESSAGE = 0x7C00 + guests.image_path("hello").read_bytes().index(b"Hello from hv!")
KERNEL_FLAT = guests.IMAGES_DIR / "hellokernel.bin"


def reg_index(name: str) -> int:
    return next(i for i, r in enumerate(REGISTERS) if r.name == name)


def decode_registers(hex_text: bytes) -> dict[str, int]:
    data = bytes.fromhex(hex_text.decode())
    out, at = {}, 0
    for r, n in zip(REGISTERS, REG_BYTES):
        out[r.name] = int.from_bytes(data[at:at + n], "little")
        at += n
    return out


# -- a machine in this process, its stub, a client --------------------------------------------

class Stub:
    """A machine running in a thread with a GdbServer on an ephemeral port; the server is
    closed with the run's result when the run ends, as ``hv run`` does."""

    def __init__(self, image: str = "hello", bios: str = "synthetic",
                 start_stopped: bool = True) -> None:
        self.m = Machine(MachineConfig(fda=DriveSpec(str(guests.image_path(image)), readonly=True),
                                       bios=bios, timeout=60))
        self.server = gdbstub.GdbServer(self.m, "127.0.0.1", 0, start_stopped)
        self.dbg = self.m.debugger
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.client = RspClient(self.server.port)

    def _run(self) -> None:
        self.result = self.m.run()
        self.server.close(self.result)

    def wait_end(self, timeout: float = 30):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not end"
        return self.result

    def close(self) -> None:
        self.client.close()
        self.m.finish(0, "test over")
        self.m.wake_vcpu()
        self.thread.join(10)
        self.m.close()


@pytest.fixture
def stub():
    s = Stub()
    yield s
    s.close()


def continue_to(stub: Stub, address: int) -> bytes:
    c = stub.client
    assert c.ask(b"Z0,%x,1" % address) == b"OK"
    reply = c.ask(b"c")
    assert c.ask(b"z0,%x,1" % address) == b"OK"
    return reply


# -- packets ----------------------------------------------------------------------------------

def test_qsupported_announces_what_the_stub_serves(stub):
    reply = stub.client.ask(b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386")
    features = set(reply.split(b";"))
    assert {b"qXfer:features:read+", b"QStartNoAckMode+", b"swbreak+", b"hwbreak+",
            b"vContSupported+"} <= features
    size = next(f for f in features if f.startswith(b"PacketSize="))
    assert int(size.split(b"=")[1], 16) >= 4096


def test_the_target_description_arrives_in_pieces_and_describes_the_i386_core(stub):
    c, xml, offset = stub.client, b"", 0
    while True:
        reply = c.ask(b"qXfer:features:read:target.xml:%x,%x" % (offset, 300))
        assert reply[:1] in (b"m", b"l") and len(reply) <= 301
        xml += reply[1:]
        offset += len(reply) - 1
        if reply[:1] == b"l":
            break
    assert xml == target_xml("i8086")              # real mode at the reset vector
    root = ET.fromstring(xml)
    core = root.find("feature[@name='org.gnu.gdb.i386.core']")
    names = [r.get("name") for r in core.findall("reg")]
    assert names[:16] == ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip",
                          "eflags", "cs", "ss", "ds", "es", "fs", "gs"]
    assert names[16:24] == [f"st{i}" for i in range(8)] and names[-1] == "fop"
    numbers = [int(r.get("regnum")) for r in root.iter("reg")]
    assert numbers == list(range(len(REGISTERS)))


def test_a_protected_mode_cpu_is_described_as_i386():
    assert b"<architecture>i386</architecture>" in target_xml()
    assert b"<architecture>i8086</architecture>" in target_xml("i8086")


def test_only_target_xml_can_be_read(stub):
    assert stub.client.ask(b"qXfer:features:read:other.xml:0,100") == b"E00"
    assert stub.client.ask(b"qXfer:libraries:read::0,100") == b""


def test_status_and_thread_queries_describe_one_stopped_vcpu(stub):
    c = stub.client
    assert c.ask(b"?") == b"T05thread:1;"
    assert c.ask(b"qAttached") == b"1"
    assert c.ask(b"qC") == b"QC1"
    assert c.ask(b"qfThreadInfo") == b"m1"
    assert c.ask(b"qsThreadInfo") == b"l"
    assert c.ask(b"Hg0") == b"OK" and c.ask(b"Hc-1") == b"OK"
    assert c.ask(b"T1") == b"OK" and c.ask(b"T2") == b"E01"
    assert bytes.fromhex(c.ask(b"qThreadExtraInfo,1").decode()) == b"vCPU 0, real mode"


def test_g_reads_the_cpu_at_the_reset_vector(stub):
    reply = stub.client.ask(b"g")
    assert len(reply) == 2 * sum(REG_BYTES)
    regs = decode_registers(reply)
    assert (regs["cs"], regs["eip"], regs["edx"]) == (0xF000, 0xFFF0, 0x600)
    assert regs["cr0"] & 1 == 0


def test_G_P_and_p_write_registers_that_g_and_p_read_back(stub):
    c = stub.client
    regs = bytearray(bytes.fromhex(c.ask(b"g").decode()))
    regs[0:4] = (0x12345678).to_bytes(4, "little")                     # eax
    assert c.ask(b"G" + regs.hex().encode()) == b"OK"
    assert decode_registers(c.ask(b"g"))["eax"] == 0x12345678
    assert c.ask(b"P%x=%s" % (reg_index("ecx"), (0xCAFE).to_bytes(4, "little").hex().encode())) \
        == b"OK"
    assert c.ask(b"p%x" % reg_index("ecx")) == (0xCAFE).to_bytes(4, "little").hex().encode()
    assert stub.dbg.request(lambda m: m.vcpu.uc.reg_read(
        __import__("unicorn").x86_const.UC_X86_REG_ECX)) == 0xCAFE


def test_x87_registers_are_ten_bytes_from_the_stack_top(stub):
    st0 = stub.client.ask(b"p%x" % reg_index("st0"))
    assert len(st0) == 20
    value = (0x8000000000000000).to_bytes(8, "little") + (0x3FFF).to_bytes(2, "little")  # 1.0
    assert stub.client.ask(b"P%x=%s" % (reg_index("st0"), value.hex().encode())) == b"OK"
    assert stub.client.ask(b"p%x" % reg_index("st0")) == value.hex().encode()


def test_m_reads_linear_memory_and_a_read_past_ram_is_short_or_an_error(stub):
    c = stub.client
    assert bytes.fromhex(c.ask(b"mffff0,10").decode()) == stub.m.mem.read(0xFFFF0, 16)
    end = stub.m.mem.span
    assert len(bytes.fromhex(c.ask(b"m%x,10" % (end - 8)).decode())) == 8
    assert c.ask(b"m%x,10" % end) == b"E0e"
    assert c.ask(b"mfffffff0,4") == b"E0e"


def test_M_and_X_write_memory_with_escaped_binary(stub):
    c = stub.client
    assert c.ask(b"M80000,4:deadbeef") == b"OK"
    assert stub.m.mem.read(0x80000, 4) == bytes.fromhex("deadbeef")
    payload = bytes([0x23, 0x24, 0x7D, 0x2A, 0x00, 0xFF])       # # $ } * need escapes
    escaped = b"".join(b"}" + bytes([b ^ 0x20]) if b in b"#$}*" else bytes([b]) for b in payload)
    assert c.ask(b"X80010,%x:" % len(payload) + escaped) == b"OK"
    assert stub.m.mem.read(0x80010, len(payload)) == payload
    assert c.ask(b"X80010,0:") == b"OK"                           # gdb's probe for X


def test_a_breakpoint_stops_at_the_boot_sector_with_swbreak_and_is_removed(stub):
    reply = continue_to(stub, 0x7C00)
    assert reply == b"T05swbreak:;thread:1;"
    regs = decode_registers(stub.client.ask(b"g"))
    assert (regs["cs"], regs["eip"]) == (0, 0x7C00)
    assert stub.dbg.breakpoints == {}                       # z0 removed the hook


def test_a_z1_breakpoint_is_reported_as_hwbreak(stub):
    c = stub.client
    assert c.ask(b"Z1,7c00,1") == b"OK"
    assert c.ask(b"c") == b"T05hwbreak:;thread:1;"
    assert c.ask(b"z1,7c00,1") == b"OK"


def test_a_write_watchpoint_reports_watch_and_the_address(stub):
    continue_to(stub, 0x7C00)
    c = stub.client
    assert c.ask(b"Z2,450,2") == b"OK"
    assert c.ask(b"c") == b"T05watch:450;thread:1;"
    assert c.ask(b"z2,450,2") == b"OK"
    assert stub.dbg.watchpoints == {} and stub.dbg._watch_step_hook is None


def test_read_and_access_watchpoints_report_rwatch_and_awatch(stub):
    continue_to(stub, 0x7C00)
    c = stub.client
    assert c.ask(b"Z3,%x,1" % HELLO_MESSAGE) == b"OK"
    assert c.ask(b"c") == b"T05rwatch:%x;thread:1;" % HELLO_MESSAGE
    assert c.ask(b"z3,%x,1" % HELLO_MESSAGE) == b"OK"
    second = HELLO_MESSAGE + 1
    assert c.ask(b"Z4,%x,1" % second) == b"OK"
    assert c.ask(b"c") == b"T05awatch:%x;thread:1;" % second
    assert c.ask(b"z4,%x,1" % second) == b"OK"


def test_a_watchpoint_over_a_whole_page_is_accepted_and_a_larger_one_refused(stub):
    assert stub.client.ask(b"Z2,1000,1000") == b"OK"
    assert stub.client.ask(b"Z2,3000,1001") == b"E16"
    assert stub.client.ask(b"z2,1000,1000") == b"OK"


def test_s_and_vcont_step_one_instruction_each(stub):
    continue_to(stub, 0x7C00)
    c = stub.client
    assert c.ask(b"s") == b"T05thread:1;"
    assert decode_registers(c.ask(b"g"))["eip"] == 0x7C01         # cli
    assert c.ask(b"vCont;s:1;c") == b"T05thread:1;"
    assert decode_registers(c.ask(b"g"))["eip"] == 0x7C03         # xor %ax,%ax


def test_vcont_is_announced_and_continues(stub):
    c = stub.client
    assert c.ask(b"vCont?") == b"vCont;c;C;s;S"
    assert c.ask(b"Z0,7c00,1") == b"OK"
    assert c.ask(b"vCont;c") == b"T05swbreak:;thread:1;"
    assert c.ask(b"vMustReplyEmpty") == b""


def test_continue_at_an_address_moves_eip_first(stub):
    continue_to(stub, 0x7C00)
    c = stub.client
    assert c.ask(b"Z0,7c05,1") == b"OK"
    # From 0x7C00, "c 7c03" skips cli and xor: the next stop is the breakpoint at 0x7C05.
    assert c.ask(b"c7c03") == b"T05swbreak:;thread:1;"
    assert decode_registers(c.ask(b"g"))["eip"] == 0x7C05


def test_ctrl_c_stops_a_running_guest_with_sigint():
    s = Stub("keyecho")
    try:
        c = s.client
        c.send(b"c")
        wait_for(lambda: not s.dbg.stopped, what="the guest to run")
        c.raw(b"\x03")
        assert c.packet() == b"T02thread:1;"
        assert s.dbg.stopped
    finally:
        s.close()


def test_qrcmd_runs_a_monitor_command_and_prints_through_o_packets(stub):
    out, reply = stub.client.ask_console(b"qRcmd," + b"info registers".hex().encode())
    assert reply == b"OK"
    assert "EIP=0000fff0" in out and "CS =f000" in out
    assert stub.client.ask(b"qRcmd,zz") == b"E16"


def test_k_ends_the_run(stub):
    stub.client.send(b"k")
    result = stub.wait_end()
    assert (result.exit_code, result.reason) == (1, "killed from gdb")


def test_the_end_of_the_run_is_reported_with_w(stub):
    assert stub.client.ask(b"c") == b"W00"
    assert stub.wait_end().exit_code == 0
    assert "Hello from hv!" in stub.m.serial_text()


def test_d_detaches_clears_breakpoints_and_lets_the_guest_finish(stub):
    continue_to(stub, 0x7C00)
    c = stub.client
    assert c.ask(b"Z0,7c20,1") == b"OK" and c.ask(b"Z2,450,2") == b"OK"
    assert c.ask(b"D") == b"OK"
    result = stub.wait_end()
    assert result.exit_code == 0 and "Hello from hv!" in stub.m.serial_text()
    assert stub.dbg.breakpoints == {} and stub.dbg.watchpoints == {}
    assert stub.dbg._watch_step_hook is None


def test_a_dropped_connection_detaches_as_d_does(stub):
    continue_to(stub, 0x7C00)
    assert stub.client.ask(b"Z0,7c20,1") == b"OK"
    stub.client.close()
    result = stub.wait_end()
    assert result.exit_code == 0 and stub.dbg.breakpoints == {}


def test_a_second_gdb_attaches_after_the_first_left():
    s = Stub("keyecho")
    try:
        assert s.client.ask(b"Z0,7c00,1") == b"OK"
        s.client.close()                               # detached: the guest runs on
        wait_for(lambda: s.server.connection is None and not s.dbg.stopped,
                 what="the first client to detach")
        assert s.dbg.breakpoints == {}
        second = RspClient(s.server.port)
        assert second.ask(b"?") == b"T05thread:1;"       # stopped again for the newcomer
        assert s.dbg.stopped
        second.close()
    finally:
        s.close()


def test_a_running_machine_is_stopped_when_gdb_attaches():
    s = Stub("keyecho", start_stopped=False)
    try:
        assert s.client.ask(b"?") == b"T05thread:1;"
        assert s.dbg.stopped
    finally:
        s.close()


def test_debugger_writes_do_not_trip_a_watchpoint(stub):
    c = stub.client
    assert c.ask(b"Z2,80000,4") == b"OK"
    assert c.ask(b"M80000,4:01020304") == b"OK"
    assert c.ask(b"c") == b"W00"          # not a T05watch for our own write


MALFORMED = [
    (b"m", b"E16"), (b"mzz,4", b"E16"), (b"m1000", b"E16"), (b"m-1,4", b"E16"),
    (b"m1000,4,5", b"E16"), (b"M1000,4:zz", b"E16"), (b"M1000,8:00", b"E16"),
    (b"X1000,4:", b"E16"), (b"G00", b"E16"), (b"p", b"E16"), (b"pffff", b"E16"),
    (b"P0=zz", b"E16"), (b"P0=00", b"E16"), (b"Z9,1000,1", b""), (b"Z0", b"E16"),
    (b"Z2,450,0", b"E16"), (b"vCont;t", b"E16"), (b"vCont;", b"E16"), (b"vFoo", b""),
    (b"jbogus", b""), (b"qBogus", b""), (b"QBogus", b""), (b"c zz", b"E16"),
    (b"m10000000000000000,4", b"E16"), (b"\xff\xfe", b""), (b"qXfer:features:read:target.xml:zz", b"E16"),
]


@pytest.fixture(scope="module")
def shared_stub():
    """One stopped machine for the packets that change nothing."""
    s = Stub()
    yield s
    s.close()


@pytest.mark.parametrize("body,reply", MALFORMED)
def test_a_malformed_packet_gets_an_error_or_the_empty_reply(shared_stub, body, reply):
    assert shared_stub.client.ask(body) == reply
    assert shared_stub.client.ask(b"?") == b"T05thread:1;"    # and the stub still serves
    assert shared_stub.dbg.stopped and shared_stub.dbg.breakpoints == {}


def test_a_bad_checksum_is_refused_and_the_packet_ignored(stub):
    c = stub.client
    c.raw(b"$M80000,1:55#00")
    assert c.read_byte() == b"-"
    assert stub.m.mem.read(0x80000, 1) == b"\0"
    assert c.ask(b"?") == b"T05thread:1;"


def test_an_endless_packet_is_dropped(stub):
    c = stub.client
    c.raw(b"$" + b"a" * (3 * gdbstub.PACKET_SIZE))
    assert c.read_byte() == b"-"
    assert c.ask(b"?") == b"T05thread:1;"


def test_line_noise_between_packets_is_ignored(stub):
    stub.client.raw(b"garbage\r\n+++")
    assert stub.client.ask(b"qC") == b"QC1"


def test_a_nak_makes_the_stub_send_its_last_packet_again(stub):
    c = stub.client
    assert c.ask(b"qC") == b"QC1"
    c.raw(b"-")
    assert c.packet() == b"QC1"


def test_no_ack_mode_stops_the_acks(stub):
    c = stub.client
    assert c.ask(b"QStartNoAckMode") == b"OK"
    c.ack = False
    c.raw(frame(b"qC"))
    assert c.read_byte() == b"$"                     # the reply, no "+" before it
    c.buf[:0] = b"$"
    assert c.packet() == b"QC1"


@pytest.mark.parametrize("spec,expected", [("tcp::1234", ("127.0.0.1", 1234)),
                                           ("tcp:localhost:0", ("127.0.0.1", 0)),
                                           ("tcp:[::1]:4000", ("::1", 4000))])
def test_gdb_specs_name_a_loopback_port(spec, expected):
    assert gdbstub.parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["tcp:0.0.0.0:1234", "tcp:example.org:1234", "udp::1234",
                                  "tcp::", "tcp::70000", "tcp::-1", "1234", "tcp::12ab"])
def test_a_bad_gdb_spec_is_refused_with_a_reason(spec):
    with pytest.raises(ValueError, match="--gdb"):
        gdbstub.parse_spec(spec)


# -- gdb against hv run, in a subprocess --------------------------------------------------------

needs_gdb = pytest.mark.skipif(GDB is None, reason=NO_GDB)


def hello_copy(tmp_path) -> str:
    """A private copy: the shipped image is locked while another test runs it."""
    path = tmp_path / "hello.img"
    shutil.copy(guests.image_path("hello"), path)
    return str(path)


@needs_gdb
@pytest.mark.parametrize("bios", ["synthetic", "emulated"])
def test_gdb_breaks_at_the_boot_sector_steps_reads_memory_and_watches_the_bda(tmp_path, bios):
    image = hello_copy(tmp_path)
    hv = HvProcess([image, "--bios", bios, "--gdb", "tcp::0", "-S", "--serial", "stdio"])
    try:
        port = hv.wait_port()
        out, text = run_gdb(port, [
            "set architecture i8086", "info registers cs eip", "break *0x7c00", "continue",
            "stepi", "info registers cs eip", "x/16xb 0x7c00", "x/2i 0x7c00",
            "watch *(short*)0x450", "continue", "delete", "continue"])
        code = hv.wait()
    finally:
        hv.kill()
    _arch, start, _brk, cont, _step, regs, dump, code_dump, watch, hit, _, end = out
    assert "0xf000" in start and "0xfff0" in start
    assert "Breakpoint 1, 0x00007c00 in ?? ()" in cont
    cs_line, eip_line = regs.strip().splitlines()
    assert cs_line.split()[:2] == ["cs", "0x0"] and eip_line.split()[:2] == ["eip", "0x7c01"]
    shown = bytes(int(tok, 16) for line in dump.splitlines() for tok in line.split(":")[1].split())
    with open(image, "rb") as f:
        assert shown == f.read(16)
    assert "cli" in code_dump and "xor    %ax,%ax" in code_dump       # 16-bit disassembly
    assert "Hardware watchpoint 2: *(short*)0x450" in watch
    assert "Hardware watchpoint 2: *(short*)0x450" in hit and "New value =" in hit
    old = int(hit.split("Old value = ")[1].split()[0])
    new = int(hit.split("New value = ")[1].split()[0])
    assert new != old
    assert "exited normally" in end, text
    assert code == 0 and "Hello from hv!" in hv.stdout()


@needs_gdb
def test_gdb_debugs_the_protected_mode_kernel(tmp_path):
    flat = KERNEL_FLAT.read_bytes()
    hv = HvProcess(["--kernel", "hellokernel", "--gdb", "tcp::0", "-S", "--serial", "none"])
    try:
        port = hv.wait_port()
        out, text = run_gdb(port, [
            "show architecture", "info registers cs eip", "x/16xb 0x100000", "x/2i $pc",
            "watch *(int*)0x10074c", "continue", "print/x $eip", "delete", "break *0x100011",
            "continue", "stepi", "print/x $eip", "delete", "continue"])
        code = hv.wait()
    finally:
        hv.kill()
    arch, regs, dump, code_dump, _, hit, eip, _, _, brk, _, stepped, _, end = out
    assert '"i386"' in arch
    assert regs.split()[:2] == ["cs", "0x8"] and "0x100000" in regs
    shown = bytes(int(t, 16) for line in dump.splitlines() for t in line.split(":")[1].split())
    assert shown == flat[:16]
    assert "mov    %eax,0x10074c" in code_dump                        # 32-bit disassembly
    assert "New value = 1752563713" in hit                           # eax at entry: 0x68760001
    assert eip.strip() == "$1 = 0x100005"                            # just after the store
    assert "Breakpoint 2, 0x00100011" in brk
    assert stepped.strip() == "$2 = 0x100012"                        # pushf is one byte
    assert "exited normally" in end, text
    assert code == 0


@needs_gdb
def test_gdb_monitor_commands_reach_the_hv_monitor(tmp_path):
    hv = HvProcess([hello_copy(tmp_path), "--gdb", "tcp::0", "-S", "--serial", "none"])
    try:
        out, _ = run_gdb(hv.wait_port(), ["monitor info registers", "monitor x/4xb 0xffff0",
                                          "monitor bogus", "kill"])
        code = hv.wait()
    finally:
        hv.kill()
    assert "EIP=0000fff0" in out[0]
    assert out[1].startswith("000ffff0: 0x")
    assert "unknown command: 'bogus'" in out[2]
    assert code == 1 and "killed from gdb" in hv.stderr()


def test_dash_s_listens_on_port_1234(tmp_path):
    try:
        probe = socket.create_server(("127.0.0.1", 1234))
    except OSError:
        pytest.skip("port 1234 is in use on this host (another gdb stub?)")
    probe.close()
    hv = HvProcess([hello_copy(tmp_path), "-s", "-S", "--serial", "none"])
    try:
        assert hv.wait_port() == 1234
        client = RspClient(1234)
        assert client.ask(b"?") == b"T05thread:1;"
        client.send(b"k")
        assert hv.wait() == 1
    finally:
        hv.kill()


@pytest.mark.parametrize("args,message", [
    (["--gdb", "tcp:0.0.0.0:1234"], "listens on localhost only"),
    (["--gdb", "serial"], "expected tcp::PORT"),
    (["-S"], "-S: nothing could start the CPU"),
])
def test_bad_debug_options_get_one_line_and_exit_2(tmp_path, args, message):
    done = hvcmd.run([*["run", hello_copy(tmp_path)], *args], capture_output=True, text=True,
                     timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_port_in_use_is_a_usage_error(tmp_path):
    holder = socket.create_server(("127.0.0.1", 0))
    try:
        port = holder.getsockname()[1]
        done = hvcmd.run(["run", hello_copy(tmp_path), "--gdb", f"tcp::{port}"],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        holder.close()
    assert done.returncode == 2
    assert "Address already in use" in done.stderr


def test_breakpoints_and_watchpoints_are_limited_per_client(stub, monkeypatch):
    monkeypatch.setattr(gdbstub, "MAX_BREAKPOINTS", 4)        # the real limits: 256 and 64
    monkeypatch.setattr(gdbstub, "MAX_WATCHPOINTS", 2)
    c = stub.client
    for i in range(4):
        assert c.ask(b"Z0,%x,1" % (0x90000 + i)) == b"OK"
    assert c.ask(b"Z0,%x,1" % 0x7C00) == b"E1c"
    assert c.ask(b"Z0,90000,1") == b"OK"                     # one already there: fine
    for i in range(2):
        assert c.ask(b"Z2,%x,4" % (0x98000 + 16 * i)) == b"OK"
    assert c.ask(b"Z2,450,2") == b"E1c"
    assert len(stub.dbg.breakpoints) == 4 and len(stub.dbg.watchpoints) == 2
    stub.client.close()                                        # detaching frees them all
    wait_for(lambda: not stub.dbg.breakpoints and not stub.dbg.watchpoints,
             what="the breakpoints to go")
