"""docs/tutorial.md cannot go stale: every command in it is run again here and its output
compared with the one the page shows.

The page marks each checked block with an HTML comment (invisible when rendered):

* ``<!-- tutorial: run -->`` -- a console block of ``$ hv ...`` commands, each run to its end;
* ``<!-- tutorial: start NAME -->`` -- ``$ hv run ... -s -S`` in a first terminal; the page
  shows the first lines it prints;
* ``<!-- tutorial: gdb NAME -->`` -- gdb in a second terminal, attached to session NAME
  (``$ gdb -q`` then ``(gdb) `` commands; several blocks make one gdb session);
* ``<!-- tutorial: end NAME -->`` -- all that the first terminal shows once the run ended;
* ``<!-- tutorial: monitor -->`` -- ``$ hv run ... --monitor stdio`` and ``(hv) `` commands.

gdb and the monitor run on a pseudo-terminal, so prompts, echo and messages are what a
student sees. Only what is inherently variable is normalised: the TCP port (the page says
``-s``, port 1234; the test takes a free one) and hv's version in the monitor's banner.
Everything else is exact: the page's runs use ``--clock virtual``, which makes a run repeat
exactly (time is the guest's work, not the host's).

``HV_TUTORIAL_UPDATE=1 pytest tests/test_tutorial.py`` writes the regenerated outputs into
the page (review the diff before committing it).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import hvcmd
from tests.debug_session import GDB, NO_GDB, PtyProgram

DOC = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
BLOCK = re.compile(r"<!-- tutorial: (\w+)(?: ([\w-]+))? -->\n```(\w*)\n(.*?)```", re.S)
FENCE = re.compile(r"^```(\w*)$", re.M)
LISTENING = re.compile(r"gdb stub listening on [^ ]+:(\d+)")
DOC_PORT = 1234
GDB_ARGS = ["-nx", "-iex", "set pagination off", "-iex", "set style enabled off",
            "-iex", "set width 0"]


@dataclass
class Block:
    kind: str
    name: str | None
    lang: str
    text: str
    start: int                  # where ``text`` is in the page
    end: int
    actual: str | None = None


@dataclass
class Session:
    name: str
    start: Block | None = None
    gdb: list[Block] = field(default_factory=list)
    end: Block | None = None


def parse(doc: str) -> list[Block]:
    return [Block(m.group(1), m.group(2), m.group(3), m.group(4), m.start(4), m.end(4))
            for m in BLOCK.finditer(doc)]


def normalise(text: str) -> str:
    return re.sub(r"hv \S+ monitor - type", "hv VERSION monitor - type", text)


def hv_args(command_line: str) -> list[str]:
    words = shlex.split(command_line)
    assert words[0] == "hv", f"the tutorial runs only hv and gdb: {command_line!r}"
    return words[1:]


def run_hv(args: list[str]) -> str:
    """``hv ARGS`` to its end, stdout and stderr interleaved as on a terminal (which shows
    the guest's CR LF as one line end)."""
    done = hvcmd.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, timeout=120)
    return done.stdout.decode("utf-8", "replace").replace("\r\n", "\n")


# -- the block kinds ---------------------------------------------------------------------------

def regenerate_run(block: Block) -> str:
    out = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            out.append(line + "\n" + run_hv(hv_args(line[2:])))
    return "".join(out)


def regenerate_monitor(block: Block) -> str:
    lines = block.text.splitlines()
    assert lines[0].startswith("$ hv run ") and "--monitor stdio" in lines[0]
    commands = [ln[len("(hv) "):] for ln in lines[1:]
                if ln.startswith("(hv) ") and not ln.startswith("(hv) hv: ")]
    program = PtyProgram([*hvcmd.HV, *hv_args(lines[0][2:])], cwd=hvcmd.OUTSIDE)
    try:
        transcript = lines[0] + "\n" + program.read_until(b"(hv) ")
        for command in commands:
            program.send(command)
            last = command is commands[-1]
            transcript += program.read_until(None if last else b"(hv) ")
    finally:
        program.close()
    return transcript


class Background:
    """The first terminal: ``hv run ... -s -S`` with its output kept."""

    def __init__(self, block: Block) -> None:
        (line,) = [ln for ln in block.text.splitlines() if ln.startswith("$ ")]
        args = hv_args(line[2:])
        assert "-s" in args, "a session's hv waits for gdb: -s"
        args[args.index("-s"):args.index("-s") + 1] = ["--gdb", "tcp::0"]
        self.command = line
        self.proc = hvcmd.popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        self.output = b""
        self.port: int | None = None
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):
            self.output += chunk
            found = LISTENING.search(self.output.decode("utf-8", "replace"))
            if found and self.port is None:
                self.port = int(found.group(1))
                self._listening.set()
        self._listening.set()

    def wait_port(self) -> int:
        assert self._listening.wait(60) and self.port is not None, self.text()
        return self.port

    def finish(self, timeout: float = 120) -> str:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("hv did not end after the gdb session: " + self.text())
        self._reader.join(10)
        return self.text()

    def text(self) -> str:
        text = self.output.decode("utf-8", "replace").replace("\r\n", "\n")
        return text.replace(f":{self.port}", f":{DOC_PORT}") if self.port else text


def gdb_commands(blocks: list[Block]) -> list[tuple[Block, list[str]]]:
    out = []
    for block in blocks:
        commands = []
        for line in block.text.splitlines():
            if line.startswith("(gdb) "):
                commands.append(line[len("(gdb) "):])
            elif line.startswith("$ "):
                assert line == "$ gdb -q", f"start gdb as the page says: {line!r}"
        out.append((block, commands))
    return out


def regenerate_session(session: Session) -> None:
    assert session.start is not None, f"session {session.name}: no start block"
    hv = Background(session.start)
    port = hv.wait_port()
    gdb = PtyProgram([GDB, "-q", *GDB_ARGS], cwd=hvcmd.OUTSIDE,
                     env=dict(os.environ, TERM="dumb"))
    try:
        prompt = b"(gdb) "
        head = gdb.read_until(prompt)
        for block, commands in gdb_commands(session.gdb):
            text = ("$ gdb -q\n" + head) if block is session.gdb[0] else "(gdb) "
            for command in commands:
                gdb.send(command.replace(f":{DOC_PORT}", f":{port}"))
                text += gdb.read_until(prompt)
            block.actual = text[:-len("(gdb) ")].replace(f":{port}", f":{DOC_PORT}")
    finally:
        gdb.close()                    # gdb gone: the stub detaches and the guest runs on
    full = hv.finish()
    lines = full.splitlines(keepends=True)
    upto = next(i for i, line in enumerate(lines) if LISTENING.search(line)) + 1
    session.start.actual = hv.command + "\n" + "".join(lines[:upto])     # before gdb came
    if session.end is not None:
        session.end.actual = full


def regenerate(blocks: list[Block]) -> None:
    sessions: dict[str, Session] = {}
    for block in blocks:
        if block.kind == "run":
            block.actual = regenerate_run(block)
        elif block.kind == "monitor":
            block.actual = regenerate_monitor(block)
        elif block.kind in ("start", "gdb", "end"):
            s = sessions.setdefault(block.name, Session(block.name))
            if block.kind == "start":
                s.start = block
            elif block.kind == "gdb":
                s.gdb.append(block)
            else:
                s.end = block
        else:
            raise AssertionError(f"unknown tutorial block kind {block.kind!r}")
    for session in sessions.values():
        regenerate_session(session)


# -- the tests ----------------------------------------------------------------------------------

def test_every_console_and_gdb_block_of_the_tutorial_is_checked():
    doc = DOC.read_text()
    fences = [m.group(1) for i, m in enumerate(FENCE.finditer(doc)) if i % 2 == 0]
    marked = parse(doc)
    assert sum(1 for lang in fences if lang in ("console", "gdb")) == len(marked)
    kinds = {b.kind for b in marked}
    assert {"run", "start", "gdb", "end", "monitor"} <= kinds


@pytest.mark.slow
@pytest.mark.skipif(GDB is None, reason=NO_GDB)
def test_the_tutorial_shows_what_its_commands_print():
    doc = DOC.read_text()
    blocks = parse(doc)
    regenerate(blocks)
    if os.environ.get("HV_TUTORIAL_UPDATE"):
        for block in sorted(blocks, key=lambda b: b.start, reverse=True):
            doc = doc[:block.start] + block.actual + doc[block.end:]
        DOC.write_text(doc)
        print(f"rewrote {DOC}", file=sys.stderr)
        return
    for block in blocks:
        assert normalise(block.actual) == normalise(block.text), \
            f"docs/tutorial.md, {block.kind} {block.name or ''} block is stale"
