"""Helpers for the debugging tests (test_gdbstub, test_monitor, test_tutorial): an ``hv run``
with its gdb stub in a subprocess, gdb in batch mode against it, and a small client of the
GDB remote protocol."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time

from tests import hvcmd

GDB = shutil.which("gdb")
NO_GDB = "gdb is not installed (apt-get install gdb)"
LISTENING = re.compile(r"gdb stub listening on [^ ]+:(\d+)")


class HvProcess:
    """``hv run ARGS`` in the background; ``port`` is its gdb stub's once it listens."""

    def __init__(self, args: list[str], stdin=subprocess.DEVNULL, cwd: str | None = None,
                 env: dict | None = None) -> None:
        kw = {"cwd": cwd} if cwd else {}
        self.proc = hvcmd.popen(["run", *args], stdin=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, **kw)
        self.stdout_chunks: list[bytes] = []
        self.stderr_lines: list[str] = []
        self._port_seen = threading.Event()
        self.port: int | None = None
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._readers:
            t.start()

    def _read_stdout(self) -> None:
        for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):
            self.stdout_chunks.append(chunk)

    def _read_stderr(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.stderr_lines.append(line)
            found = LISTENING.search(line)
            if found:
                self.port = int(found.group(1))
                self._port_seen.set()
        self._port_seen.set()

    def wait_port(self, timeout: float = 30) -> int:
        assert self._port_seen.wait(timeout), "hv did not start its gdb stub"
        assert self.port is not None, "hv ended before listening: " + self.stderr()
        return self.port

    def wait(self, timeout: float = 60) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("hv did not end: " + self.stderr()) from None
        for t in self._readers:
            t.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stdout(self) -> str:
        return b"".join(self.stdout_chunks).decode("utf-8", "replace")

    def stderr(self) -> str:
        return "".join(self.stderr_lines)


MARK = "@@hv-gdb-command@@"


def run_gdb(port: int, commands: list[str], timeout: float = 120,
            connect: bool = True) -> tuple[list[str], str]:
    """gdb in batch mode: ``target remote :PORT`` then ``commands``. Returns the output of
    each command (a list, in order) and gdb's whole output."""
    args = [GDB, "-q", "-nx", "-batch"]
    if connect:
        commands = [f"target remote :{port}", *commands]
    for command in commands:
        args += ["-ex", f"echo {MARK}\\n", "-ex", command]
    done = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout,
                          env=dict(os.environ, TERM="dumb", COLUMNS="200"))
    text = done.stdout.decode("utf-8", "replace")
    parts = text.split(MARK + "\n")
    outputs = parts[1:]
    assert len(outputs) == len(commands), text
    if connect:
        outputs = outputs[1:]
    return outputs, text


# -- a GDB remote protocol client ----------------------------------------------------------

def checksum(body: bytes) -> bytes:
    return b"%02x" % (sum(body) & 0xFF)


def frame(body: bytes) -> bytes:
    return b"$" + body + b"#" + checksum(body)


class RspClient:
    """Speaks the remote protocol over TCP, as gdb does, acknowledging what it receives."""

    def __init__(self, port: int, timeout: float = 30) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as gdb does
        self.buf = bytearray()
        self.ack = True

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the stub closed the connection")
        self.buf += data

    def read_byte(self) -> bytes:
        while not self.buf:
            self._fill()
        b = bytes(self.buf[:1])
        del self.buf[:1]
        return b

    def packet(self) -> bytes:
        """The next packet's body (acks before it are skipped)."""
        while True:
            while self.buf[:1] in (b"+", b"-"):
                del self.buf[:1]
            start = self.buf.find(b"$")
            end = self.buf.find(b"#", start + 1) if start >= 0 else -1
            if start >= 0 and end >= 0 and len(self.buf) >= end + 3:
                body = bytes(self.buf[start + 1:end])
                assert bytes(self.buf[end + 1:end + 3]) == checksum(body), self.buf
                del self.buf[:end + 3]
                if self.ack:
                    self.raw(b"+")
                return body
            self._fill()

    def send(self, body: bytes) -> None:
        self.raw(frame(body))

    def ask(self, body: bytes) -> bytes:
        self.send(body)
        return self.packet()

    def ask_console(self, body: bytes) -> tuple[str, bytes]:
        """A command answered by O (console output) packets and a final reply."""
        self.send(body)
        out = []
        while True:
            reply = self.packet()
            if reply.startswith(b"O") and reply != b"OK":
                out.append(bytes.fromhex(reply[1:].decode()).decode())
                continue
            return "".join(out), reply

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def wait_for(predicate, timeout: float = 30, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- a program on a terminal ----------------------------------------------------------------

class PtyProgram:
    """A program whose stdin, stdout and stderr are a pseudo-terminal, as a user's
    interactive gdb or monitor are: prompts, echo and messages exactly as shown to them."""

    def __init__(self, argv: list[str], cwd: str | None = None, env: dict | None = None,
                 columns: int = 200, rows: int = 60) -> None:
        import fcntl
        import pty
        import struct
        import termios
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                     env=env, start_new_session=True)
        os.close(slave)
        self.closed = False

    def read_until(self, prompt: bytes | None, timeout: float = 120) -> str:
        """Output until it ends with ``prompt`` (None: until the program exits)."""
        import select
        buf = b""
        end = time.monotonic() + timeout
        while prompt is None or not buf.endswith(prompt):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {prompt!r} after: {buf.decode('utf-8', 'replace')}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:              # EIO: the program closed the terminal
                chunk = b""
            if not chunk:
                if prompt is not None:
                    raise AssertionError("the program ended: " + buf.decode("utf-8", "replace"))
                break
            buf += chunk
        return buf.decode("utf-8", "replace").replace("\r\n", "\n")

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, text: str, timeout: float = 60) -> str:
        """Output until ``text`` appears in it (escape sequences and all)."""
        import select
        buf = b""
        end = time.monotonic() + timeout
        while text.encode() not in buf:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} in: {buf.decode('utf-8', 'replace')[-2000:]}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError("the program ended: " + buf.decode("utf-8", "replace"))
                buf += chunk
        return buf.decode("utf-8", "replace")

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait(30)
        if not self.closed:
            os.close(self.master)
            self.closed = True
        return code
