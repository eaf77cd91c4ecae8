"""The live text display: the guest's 80x25 screen in the terminal, keys to the guest.

Like QEMU's curses display: the terminal goes to its alternate screen in raw mode, the
VGA text screen is redrawn in its colours when it changes (20 times a second at most),
and bytes typed on the terminal become scancodes. A status line at the bottom says how
to quit (Ctrl-] q) and how to reach the monitor (Ctrl-] m: the screen becomes the
monitor's prompt, hv/debug/monitor.py, and Ctrl-] returns to the guest; the guest keeps
running meanwhile). Ctrl-] Ctrl-] types Ctrl-] in the guest, Ctrl-] and any other key
does nothing. A terminal with fewer than 26 rows shows the 24 (or fewer) rows around
the cursor and says which; a terminal narrower than 80 columns or lower than
MIN_ROWS is refused before anything is drawn (the run continues without the display).
SIGTERM and SIGHUP end the run, and the terminal is restored whatever ends it.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import termios
import threading
import tty

from hv.machine import Machine, RunResult

REDRAW_NS = 50_000_000
TEXT_ROWS, TEXT_COLS = 25, 80
MIN_ROWS = 10                   # fewer rows than this is not worth a display
# VGA colour index (0-7) -> ANSI colour number: VGA has blue in bit 0, ANSI red.
ANSI = [0, 4, 2, 6, 1, 5, 3, 7]


def terminal_size(fd: int = 1) -> tuple[int, int]:
    """(columns, rows) of the terminal on ``fd``, (0, 0) if it is not one."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 0, 0
    return size.columns, size.lines


def too_small(columns: int, rows: int) -> str | None:
    """Why a terminal cannot hold the display, or None if it can."""
    if columns < TEXT_COLS or rows < MIN_ROWS:
        return (f"the terminal is {columns}x{rows}; the live display needs at least "
                f"{TEXT_COLS}x{MIN_ROWS} (showing serial output instead)")
    return None


def sgr(attr: int) -> str:
    """The ANSI select-graphic-rendition sequence for a VGA text attribute
    (bright foregrounds as the 90-97 colours; the blink bit as a bright background is
    not shown: the default VGA mode uses it for blinking)."""
    fg, bg = attr & 0x0F, (attr >> 4) & 0x07
    fg_code = (90 if fg & 8 else 30) + ANSI[fg & 7]
    return f"\x1b[0;{fg_code};{40 + ANSI[bg]}m"


def render_rows(cells: list[tuple[str, bytes]]) -> list[str]:
    """Text rows with colour changes only where the attribute changes."""
    out = []
    for chars, attrs in cells:
        line, last = [], None
        for ch, a in zip(chars.ljust(TEXT_COLS)[:TEXT_COLS], attrs.ljust(TEXT_COLS, b"\x07")):
            if a != last:
                line.append(sgr(a))
                last = a
            line.append(ch)
        out.append("".join(line) + "\x1b[0m")
    return out


def window(rows: int, cursor_row: int) -> tuple[int, int]:
    """The guest rows [first, first + n) a terminal of ``rows`` rows shows (one row
    is the status line): all 25 when they fit, else the part around the cursor."""
    n = min(TEXT_ROWS, rows - 1)
    first = min(max(0, cursor_row - n + 1), TEXT_ROWS - n) if n < TEXT_ROWS else 0
    return first, n


class LiveConsole:
    def __init__(self, machine: Machine, quit_key: bytes, out=None) -> None:
        self.m = machine
        self.quit_key = quit_key
        self.out = out or sys.stdout
        self._last: tuple | None = None
        self._stop = threading.Event()
        self._escape = False                  # Ctrl-] typed: the next key is a command
        self._monitor = None                  # TerminalMonitor while the monitor is shown
        self._monitor_core = None             # the Monitor behind it, made on first use
        self._out_lock = threading.Lock()     # the screen (vCPU thread) vs the monitor (reader)

    def status_line(self, first: int, n: int, columns: int) -> str:
        text = (" hv: Ctrl-] then m: monitor, q: quit, Ctrl-]: type Ctrl-]" if self._escape
                else " hv: Ctrl-] q quits, Ctrl-] m monitor")
        if n < TEXT_ROWS:
            # Short enough that the whole line fits 80 columns in either state.
            text += f" | guest rows {first + 1}-{first + n}/{TEXT_ROWS}"
        return "\x1b[0;7m" + text.ljust(columns)[:columns] + "\x1b[0m"

    def _draw(self, now: int) -> None:
        if not self._stop.is_set():
            self.m.clock.at(now + REDRAW_NS, self._draw)
        with self._out_lock:
            if self._monitor is None:          # else the monitor owns the terminal
                self._paint()

    def _paint(self) -> None:
        m = self.m
        columns, rows = terminal_size(self.out.fileno())
        row, col, visible = m.vga.cursor()
        first, n = window(rows, row)
        if m.vga.is_graphics():
            cells = [("(graphics mode: see --screenshot)", b"\x07" * TEXT_COLS)] + \
                    [("", b"")] * (TEXT_ROWS - 1)
        else:
            cells = m.vga.text_cells()
        state = (tuple(cells), first, n, columns)
        if state != self._last:
            self._last = state
            lines = render_rows(cells[first:first + n])
            out = "\x1b[H" + "\r\n".join(lines) + "\r\n" + self.status_line(first, n, columns)
        else:
            out = ""
        if first <= row < first + n:
            out += f"\x1b[{row - first + 1};{col + 1}H" + ("\x1b[?25h" if visible else "\x1b[?25l")
        else:
            out += "\x1b[?25l"
        self.out.write(out)
        self.out.flush()

    def _reader(self, fd: int) -> None:
        from hv.devices.keymap import terminal_to_keys
        while not self._stop.is_set():
            r, _, _ = select.select([fd], [], [], 0.1)
            if not r:
                continue
            data = os.read(fd, 64)
            if not data:
                self.m.finish(0, "quit from the live display (end of input)")
                return
            if self._monitor is not None:
                self._to_monitor(data)
                continue
            to_guest = self._keys(data)
            if to_guest is None:
                return
            if to_guest:
                self.m.type_keys([ev for k in terminal_to_keys(to_guest) for ev in k.events])

    def _keys(self, data: bytes) -> bytes | None:
        """Take the Ctrl-] commands out of ``data``; what is left goes to the guest.
        None once the user quit."""
        out = bytearray()
        for i, b in enumerate(data):
            if self._escape:
                self._escape = False
                self._last = None                 # the status line changes back
                if b in b"qQxX":
                    self.m.finish(0, "quit from the live display (Ctrl-] q)")
                    return None
                if b in b"mMcC":
                    from hv.debug.monitor import Monitor, TerminalMonitor
                    if self._monitor_core is None:
                        self._monitor_core = Monitor(self.m)
                    with self._out_lock:
                        self._monitor = TerminalMonitor(self._monitor_core)
                        self._write(self._monitor.open())
                    self._to_monitor(data[i + 1:])     # typed ahead: the monitor's
                    return bytes(out)
                if b == self.quit_key[0]:
                    out.append(b)                 # Ctrl-] Ctrl-]: the guest gets one
            elif bytes([b]) == self.quit_key:
                self._escape = True
                self._last = None                 # show what the next key does
            else:
                out.append(b)
        return bytes(out)

    def _to_monitor(self, data: bytes) -> None:
        text, leave = self._monitor.feed(data)     # runs the command: no lock held
        with self._out_lock:
            self._write(text)
            if leave:
                self._monitor = None
                self._last = None                  # the whole screen again
        if leave:
            # Repaint now, on the vCPU thread: the timer does not run while the guest is
            # stopped (the monitor's stop), and the monitor's text would stay.
            def repaint(m) -> None:
                with self._out_lock:
                    if self._monitor is None:
                        self._paint()
            try:
                self.m.debugger.request(repaint)
            except (TimeoutError, RuntimeError):
                pass

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()

    def run(self) -> RunResult:
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        previous = {}

        def terminated(signum, frame) -> None:
            self.m.finish(128 + signum, f"terminated by {signal.Signals(signum).name}")
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, terminated)
        self.out.write("\x1b[?1049h\x1b[2J")
        try:
            tty.setraw(fd)
            reader = threading.Thread(target=self._reader, args=(fd,), daemon=True)
            reader.start()
            self.m.clock.after(0, self._draw)
            result = self.m.run()
        finally:
            self._stop.set()
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            self.out.write("\x1b[0m\x1b[?25h\x1b[?1049l")
            self.out.flush()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return result
