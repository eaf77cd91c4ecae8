"""The hv command as a QEMU user expects it (issue 8, item 5): image locks, --trace, the
live display (under a pseudo-terminal), --until that never matched, option errors,
--kernel on an unknown format, and hv list."""
from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import time

import pytest

from hv import console, guests
from tests import hvcmd
from tests.test_vcpu_control import flat_kernel


def hv(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return hvcmd.run(list(args), capture_output=True, text=True, timeout=timeout,
                     stdin=subprocess.DEVNULL, env=env)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hv: "), r.stderr
    return lines[0]


@pytest.fixture
def image(tmp_path):
    """A writable copy of the hello floppy."""
    path = tmp_path / "x.img"
    shutil.copy(guests.image_path("hello"), path)
    return path


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "d.img"
    path.write_bytes(bytes(2 << 20))
    return path


# -- the same image twice ------------------------------------------------------------------

@pytest.mark.parametrize("slots", [("fda", "fdb"), ("hda", "hdb")], ids="-".join)
def test_one_image_attached_twice_for_writing_is_refused(image, disk, slots):
    path = image if slots[0] == "fda" else disk
    r = hv("run", f"--{slots[0]}", str(path), f"--{slots[1]}", str(path), "--no-live")
    assert r.returncode == 2
    assert "in use" in one_error_line(r) and str(path.name) in r.stderr


def test_one_image_attached_twice_readonly_is_fine(image):
    r = hv("run", "--fda", f"{image},ro", "--fdb", f"{image},ro", "--no-live", "--timeout", "20")
    assert r.returncode == 0, r.stderr
    assert "Hello from hv!" in r.stdout


def wait_until_locked(path, proc, probe: int = fcntl.LOCK_SH, limit: float = 20) -> None:
    """Until ``proc`` holds its lock on ``path``: a writer's makes a shared ``probe``
    fail, a reader's an exclusive one."""
    end = time.monotonic() + limit
    with open(path, "rb") as f:
        while time.monotonic() < end:
            assert proc.poll() is None, proc.communicate()
            try:
                fcntl.flock(f, probe | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            fcntl.flock(f, fcntl.LOCK_UN)
            time.sleep(0.05)
    pytest.fail("the first hv never locked the image")


def test_an_image_in_use_by_another_hv_process_is_refused(tmp_path):
    image = tmp_path / "k.img"
    shutil.copy(guests.image_path("keyecho"), image)         # waits for keys: keeps running
    first = hvcmd.popen(["run", str(image), "--no-live", "--serial", "none", "--timeout", "30"],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True)
    try:
        wait_until_locked(image, first)
        r = hv("run", str(image), "--no-live")
        assert r.returncode == 2
        assert "in use" in one_error_line(r)
        r = hv("run", "--fda", f"{image},ro", "--no-live")    # a reader is refused too
        assert r.returncode == 2 and "in use" in one_error_line(r)
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=20)


def test_two_hv_processes_may_share_an_image_readonly(tmp_path):
    image = tmp_path / "k.img"
    shutil.copy(guests.image_path("keyecho"), image)
    first = hvcmd.popen(["run", "--fda", f"{image},ro", "--no-live", "--serial", "none",
                         "--timeout", "30"], stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_locked(image, first, probe=fcntl.LOCK_EX)
        r = hv("run", "--fda", f"{image},ro", "--no-live", "--timeout", "1")
        assert r.returncode == 124, r.stderr                   # it ran until its timeout
        assert "keyecho: type keys" in r.stdout
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=20)


# -- --trace ---------------------------------------------------------------------------------

TRACE_LINE = re.compile(r"^(in|out)\s+CS:IP=[0-9A-F]+:[0-9A-F]+\s+(\S+)")


@pytest.mark.parametrize("dispatch", ["python", "c"])
def test_trace_names_the_in_or_out_that_made_each_port_exit(dispatch):
    r = hv("run", "hello", "--trace", "--serial", "none", "--dispatch", dispatch, "--timeout", "20")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    io = [m for m in map(TRACE_LINE.match, lines) if m]
    # hello's port writes sit after `mov dx, PORT; mov al, X` in their blocks: the block's
    # first instruction is never the one named.
    assert len(io) >= 20
    for m in io:
        assert m.group(2) == m.group(1), m.string
    said = [x for x in lines if "--trace uses the Python dispatcher" in x]
    assert len(said) == (1 if dispatch == "c" else 0)


# -- the live display, under a pseudo-terminal ---------------------------------------------

ENTER_ALT, LEAVE_ALT = b"\x1b[?1049h", b"\x1b[?1049l"


def run_in_terminal(args: list[str], columns: int, rows: int, *, sigterm_after: bytes | None = None,
                    settle: float = 0.5, limit: float = 8) -> tuple[int, bytes]:
    """Run hv with stdin, stdout and stderr on a pty of the given size; (status, bytes)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = hvcmd.popen(args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out, sent_at, end = b"", None, time.monotonic() + limit
    try:
        while time.monotonic() < end:
            if sigterm_after is not None and sent_at is None and sigterm_after in out:
                sent_at = time.monotonic()
            if sent_at is not None and time.monotonic() >= sent_at + settle:
                proc.send_signal(signal.SIGTERM)
                sigterm_after, sent_at = None, None
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:          # EIO: every slave side closed
                    break
                if not data:
                    break
                out += data
        else:
            proc.kill()
            pytest.fail(f"hv did not finish in {limit} s: {out[-300:]!r}")
        return proc.wait(timeout=10), out
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def frames(out: bytes) -> list[bytes]:
    """The screens drawn on the alternate screen (each starts at cursor home)."""
    inside = out[out.index(ENTER_ALT):out.rindex(LEAVE_ALT)]
    return inside.split(b"\x1b[H")[1:]


def test_live_display_fits_an_80x24_terminal_with_a_status_line():
    code, out = run_in_terminal(["run", "keyecho"], 80, 24, sigterm_after=b"keyecho: type")
    assert code == 128 + signal.SIGTERM
    for frame in frames(out):
        if b"Ctrl-] q quits" not in frame:
            continue
        # 23 guest rows and the status line: no row scrolls off the top.
        assert frame.count(b"\r\n") == 23
        status = frame[frame.rindex(b"\x1b[0;7m") + 6:].split(b"\x1b[0m")[0]
        assert len(status) == 80 and status.rstrip().endswith(b"guest rows 1-23/25")
    drawn = [f for f in frames(out) if b"keyecho: type keys" in f]
    assert drawn and b"Ctrl-] q quits" in drawn[-1]       # how to quit is on screen
    assert b"hv synthetic BIOS" in drawn[-1]               # the first guest row is visible


@pytest.mark.parametrize("escape", [False, True])
def test_status_line_fits_80_columns_when_rows_are_hidden(escape):
    live = console.LiveConsole(None, b"\x1d")
    live._escape = escape                  # after Ctrl-]: the longer help text
    first, n = console.window(24, 0)
    text = live.status_line(first, n, 80)[len("\x1b[0;7m"):-len("\x1b[0m")]
    assert len(text) == 80 and text.rstrip().endswith("guest rows 1-23/25")


def test_live_display_refuses_a_too_small_terminal_and_runs_without_it():
    code, out = run_in_terminal(["run", "hello"], 60, 20)
    assert code == 0
    assert ENTER_ALT not in out
    text = out.decode()
    assert "hv: the terminal is 60x20; the live display needs at least 80x10" in text
    assert "Hello from hv!" in text


def test_sigterm_restores_the_terminal_and_keeps_output_and_message_apart():
    code, out = run_in_terminal(["run", "keyecho"], 80, 30, sigterm_after=b"keyecho: type")
    assert code == 128 + signal.SIGTERM
    # The alternate screen was left after it was last entered, with attributes reset and
    # the cursor shown, and nothing after it enters it again.
    assert out.count(ENTER_ALT) == 1 and out.rindex(LEAVE_ALT) > out.rindex(ENTER_ALT)
    after = out[out.rindex(LEAVE_ALT) - len(b"\x1b[0m\x1b[?25h"):]
    assert after.startswith(b"\x1b[0m\x1b[?25h" + LEAVE_ALT)
    text = after.decode(errors="replace")
    # keyecho's serial output ends mid-line ("... Esc quits"): hv's line starts a new one.
    assert re.search(r"Esc quits\r*\n+hv: terminated by SIGTERM\r\n$", text), text


def test_live_display_draws_the_guest_colours_from_the_vga_table(tmp_path):
    assert console.sgr(0x07) == "\x1b[0;37;40m"           # light grey on black
    assert console.sgr(0x1E) == "\x1b[0;93;44m"           # VGA blue (bit 0) is ANSI 4
    assert console.sgr(0x4C) == "\x1b[0;91;41m"           # VGA red (bit 2) is ANSI 1
    kernel = flat_kernel(tmp_path, """
        movl $0x1E481E48, 0xB8000      # "HH" yellow on blue, top left
        movl $0x4C214C21, 0xB8004      # "!!" bright red on red
        sti
    1:  hlt                            # idle until SIGTERM
        jmp 1b
    """)
    code, out = run_in_terminal(["run", "--kernel", str(kernel), "--kernel-format", "flat"],
                                80, 30, sigterm_after=b"HH")
    assert code == 128 + signal.SIGTERM
    assert (console.sgr(0x1E) + "HH" + console.sgr(0x4C) + "!!").encode() in out


def test_guest_output_and_closing_message_never_share_a_line_without_live_display():
    code, out = run_in_terminal(["run", "keyecho", "--no-live", "--timeout", "1"], 80, 30)
    assert code == 124
    assert re.search(rb"Esc quits\r*\n+hv: timeout after 1 s\r\n$", out), out


# -- --until, option errors, --kernel, hv list ---------------------------------------------

def test_until_that_never_matched_exits_1():
    r = hv("run", "hello", "--until", "no such text", "--no-live", "--timeout", "20")
    assert r.returncode == 1
    assert one_error_line(r).startswith("hv: guest halted before --until matched")


def test_run_help_gives_exit_124_for_timeout():
    out = hv("run", "--help").stdout
    assert re.search(r"--timeout SECONDS\s+stop after SECONDS, say so, exit 124", out)


def test_an_unknown_option_prints_the_subcommands_usage():
    r = hv("run", "hello", "--bogus")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("usage: hv run ")
    assert r.stderr.strip().endswith("hv run: error: unrecognized arguments: --bogus")


@pytest.mark.parametrize("args, env, message", [
    (["--mem", "5T"], {}, "hv: error: --mem: memory size '5T' is too large"),
    ([], {"HV_DISPATCH": "bogus"}, "hv: error: HV_DISPATCH='bogus': expected one of auto, c, python"),
    (["--input", "é"], {}, "hv: error: --input: no PC key types the character 'é'"),
], ids=["mem-5T", "HV_DISPATCH-bogus", "input-e-acute"])
def test_option_errors_are_one_line_naming_the_problem(args, env, message):
    r = hv("run", "hello", "--no-live", *args, env=dict(os.environ, **env))
    assert r.returncode == 2
    assert one_error_line(r).startswith(message)


def test_kernel_with_no_known_header_is_refused_unless_flat(tmp_path):
    kernel = tmp_path / "k.bin"
    kernel.write_bytes(b"\xfa\xf4" + bytes(510))            # cli; hlt
    r = hv("run", "--kernel", str(kernel), "--no-live")
    assert r.returncode == 2
    assert "neither an ELF nor a bzImage" in one_error_line(r) and "--kernel-format flat" in r.stderr
    r = hv("run", "--kernel", str(kernel), "--kernel-format", "flat", "--no-live", "--timeout", "20")
    assert r.returncode == 0, r.stderr
    assert one_error_line(r).startswith("hv: guest halted with interrupts disabled")


def test_list_gives_each_guest_one_line_in_aligned_columns():
    r = hv("list")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    header, rows = lines[0], [x for x in lines[1:] if x.strip()][:-1]     # last: the hint
    assert header.split() == ["NAME", "KIND", "DESCRIPTION"]
    kind_at, text_at = header.index("KIND"), header.index("DESCRIPTION")
    names = set(guests.names()) | set(guests.kernel_names())
    assert {row.split()[0] for row in rows} == names          # one line each, every guest
    for row in rows:
        assert row[kind_at - 2:kind_at] == "  " and row[kind_at] != " "
        assert row[kind_at:].split()[0] in ("disk", "kernel")
        assert row[text_at - 2:text_at] == "  " and row[text_at] != " "
