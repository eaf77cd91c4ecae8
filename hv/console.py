"""The live text display: the guest's 80x25 screen in the terminal, keys to the guest.

Like QEMU's curses display: the terminal goes to its alternate screen in raw
mode, the VGA text screen is redrawn when it changes (20 times a second at
most), and bytes typed on the terminal become scancodes. Ctrl-] quits.
"""
from __future__ import annotations

import os
import select
import sys
import termios
import threading
import tty

from hv.machine import Machine, RunResult

REDRAW_NS = 50_000_000
# VGA colour index -> ANSI colour number
ANSI = [0, 4, 2, 6, 1, 5, 3, 7]


class LiveConsole:
    def __init__(self, machine: Machine, quit_key: bytes) -> None:
        self.m = machine
        self.quit_key = quit_key
        self._last: list[str] | None = None
        self._stop = threading.Event()

    def _draw(self, now: int) -> None:
        m = self.m
        if not self._stop.is_set():
            m.clock.at(now + REDRAW_NS, self._draw)
        rows = m.vga.text_rows() if not m.vga.is_graphics() else ["(graphics mode)"] + [""] * 24
        row, col, visible = m.vga.cursor()
        if rows == self._last:
            out = f"\x1b[{row + 1};{col + 1}H"
        else:
            self._last = rows
            out = "\x1b[H" + "\r\n".join(r.ljust(80)[:80] for r in rows)
            out += f"\x1b[{row + 1};{col + 1}H"
        out += "\x1b[?25h" if visible else "\x1b[?25l"
        sys.stdout.write(out)
        sys.stdout.flush()

    def _reader(self, fd: int) -> None:
        from hv.devices.keymap import terminal_to_keys
        while not self._stop.is_set():
            r, _, _ = select.select([fd], [], [], 0.1)
            if not r:
                continue
            data = os.read(fd, 64)
            if not data or self.quit_key in data:
                self.m.finish(0, "quit from the live display (Ctrl-])")
                return
            self.m.type_keys([ev for k in terminal_to_keys(data) for ev in k.events])

    def run(self) -> RunResult:
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        sys.stdout.write("\x1b[?1049h\x1b[2J")
        try:
            tty.setraw(fd)
            reader = threading.Thread(target=self._reader, args=(fd,), daemon=True)
            reader.start()
            self.m.clock.after(0, self._draw)
            result = self.m.run()
        finally:
            self._stop.set()
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            sys.stdout.write("\x1b[?25h\x1b[?1049l")
            sys.stdout.flush()
        return result
