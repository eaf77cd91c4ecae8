"""IBM VGA: the register file at ports 0x3C0-0x3DF and a reader of the screen.

Video memory (0xA0000-0xBFFFF) is plain guest RAM here, so only the modes whose
CPU view *is* the picture are shown: 80x25 text (odd/even, character and
attribute bytes interleaved at 0xB8000) and mode 13h (chain-4, one byte a pixel
at 0xA0000). The planar write modes (GR00-GR08 logic ops, map mask, latches)
are stored but do not act on memory.

Everything the screen readers show is derived from the registers a guest
programs, never from a mode number kept on the side: GR06 bit 0 says text or
graphics, GR06 bits 3-2 where the frame buffer is, SR04 chain-4 / GR05 bit 6
whether pixels are bytes, CR0C/CR0D where the screen starts, CR13 its pitch,
the attribute controller and the DAC its colours.

Register and bit names follow the IBM VGA Technical Reference (SR = sequencer,
GR = graphics controller, AR = attribute controller, CR = CRT controller).
"""
from __future__ import annotations

import codecs
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Callable

from hv.devices import state as st
from hv.devices.base import Device, PortRange
from hv.devices.vga_font import FONT8X16
from hv.clock import NS_PER_S, Clock

PORT_BASE = 0x3C0
VRAM_BASE = 0xA0000          # guest physical address of vram[0]
VRAM_SIZE = 0x20000          # 0xA0000-0xBFFFF
TEXT_COLS, TEXT_ROWS = 80, 25
GLYPH_HEIGHT = 16            # 720x400 text: 25 rows of 16 scan lines
GFX_WIDTH, GFX_HEIGHT = 320, 200
PLANAR_WIDTH, PLANAR_HEIGHT = 640, 480   # shown blank: planar modes are not drawn


class Port(IntEnum):
    """Offsets from 0x3C0 (port = 0x3C0 + offset)."""

    AR_INDEX = 0x00            # 3C0: index and data writes, through a flip-flop
    AR_DATA_READ = 0x01        # 3C1
    MISC_OUTPUT_WRITE = 0x02   # 3C2 write
    INPUT_STATUS_0 = 0x02      # 3C2 read
    VIDEO_SUBSYSTEM_ENABLE = 0x03
    SR_INDEX = 0x04            # 3C4
    SR_DATA = 0x05             # 3C5
    DAC_PEL_MASK = 0x06        # 3C6
    DAC_READ_INDEX = 0x07      # 3C7 write
    DAC_STATE = 0x07           # 3C7 read
    DAC_WRITE_INDEX = 0x08     # 3C8
    DAC_DATA = 0x09            # 3C9
    FEATURE_CONTROL_READ = 0x0A   # 3CA
    MISC_OUTPUT_READ = 0x0C    # 3CC
    GR_INDEX = 0x0E            # 3CE
    GR_DATA = 0x0F             # 3CF
    CR_INDEX = 0x14            # 3D4 (colour addressing)
    CR_DATA = 0x15             # 3D5
    INPUT_STATUS_1 = 0x1A      # 3DA read
    FEATURE_CONTROL_WRITE = 0x1A  # 3DA write


class SR(IntEnum):
    RESET = 0x00
    CLOCKING_MODE = 0x01
    MAP_MASK = 0x02
    CHARACTER_MAP_SELECT = 0x03
    MEMORY_MODE = 0x04


class GR(IntEnum):
    SET_RESET = 0x00
    ENABLE_SET_RESET = 0x01
    COLOR_COMPARE = 0x02
    DATA_ROTATE = 0x03
    READ_MAP_SELECT = 0x04
    GRAPHICS_MODE = 0x05
    MISCELLANEOUS = 0x06
    COLOR_DONT_CARE = 0x07
    BIT_MASK = 0x08


class AR(IntEnum):
    PALETTE_0 = 0x00           # AR00-AR0F: the 16 internal palette registers
    MODE_CONTROL = 0x10
    OVERSCAN_COLOR = 0x11
    COLOR_PLANE_ENABLE = 0x12
    HORIZONTAL_PEL_PANNING = 0x13
    COLOR_SELECT = 0x14


class CR(IntEnum):
    HORIZONTAL_TOTAL = 0x00
    HORIZONTAL_DISPLAY_END = 0x01
    START_HORIZONTAL_BLANKING = 0x02
    END_HORIZONTAL_BLANKING = 0x03
    START_HORIZONTAL_RETRACE = 0x04
    END_HORIZONTAL_RETRACE = 0x05
    VERTICAL_TOTAL = 0x06
    OVERFLOW = 0x07
    PRESET_ROW_SCAN = 0x08
    MAXIMUM_SCAN_LINE = 0x09
    CURSOR_START = 0x0A
    CURSOR_END = 0x0B
    START_ADDRESS_HIGH = 0x0C
    START_ADDRESS_LOW = 0x0D
    CURSOR_LOCATION_HIGH = 0x0E
    CURSOR_LOCATION_LOW = 0x0F
    VERTICAL_RETRACE_START = 0x10
    VERTICAL_RETRACE_END = 0x11
    VERTICAL_DISPLAY_END = 0x12
    OFFSET = 0x13
    UNDERLINE_LOCATION = 0x14
    START_VERTICAL_BLANKING = 0x15
    END_VERTICAL_BLANKING = 0x16
    CRTC_MODE_CONTROL = 0x17
    LINE_COMPARE = 0x18


# Index registers keep only the bits the VGA decodes.
SR_INDEX_MASK = 0x07
GR_INDEX_MASK = 0x0F
CR_INDEX_MASK = 0x1F
AR_INDEX_MASK = 0x1F


class MiscOutput(IntFlag):
    IO_ADDRESS_SELECT = 0x01   # 1: CRTC at 3Dx (colour), 0: at 3Bx (mono, not ours)
    RAM_ENABLE = 0x02
    CLOCK_SELECT = 0x0C
    ODD_EVEN_PAGE = 0x20
    HSYNC_POLARITY = 0x40
    VSYNC_POLARITY = 0x80


class InputStatus1(IntFlag):
    DISPLAY_DISABLED = 0x01    # in horizontal or vertical blanking
    VERTICAL_RETRACE = 0x08


class ClockingMode(IntFlag):
    DOT_8 = 0x01               # 8-dot characters (else 9)
    SCREEN_OFF = 0x20


class MemoryMode(IntFlag):
    EXTENDED_MEMORY = 0x02
    ODD_EVEN_DISABLE = 0x04
    CHAIN_4 = 0x08


class GraphicsMode(IntFlag):
    SHIFT_256 = 0x40           # 256-colour shift mode (mode 13h)


class Miscellaneous(IntFlag):
    GRAPHICS = 0x01            # alphanumeric mode disable
    CHAIN_ODD_EVEN = 0x02
    MEMORY_MAP = 0x0C


class AttrModeControl(IntFlag):
    GRAPHICS = 0x01
    LINE_GRAPHICS = 0x04       # 9th column of 0xC0-0xDF repeats the 8th
    BLINK = 0x08               # attribute bit 7 blinks instead of bright background
    COLOR_8BIT = 0x40
    P54_SELECT = 0x80          # palette bits 5-4 come from AR14


AR_INDEX_PAS = 0x20            # palette address source: 1 = the display owns the palette
CURSOR_DISABLE = 0x20          # CR0A bit 5
CR11_PROTECT = 0x80            # CR11 bit 7 write-protects CR00-CR07 (CR07 bit 4 excepted)
CR07_LINE_COMPARE_8 = 0x10

# GR06 memory map select -> (offset in vram, window size)
MEMORY_MAPS = {0: (0x00000, 0x20000), 1: (0x00000, 0x10000),
               2: (0x10000, 0x08000), 3: (0x18000, 0x08000)}

DAC_STATE_WRITE, DAC_STATE_READ = 0x00, 0x03

# Vertical timing of the 70 Hz modes (03h, 13h); retrace polled on 3DA bit 3.
FRAME_NS = NS_PER_S // 70
VBLANK_NS = 1_200_000
LINE_NS = 31_778               # 31.47 kHz horizontal rate
HBLANK_NS = LINE_NS // 5


# ---------------------------------------------------------------- palettes

def _ega_palette() -> bytes:
    """The 64 EGA colours (6-bit DAC units): bits 2,1,0 = R,G,B at 2/3,
    bits 5,4,3 = r,g,b at 1/3. Text modes point AR00-AR0F into it."""
    out = bytearray()
    for i in range(64):
        for hi, lo in ((2, 5), (1, 4), (0, 3)):
            out.append(0x2A * ((i >> hi) & 1) + 0x15 * ((i >> lo) & 1))
    return bytes(out)


# First 16: the CGA colours (colour 6 is brown, green halved).
_CGA_16 = ((0, 0, 42), (0, 42, 0), (0, 42, 42), (42, 0, 0), (42, 0, 42), (42, 21, 0),
           (42, 42, 42), (21, 21, 21), (21, 21, 63), (21, 63, 21), (21, 63, 63),
           (63, 21, 21), (63, 21, 63), (63, 63, 21), (63, 63, 63))
_GREYS = (0, 5, 8, 11, 14, 17, 20, 24, 28, 32, 36, 40, 45, 50, 56, 63)
# Nine hue wheels of 24 colours: (high, low, three intermediate steps), for three
# intensities x three saturations.
_HUE_BLOCKS = ((0x3F, 0x00, (0x10, 0x1F, 0x2F)), (0x3F, 0x1F, (0x27, 0x2F, 0x37)),
               (0x3F, 0x2D, (0x31, 0x36, 0x3A)), (0x1C, 0x00, (0x07, 0x0E, 0x15)),
               (0x1C, 0x0E, (0x11, 0x15, 0x18)), (0x1C, 0x14, (0x16, 0x18, 0x1A)),
               (0x10, 0x00, (0x04, 0x08, 0x0C)), (0x10, 0x08, (0x0A, 0x0C, 0x0E)),
               (0x10, 0x0B, (0x0C, 0x0D, 0x0F)))


def _default_256_palette() -> bytes:
    """The standard VGA BIOS mode-13h palette (IBM; identical to SeaBIOS
    vgatables.c ``palette3``): CGA colours, 16 greys, 9 x 24 hues, 8 black."""
    pal = [(0, 0, 0), *_CGA_16] + [(g, g, g) for g in _GREYS]
    for hi, lo, (a, b, c) in _HUE_BLOCKS:
        up, down = (lo, a, b, c), (hi, c, b, a)
        # blue -> magenta -> red -> yellow -> green -> cyan -> (blue)
        pal += [(v, lo, hi) for v in up] + [(hi, lo, v) for v in down]
        pal += [(hi, v, lo) for v in up] + [(v, hi, lo) for v in down]
        pal += [(lo, hi, v) for v in up] + [(lo, v, hi) for v in down]
    pal += [(0, 0, 0)] * 8
    return bytes(x for rgb in pal for x in rgb)


DEFAULT_PALETTE = _default_256_palette()
EGA_PALETTE = _ega_palette()
assert len(DEFAULT_PALETTE) == 768 and len(EGA_PALETTE) == 192


# ---------------------------------------------------------------- mode tables

@dataclass(frozen=True)
class ModeTable:
    """What a BIOS mode set writes: standard IBM VGA values (the same tables
    as SeaBIOS vgasrc/vgatables.c)."""

    misc: int
    sr: tuple[int, ...]        # SR01-SR04 (SR00 is the reset sequence)
    cr: tuple[int, ...]        # CR00-CR18
    ar: tuple[int, ...]        # AR00-AR13
    gr: tuple[int, ...]        # GR00-GR08
    dac: bytes                 # loaded from DAC entry 0; the rest is zeroed
    text: bool


_TEXT_80X25 = ModeTable(
    misc=0x67,
    sr=(0x00, 0x03, 0x00, 0x02),
    cr=(0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F,
        0x00, 0x4F, 0x0D, 0x0E, 0x00, 0x00, 0x00, 0x00,
        0x9C, 0x8E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF),
    ar=(0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07,
        0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F,
        0x0C, 0x00, 0x0F, 0x08),
    gr=(0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x0F, 0xFF),
    dac=EGA_PALETTE, text=True)

_MODE_13H = ModeTable(
    misc=0x63,
    sr=(0x01, 0x0F, 0x00, 0x0E),
    cr=(0x5F, 0x4F, 0x50, 0x82, 0x54, 0x80, 0xBF, 0x1F,
        0x00, 0x41, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x9C, 0x8E, 0x8F, 0x28, 0x40, 0x96, 0xB9, 0xA3, 0xFF),
    ar=(0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
        0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
        0x41, 0x00, 0x0F, 0x00),
    gr=(0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0F, 0xFF),
    dac=DEFAULT_PALETTE, text=False)

MODE_TABLES: dict[int, ModeTable] = {0x02: _TEXT_80X25, 0x03: _TEXT_80X25, 0x13: _MODE_13H}
MODE_DONT_CLEAR = 0x80         # INT 10h AH=00h: AL bit 7 keeps video memory


# ---------------------------------------------------------------- CP437

# The glyphs shown for the control range and 0x7F (what the screen draws, not
# the ASCII controls the 'cp437' codec decodes them to).
_CP437_LOW = "\u0020☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼"
CP437: tuple[str, ...] = tuple(
    _CP437_LOW[i] if i < 0x20 else "⌂" if i == 0x7F else codecs.decode(bytes([i]), "cp437")
    for i in range(256))
_CP437_TABLE = {i: ch for i, ch in enumerate(CP437)}   # for bytes.decode-free translate


def decode_cp437(data: bytes) -> str:
    """Screen bytes -> the characters a VGA shows (0x00 as a blank)."""
    return data.decode("latin-1").translate(_CP437_TABLE)


# ---------------------------------------------------------------- PNG

def encode_png(width: int, height: int, rgb: bytes) -> bytes:
    """An 8-bit truecolour PNG, filter 0 on every row (standard library only)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride:(y + 1) * stride] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _dac8(v: int) -> int:
    """6-bit DAC value to 8 bits, full scale to full scale."""
    return (v << 2) | (v >> 4)


# ---------------------------------------------------------------- the device

class Vga(Device):
    name = "vga"
    ports = (PortRange(PORT_BASE, 0x20),)

    def __init__(self, vram: memoryview, clock: Clock | None = None,
                 invalidate: Callable[[int, int], None] | None = None) -> None:
        """``vram``: writable view of guest 0xA0000-0xBFFFF. ``invalidate``
        (optional) is told the guest-physical range [lo, hi) the model itself
        wrote (the memory clear of a mode set), to drop stale translations."""
        self.vram = vram
        self.clock = clock
        self.invalidate = invalidate
        self._writers: dict[int, Callable[[int], None]] = {
            Port.AR_INDEX: self._write_ar,
            Port.MISC_OUTPUT_WRITE: self._write_misc,
            Port.VIDEO_SUBSYSTEM_ENABLE: self._write_vse,
            Port.SR_INDEX: self._write_sr_index,
            Port.SR_DATA: self._write_sr_data,
            Port.DAC_PEL_MASK: self._write_pel_mask,
            Port.DAC_READ_INDEX: self._write_dac_read_index,
            Port.DAC_WRITE_INDEX: self._write_dac_write_index,
            Port.DAC_DATA: self._write_dac_data,
            Port.GR_INDEX: self._write_gr_index,
            Port.GR_DATA: self._write_gr_data,
            Port.CR_INDEX: self._colour_only(self._write_cr_index),
            Port.CR_DATA: self._colour_only(self._write_cr_data),
            Port.FEATURE_CONTROL_WRITE: self._colour_only(self._write_feature),
        }
        self._readers: dict[int, Callable[[], int]] = {
            Port.AR_INDEX: lambda: self.ar_index,
            Port.AR_DATA_READ: lambda: self.ar[self.ar_index & AR_INDEX_MASK],
            Port.INPUT_STATUS_0: lambda: 0x00,   # no CRTC interrupt, switch sense low
            Port.VIDEO_SUBSYSTEM_ENABLE: lambda: self.vse,
            Port.SR_INDEX: lambda: self.sr_index,
            Port.SR_DATA: lambda: self.sr[self.sr_index],
            Port.DAC_PEL_MASK: lambda: self.pel_mask,
            Port.DAC_STATE: lambda: self.dac_state,
            Port.DAC_WRITE_INDEX: lambda: self.dac_write_index,
            Port.DAC_DATA: self._read_dac_data,
            Port.FEATURE_CONTROL_READ: lambda: self.feature_control,
            Port.MISC_OUTPUT_READ: lambda: self.misc,
            Port.GR_INDEX: lambda: self.gr_index,
            Port.GR_DATA: lambda: self.gr[self.gr_index],
            Port.CR_INDEX: self._colour_only_read(lambda: self.cr_index),
            Port.CR_DATA: self._colour_only_read(lambda: self.cr[self.cr_index]),
            Port.INPUT_STATUS_1: self._colour_only_read(self._read_input_status_1),
        }
        self._cell_cache: dict[tuple[int, int, int, int], bytes] = {}
        self.reset()

    def reset(self) -> None:
        # There is no VGA option ROM to run, so power on as one leaves the card:
        # 80x25 text timing and memory layout (mode 03h registers), but with the
        # attribute palette identity so the power-on DAC (the 256-colour default,
        # whose first 16 entries are the CGA colours) gives the right text colours.
        t = _TEXT_80X25
        self.misc = t.misc
        self.vse = 0x01                      # subsystem enabled
        self.feature_control = 0x00
        self.sr = [0x03, *t.sr, 0, 0, 0]     # SR00 = 03h: both resets released
        self.gr = [*t.gr] + [0] * (GR_INDEX_MASK + 1 - len(t.gr))
        self.cr = [*t.cr] + [0] * (CR_INDEX_MASK + 1 - len(t.cr))
        self.ar = [*range(16), *t.ar[16:]] + [0] * (AR_INDEX_MASK + 1 - len(t.ar))
        self.sr_index = self.gr_index = self.cr_index = 0
        self.ar_index = AR_INDEX_PAS         # display owns the palette
        self.ar_flipflop_data = False        # next 3C0 write is an index
        self.dac = bytearray(DEFAULT_PALETTE)
        self.pel_mask = 0xFF                 # all 8 pixel bits reach the DAC
        self.dac_read_index = self.dac_write_index = 0
        self.dac_sub_index = 0               # which of R, G, B comes next
        self.dac_state = DAC_STATE_WRITE
        self.dac_latch = bytearray(3)
        self._retrace_toggle = False

    # ------------------------------------------------------------ snapshots

    _BYTES = ("misc", "vse", "feature_control", "sr_index", "gr_index", "cr_index", "ar_index",
              "pel_mask", "dac_read_index", "dac_write_index", "dac_state")
    _FILES = (("sr", SR_INDEX_MASK + 1), ("gr", GR_INDEX_MASK + 1), ("cr", CR_INDEX_MASK + 1),
              ("ar", AR_INDEX_MASK + 1))

    def state(self) -> dict:
        """Every register file and index, the attribute flip-flop, the DAC (palette,
        indices, the R/G/B step and its latch). Video memory is guest RAM: saved with it."""
        return st.versioned(
            **{n: getattr(self, n) for n in self._BYTES},
            **{n: bytes(getattr(self, n)) for n, _ in self._FILES},
            ar_flipflop_data=self.ar_flipflop_data, dac=bytes(self.dac),
            dac_sub_index=self.dac_sub_index, dac_latch=bytes(self.dac_latch),
            retrace_toggle=self._retrace_toggle)

    def load_state(self, state: dict) -> None:
        who = self.name
        st.check_version(state, who)
        values = {n: st.integer(state, n, who, 0, 0xFF) for n in self._BYTES}
        files = {n: list(st.blob(state, n, who, size)) for n, size in self._FILES}
        if values["sr_index"] > SR_INDEX_MASK or values["gr_index"] > GR_INDEX_MASK \
                or values["cr_index"] > CR_INDEX_MASK:
            raise ValueError(f"{who}: a saved index is past its register file")
        flip, toggle = st.flag(state, "ar_flipflop_data", who), st.flag(state, "retrace_toggle", who)
        dac = st.blob(state, "dac", who, 768)
        sub = st.integer(state, "dac_sub_index", who, 0, 2)
        latch = st.blob(state, "dac_latch", who, 3)
        for name, value in {**values, **files}.items():
            setattr(self, name, value)
        self.ar_flipflop_data, self._retrace_toggle = flip, toggle
        self.dac, self.dac_sub_index, self.dac_latch = bytearray(dac), sub, bytearray(latch)

    # ------------------------------------------------------------ port access

    def write(self, offset: int, size: int, value: int) -> None:
        # A wider access is consecutive byte ports, low byte first: out dx, ax
        # to 3D4 writes the index (AL) to 3D4 and the data (AH) to 3D5.
        for i in range(max(0, min(size, 4))):
            handler = self._writers.get(offset + i)
            if handler is not None:
                handler((value >> (8 * i)) & 0xFF)

    def read(self, offset: int, size: int) -> int:
        value = 0
        for i in range(max(0, min(size, 4))):
            reader = self._readers.get(offset + i)
            value |= (reader() if reader is not None else 0xFF) << (8 * i)
        return value

    def _colour_only(self, handler: Callable[[int], None]) -> Callable[[int], None]:
        # Misc Output bit 0 moves the CRTC and 3DA to 3Bx; at 3Dx nothing answers.
        def gated(value: int) -> None:
            if self.misc & MiscOutput.IO_ADDRESS_SELECT:
                handler(value)
        return gated

    def _colour_only_read(self, reader: Callable[[], int]) -> Callable[[], int]:
        def gated() -> int:
            return reader() if self.misc & MiscOutput.IO_ADDRESS_SELECT else 0xFF
        return gated

    def _write_misc(self, value: int) -> None:
        self.misc = value

    def _write_vse(self, value: int) -> None:
        self.vse = value & 0x01

    def _write_feature(self, value: int) -> None:
        self.feature_control = value

    def _write_sr_index(self, value: int) -> None:
        self.sr_index = value & SR_INDEX_MASK

    def _write_sr_data(self, value: int) -> None:
        self.sr[self.sr_index] = value

    def _write_gr_index(self, value: int) -> None:
        self.gr_index = value & GR_INDEX_MASK

    def _write_gr_data(self, value: int) -> None:
        self.gr[self.gr_index] = value

    def _write_cr_index(self, value: int) -> None:
        self.cr_index = value & CR_INDEX_MASK

    def _write_cr_data(self, value: int) -> None:
        i = self.cr_index
        if i <= CR.OVERFLOW and self.cr[CR.VERTICAL_RETRACE_END] & CR11_PROTECT:
            if i == CR.OVERFLOW:             # only line compare bit 8 stays writable
                self.cr[i] = (self.cr[i] & ~CR07_LINE_COMPARE_8) | (value & CR07_LINE_COMPARE_8)
            return
        self.cr[i] = value

    def _write_ar(self, value: int) -> None:
        if not self.ar_flipflop_data:
            self.ar_index = value & (AR_INDEX_MASK | AR_INDEX_PAS)
        else:
            i = self.ar_index & AR_INDEX_MASK
            self.ar[i] = value & 0x3F if i < 16 else value
        self.ar_flipflop_data = not self.ar_flipflop_data

    def _read_input_status_1(self) -> int:
        self.ar_flipflop_data = False        # reading 3DA points 3C0 back at the index
        if self.clock is None:
            # No time base: alternate, so both "wait for retrace" and "wait for
            # the end of retrace" loops finish.
            self._retrace_toggle = not self._retrace_toggle
            in_vblank = in_hblank = self._retrace_toggle
        else:
            now = self.clock.now()
            in_vblank = now % FRAME_NS < VBLANK_NS
            in_hblank = now % LINE_NS < HBLANK_NS
        value = 0
        if in_vblank:
            value |= InputStatus1.VERTICAL_RETRACE | InputStatus1.DISPLAY_DISABLED
        if in_hblank:
            value |= InputStatus1.DISPLAY_DISABLED
        return value

    def _write_pel_mask(self, value: int) -> None:
        self.pel_mask = value

    def _write_dac_read_index(self, value: int) -> None:
        self.dac_read_index = value
        self.dac_sub_index = 0
        self.dac_state = DAC_STATE_READ

    def _write_dac_write_index(self, value: int) -> None:
        self.dac_write_index = value
        self.dac_sub_index = 0
        self.dac_state = DAC_STATE_WRITE

    def _write_dac_data(self, value: int) -> None:
        # The DAC takes R, G, B into a latch and stores all three at once.
        self.dac_latch[self.dac_sub_index] = value & 0x3F
        self.dac_sub_index += 1
        if self.dac_sub_index == 3:
            i = self.dac_write_index * 3
            self.dac[i:i + 3] = self.dac_latch
            self.dac_sub_index = 0
            self.dac_write_index = (self.dac_write_index + 1) & 0xFF

    def _read_dac_data(self) -> int:
        value = self.dac[self.dac_read_index * 3 + self.dac_sub_index]
        self.dac_sub_index += 1
        if self.dac_sub_index == 3:
            self.dac_sub_index = 0
            self.dac_read_index = (self.dac_read_index + 1) & 0xFF
        return value

    # ------------------------------------------------------------ BIOS mode set

    def _out(self, port: int, value: int) -> None:
        self.write(port - PORT_BASE, 1, value)

    def set_mode(self, mode: int) -> bool:
        """Program the standard registers for ``mode`` (02h/03h text, 13h) as
        INT 10h AH=00h does, through the same ports a guest would use; bit 7
        keeps video memory. Returns False (and changes nothing) for other modes."""
        table = MODE_TABLES.get(mode & 0x7F) if isinstance(mode, int) else None
        if table is None:
            return False
        out = self._out
        out(0x3C2, table.misc)                       # first: it places the CRTC at 3Dx
        out(0x3C4, SR.RESET)
        out(0x3C5, 0x01)                             # synchronous reset while reprogramming
        for i, v in enumerate(table.sr, start=SR.CLOCKING_MODE):
            out(0x3C4, i)
            out(0x3C5, v)
        out(0x3C4, SR.RESET)
        out(0x3C5, 0x03)
        for i, v in enumerate(table.gr):
            out(0x3CE, i)
            out(0x3CF, v)
        out(0x3D4, CR.VERTICAL_RETRACE_END)          # lift CR00-CR07 write protection
        out(0x3D5, self.read(Port.CR_DATA, 1) & ~CR11_PROTECT & 0xFF)
        for i, v in enumerate(table.cr):
            out(0x3D4, i)
            out(0x3D5, v)
        self.read(Port.INPUT_STATUS_1, 1)            # flip-flop to "index"
        for i, v in enumerate(table.ar):
            out(0x3C0, i)                            # PAS clear: palette writable
            out(0x3C0, v)
        out(0x3C0, AR.COLOR_SELECT)
        out(0x3C0, 0x00)
        out(0x3C6, 0xFF)
        out(0x3C8, 0x00)
        for v in table.dac.ljust(768, b"\x00"):
            out(0x3C9, v)
        out(0x3C0, AR_INDEX_PAS)                     # hand the palette back to the display
        if not mode & MODE_DONT_CLEAR:
            self._clear_memory(table.text)
        return True

    def _clear_memory(self, text: bool) -> None:
        if text:   # blank, light grey on black
            lo, fill = 0x18000, b"\x20\x07" * 0x4000
        else:
            lo, fill = 0x00000, bytes(0x10000)
        hi = min(lo + len(fill), len(self.vram))
        if hi > lo:
            self.vram[lo:hi] = fill[:hi - lo]
            if self.invalidate is not None:
                self.invalidate(VRAM_BASE + lo, VRAM_BASE + hi)

    # ------------------------------------------------------------ what the registers say

    def is_graphics(self) -> bool:
        return bool(self.gr[GR.MISCELLANEOUS] & Miscellaneous.GRAPHICS)

    def is_256_colour(self) -> bool:
        """Mode 13h-style byte-per-pixel graphics (chain-4 or 256-colour shift)."""
        return self.is_graphics() and bool(
            self.sr[SR.MEMORY_MODE] & MemoryMode.CHAIN_4
            or self.gr[GR.GRAPHICS_MODE] & GraphicsMode.SHIFT_256)

    def _memory_window(self) -> tuple[int, int]:
        return MEMORY_MAPS[(self.gr[GR.MISCELLANEOUS] & Miscellaneous.MEMORY_MAP) >> 2]

    def start_address(self) -> int:
        return (self.cr[CR.START_ADDRESS_HIGH] << 8) | self.cr[CR.START_ADDRESS_LOW]

    def _text_pitch(self) -> int:
        return self.cr[CR.OFFSET] * 2        # word mode: CR13 counts character pairs

    def _linear(self, offset: int, length: int) -> bytes:
        """``length`` bytes from the current memory window, wrapping inside it
        as the CRTC address counter does."""
        base, size = self._memory_window()
        size = min(size, max(0, len(self.vram) - base))
        if size <= 0 or length <= 0:
            return bytes(length)
        offset %= size
        out = bytearray()
        while len(out) < length:
            take = min(length - len(out), size - offset)
            out += self.vram[base + offset:base + offset + take]
            offset = 0
        return bytes(out)

    def _text_row(self, row: int) -> tuple[bytes, bytes]:
        """Characters and attributes of one text row."""
        cell = self.start_address() + row * self._text_pitch()
        raw = self._linear(cell * 2, TEXT_COLS * 2)
        return raw[0::2], raw[1::2]

    def text_rows(self) -> list[str]:
        """The 80x25 text screen as Unicode lines (CP437 glyphs)."""
        return [decode_cp437(self._text_row(r)[0]) for r in range(TEXT_ROWS)]

    def text_cells(self) -> list[tuple[str, bytes]]:
        """Each text row as (Unicode characters, attribute bytes): the live display's
        input (attribute: background in bits 4-6, foreground in 0-3)."""
        return [(decode_cp437(c), a) for c, a in (self._text_row(r) for r in range(TEXT_ROWS))]

    def cursor(self) -> tuple[int, int, bool]:
        """(row, col, visible) of the hardware text cursor."""
        location = (self.cr[CR.CURSOR_LOCATION_HIGH] << 8) | self.cr[CR.CURSOR_LOCATION_LOW]
        relative = (location - self.start_address()) & 0xFFFF
        pitch = self._text_pitch()
        row, col = divmod(relative, pitch) if pitch else (0, relative)
        start = self.cr[CR.CURSOR_START]
        end = self.cr[CR.CURSOR_END] & 0x1F
        visible = (not self.is_graphics() and not start & CURSOR_DISABLE
                   and (start & 0x1F) <= end and row < TEXT_ROWS and col < TEXT_COLS)
        return row, col, visible

    # ------------------------------------------------------------ rendering

    def _attr_to_dac(self, colour: int) -> int:
        """4-bit text colour -> DAC index through AR12, AR00-AR0F, AR10, AR14."""
        colour &= self.ar[AR.COLOR_PLANE_ENABLE] & 0x0F
        value = self.ar[colour] & 0x3F
        select = self.ar[AR.COLOR_SELECT]
        if self.ar[AR.MODE_CONTROL] & AttrModeControl.P54_SELECT:
            value = (value & 0x0F) | ((select & 0x03) << 4)
        value |= (select & 0x0C) << 4
        return value & self.pel_mask

    def _dac_rgb(self, index: int) -> bytes:
        i = (index & 0xFF) * 3
        return bytes(_dac8(v & 0x3F) for v in self.dac[i:i + 3])

    def _blank(self) -> bool:
        return bool(self.sr[SR.CLOCKING_MODE] & ClockingMode.SCREEN_OFF
                    or not self.ar_index & AR_INDEX_PAS)

    def render(self) -> tuple[int, int, bytes]:
        """(width, height, RGB bytes) of the current picture."""
        if not self.is_graphics():
            return self._render_text()
        if self.is_256_colour():
            return self._render_256()
        # Planar 16-colour and CGA modes are not drawn (see module docstring).
        return PLANAR_WIDTH, PLANAR_HEIGHT, bytes(PLANAR_WIDTH * PLANAR_HEIGHT * 3)

    def _render_256(self) -> tuple[int, int, bytes]:
        w, h = GFX_WIDTH, GFX_HEIGHT
        if self._blank():
            return w, h, bytes(w * h * 3)
        # Doubleword mode: CR0C/CR0D and CR13 count 4-byte units of CPU memory.
        pitch = self.cr[CR.OFFSET] * 8
        start = self.start_address() * 4
        pixels = b"".join(self._linear(start + y * pitch, w) for y in range(h))
        mask = self.pel_mask
        luts = [bytes(_dac8(self.dac[(i & mask) * 3 + c] & 0x3F) for i in range(256))
                for c in range(3)]
        out = bytearray(w * h * 3)
        for c in range(3):
            out[c::3] = pixels.translate(luts[c])
        return w, h, bytes(out)

    def _render_text(self) -> tuple[int, int, bytes]:
        dot8 = bool(self.sr[SR.CLOCKING_MODE] & ClockingMode.DOT_8)
        cw = 8 if dot8 else 9
        w, h = TEXT_COLS * cw, TEXT_ROWS * GLYPH_HEIGHT
        if self._blank():
            return w, h, bytes(w * h * 3)
        mode = self.ar[AR.MODE_CONTROL]
        line_graphics = bool(mode & AttrModeControl.LINE_GRAPHICS)
        blink = bool(mode & AttrModeControl.BLINK)
        colours = [self._dac_rgb(self._attr_to_dac(c)) for c in range(16)]
        crow, ccol, cvisible = self.cursor()
        cstart = self.cr[CR.CURSOR_START] & 0x1F
        cend = self.cr[CR.CURSOR_END] & 0x1F
        cache = self._cell_cache
        cache.clear()               # colours may have changed since the last frame
        lines: list[bytes] = []
        for row in range(TEXT_ROWS):
            chars, attrs = self._text_row(row)
            cells = []
            for col in range(TEXT_COLS):
                ch, attr = chars[col], attrs[col]
                bg = (attr >> 4) & (0x07 if blink else 0x0F)
                # 9th column: blank, except line-drawing 0xC0-0xDF which continue.
                extend = not dot8 and line_graphics and 0xC0 <= ch <= 0xDF
                cells.append((ch * GLYPH_HEIGHT, attr & 0x0F, bg, extend))
            for y in range(GLYPH_HEIGHT):
                in_cursor = cvisible and row == crow and cstart <= y <= cend
                parts = []
                for col, (glyph, fg, bg, extend) in enumerate(cells):
                    bits = FONT8X16[glyph + y]
                    if in_cursor and col == ccol:
                        bits = 0xFF
                        extend = not dot8
                    pattern = (bits << 1) | (bits & 1 if extend else 0) if not dot8 else bits
                    key = (pattern, fg, bg, cw)
                    piece = cache.get(key)
                    if piece is None:
                        f, b = colours[fg], colours[bg]
                        piece = b"".join(f if pattern & (1 << (cw - 1 - x)) else b
                                         for x in range(cw))
                        cache[key] = piece
                    parts.append(piece)
                lines.append(b"".join(parts))
        return w, h, b"".join(lines)

    def screenshot_png(self, path) -> None:
        """Write the current picture to ``path`` as a PNG."""
        w, h, rgb = self.render()
        with open(path, "wb") as f:
            f.write(encode_png(w, h, rgb))
