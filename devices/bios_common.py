"""What both BIOS styles agree on: the BIOS data area layout and the memory map.

Offsets are physical addresses in segment 0x40 (the BDA) as the IBM PC/AT
Technical Reference and Ralf Brown's list name them.
"""
from __future__ import annotations

from hv.memory import HIGH_BASE, KiB

BDA = 0x400
COM1_BASE = 0x400          # word[4] serial port bases
LPT1_BASE = 0x408
EBDA_SEGMENT = 0x40E
EQUIPMENT = 0x410
MEMORY_KB = 0x413
KBD_FLAGS1 = 0x417         # shift flags: RShift LShift Ctrl Alt Scroll Num Caps Ins
KBD_FLAGS2 = 0x418
KBD_HEAD = 0x41A           # offsets into segment 0x40
KBD_TAIL = 0x41C
KBD_BUFFER = 0x41E         # 16 words, offset 0x1E..0x3D
KBD_BUFFER_END = 0x43E
DISKETTE_RECAL = 0x43E
DISKETTE_MOTOR = 0x43F
DISKETTE_STATUS = 0x441    # last INT 13h status for floppies
VIDEO_MODE = 0x449
VIDEO_COLUMNS = 0x44A
VIDEO_PAGE_SIZE = 0x44C
VIDEO_PAGE_OFFSET = 0x44E
CURSOR_POS = 0x450         # 8 words: (row << 8) | column
CURSOR_SHAPE = 0x460       # word: (start << 8) | end
ACTIVE_PAGE = 0x462
CRTC_BASE = 0x463
CRT_MODE_REG = 0x465
CRT_PALETTE = 0x466
TICKS = 0x46C              # dword: ticks since midnight
MIDNIGHT = 0x470
BREAK_FLAG = 0x471
RESET_FLAG = 0x472
HD_STATUS = 0x474          # last INT 13h status for hard disks
HD_COUNT = 0x475
KBD_BUFFER_START = 0x480   # word: buffer start offset (0x1E)
KBD_BUFFER_STOP = 0x482    # word: buffer end offset (0x3E)
VIDEO_ROWS = 0x484         # rows - 1
CHAR_HEIGHT = 0x485
KBD_FLAGS3 = 0x496
KBD_LEDS = 0x497

EBDA_BASE = 0x9F800        # the last 2 KiB below 640 KiB (the emulated BIOS keeps a bounce
                           # buffer and its C stack there; both styles report the same size)
TICKS_PER_DAY = 0x1800B0   # 18.2 Hz * 86400 s

E820_RAM, E820_RESERVED = 1, 2


def base_memory_kb(mem_size: int) -> int:
    """Conventional memory the BIOS reports (INT 12h): up to 638 KiB, the EBDA below 640K."""
    return min(mem_size, EBDA_BASE) // KiB


def e820_map(mem_size: int) -> list[tuple[int, int, int]]:
    """(base, length, type): RAM below the EBDA, the EBDA, the BIOS ROM, RAM above 1 MiB."""
    low = min(mem_size, EBDA_BASE)
    entries = [(0, low, E820_RAM)]
    if mem_size >= EBDA_BASE:
        entries.append((EBDA_BASE, 0xA0000 - EBDA_BASE, E820_RESERVED))
    entries.append((0xF0000, 0x10000, E820_RESERVED))
    if mem_size > HIGH_BASE:
        entries.append((HIGH_BASE, mem_size - HIGH_BASE, E820_RAM))
    return entries


def extended_memory_kb(mem_size: int) -> int:
    """INT 15h AH=88h / CMOS 0x17: KiB above 1 MiB, capped at 0xFFFF (64 MiB)."""
    return min(max(mem_size - HIGH_BASE, 0) // KiB, 0xFFFF)
