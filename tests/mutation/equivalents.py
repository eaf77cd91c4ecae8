"""Surviving mutants that no test can kill, with the reason each is equivalent.

Keyed by module name (``tests.mutation.MODULES``), then by (source line, mutated line) as
``mutmut show`` prints them (stripped), so the entries survive line-number changes.
"""
from __future__ import annotations

_UNUSED = "the constant names a datasheet bit the model never uses (stored-only ICW/OCW fields)"
_OVERWRITTEN = ("``_Registers`` is filled by ``Pic8259.reset()`` right after it is made, so its "
                "own initial values are never read")
_BEFORE_ICW1 = ("the value is only read after ICW1, which sets it again (or, before ICW1, only "
                "where every value gives the same answer: the chip drives no INT until initialized)")
_RANK9 = "a ninth turn tests the bit the first one tested, so it can only confirm 'none'"
_OCW1 = "a data-port write with no ICW expected is OCW1 for any step the ICW table does not name"
_ANNOTATION = "an annotation: with ``from __future__ import annotations`` it is never evaluated"
_FLAG = ("the ``flag`` argument only turns the stored 0/1 into False/True; every use of the "
         "register is a truth test")

_NO_ZERO = ("no caller passes a count of 0: CHS refuses AL=0 first and EDD answers a count "
            "of 0 without a transfer")
_UNUSED_STATUS = "SeaBIOS's status code is listed for completeness; no service returns it"
_CHUNK = ("the piece size only bounds host memory: 129 sectors a piece moves the same data "
          "(the 512 KiB bound in the tests holds for both)")

_PAGES = "indices past 0x0F are never used: the page ports end at 0x8F"
_STEP = "the step is +1 or -1, never 0"
_CH4 = "channel 4 (the cascade) is refused before this line is reached"
_NOT_ROUTED = ("the bus routes only 0x00-0x0F and 0xC0-0xDF to the DMA: offsets 0x10 and 0xE0 never "
               "arrive")
_STORED = "a command-register bit the PC does not wire: stored, read back, never acted on"
_NO_CHANNEL_BITS = ("the mode register keeps bits 7-2 only (the channel number is cut off when "
                    "it is written), so adding bit 0 to the mask changes no result")
_UNUSED_ENUM = "an enum member the model names for the datasheet but never compares with"

EQUIVALENT: dict[str, dict[tuple[str, str], str]] = {
    "dma8237": {
        ("self.page = bytearray(0x10)    # index = port - 0x80",
         "self.page = bytearray(17)    # index = port - 0x80"): _PAGES,
        ("self.page[:] = bytes(0x10)     # the 74LS612 powers up undefined; zero it",
         "self.page[:] = bytes(17)     # the 74LS612 powers up undefined; zero it"): _PAGES,
        ("stopped = False", "stopped = None"): "None is as false as False for every use",
        ("to_wrap = 0x10000 - c.cur_addr if step > 0 else c.cur_addr + 1",
         "to_wrap = 0x10000 - c.cur_addr if step >= 0 else c.cur_addr + 1"): _STEP,
        ("lo = c.cur_addr if step > 0 else c.cur_addr - n + 1",
         "lo = c.cur_addr if step >= 0 else c.cur_addr - n + 1"): _STEP,
        **{(f"if channel < 4:", f"if channel {m}:"): _CH4 for m in ("<= 4", "< 5")},
        **{("unit = 1 if channel < 4 else 2", f"unit = 1 if channel {m} else 2"): _CH4
           for m in ("<= 4", "< 5")},
        **{("if 0 <= off < 0x10:", f"if 0 <= off {m}:"): _NOT_ROUTED for m in ("<= 0x10", "< 17")},
        **{("if DMA2_BASE <= off < DMA2_BASE + 0x20:", f"if DMA2_BASE <= off {m}:"): _NOT_ROUTED
           for m in ("<= DMA2_BASE + 0x20", "< DMA2_BASE + 33")},
        **{("elif DMA2_BASE <= off < DMA2_BASE + 0x20:", f"elif DMA2_BASE <= off {m}:"): _NOT_ROUTED
           for m in ("<= DMA2_BASE + 0x20", "< DMA2_BASE + 33")},
        ("self.mode = 0", "self.mode = 1"): ("the mode register's bits 1-0 are the channel number, "
                                             "never stored; bit 0 of the stored mode is never read"),
        ("self.ch = [Channel() for _ in range(4)]", "self.ch = [Channel() for _ in range(5)]"):
            "registers and the mode write address channels 0-3 only: a fifth is never reached",
        ("self.command = 0", "self.command = 1"): ("bit 0 (memory-to-memory) is stored only: "
                                                   "the command register cannot be read back"),
        **{(f"{n} = {v}{c}", f"{n} = {m}{c}"): _STORED for n, v, m, c in (
            ("MEM_TO_MEM", "0x01", "2", "         # not wired on the PC; stored only"),
            ("CH0_ADDR_HOLD", "0x02", "3", ""), ("COMPRESSED_TIMING", "0x08", "9", ""),
            ("ROTATING_PRIORITY", "0x10", "17", ""), ("EXTENDED_WRITE", "0x20", "33", ""),
            ("DREQ_SENSE_LOW", "0x40", "65", ""), ("DACK_SENSE_HIGH", "0x80", "129", ""))},
        **{(f"{n} = {v}", f"{n} = {m}"): _NO_CHANNEL_BITS for n, v, m in (
            ("MODE_TRANSFER", "0x0C", "13"), ("MODE_AUTOINIT", "0x10", "17"),
            ("MODE_DECREMENT", "0x20", "33"), ("MODE_SELECT", "0xC0", "193"))},
        **{(f"{n} = {v}{c}", f"{n} = {m}{c}"): _UNUSED_ENUM for n, v, m, c in (
            ("VERIFY", "0x00", "1", ""), ("ILLEGAL", "0x0C", "13", ""), ("DEMAND", "0x00", "1", ""),
            ("SINGLE", "0x40", "65", ""), ("BLOCK", "0x80", "129", ""))},
    },
    "bios_disk": {
        ('_basic_access(ctx, disk, "read")', '_basic_access(ctx, disk, "XXreadXX")'):
            "a read is whatever is neither \"write\" nor \"verify\": the name is never compared",
        ("if lba < 0 or count < 0 or lba + count > disk.sectors:",
         "if lba < 0 or count <= 0 or lba + count > disk.sectors:"): _NO_ZERO,
        ("if lba < 0 or count < 0 or lba + count > disk.sectors:",
         "if lba < 0 or count < 1 or lba + count > disk.sectors:"): _NO_ZERO,
        ("if lba < 0 or count < 0 or lba + count > disk.sectors:",
         "if lba < 0 and count < 0 or lba + count > disk.sectors:"):
            "callers never pass a negative LBA or count (CHS and the EDD packet give unsigned numbers)",
        ("ST_EADDRNOTFOUND = 0x02", "ST_EADDRNOTFOUND = 3"): _UNUSED_STATUS,
        ("ST_EADDRNOTFOUND = 0x02", "ST_EADDRNOTFOUND = None"): _UNUSED_STATUS,
        ("ST_ENOTFOUND = 0x04           # sector not found",
         "ST_ENOTFOUND = 5           # sector not found"): _UNUSED_STATUS,
        ("ST_ENOTFOUND = 0x04           # sector not found",
         "ST_ENOTFOUND = None           # sector not found"): _UNUSED_STATUS,
        ("ST_TIMEOUT = 0x80", "ST_TIMEOUT = 129"): _UNUSED_STATUS,
        ("ST_TIMEOUT = 0x80", "ST_TIMEOUT = None"): _UNUSED_STATUS,
        ("CHUNK_SECTORS = 128           # sectors moved per disk call (64 KiB of host memory)",
         "CHUNK_SECTORS = 129           # sectors moved per disk call (64 KiB of host memory)"): _CHUNK,
    },
    "pic8259": {
        ("ICW1_ADI = 0x04     # call address interval (MCS-80 only; ignored)",
         "ICW1_ADI = 5     # call address interval (MCS-80 only; ignored)"): _UNUSED,
        ("ICW1_ADI = 0x04     # call address interval (MCS-80 only; ignored)",
         "ICW1_ADI = None     # call address interval (MCS-80 only; ignored)"): _UNUSED,
        ("ICW4_UPM = 0x01     # 8086 mode (always assumed)",
         "ICW4_UPM = 2     # 8086 mode (always assumed)"): _UNUSED,
        ("ICW4_UPM = 0x01     # 8086 mode (always assumed)",
         "ICW4_UPM = None     # 8086 mode (always assumed)"): _UNUSED,
        ("ICW4_MS = 0x04      # master/slave (buffered mode only)",
         "ICW4_MS = 5      # master/slave (buffered mode only)"): _UNUSED,
        ("ICW4_MS = 0x04      # master/slave (buffered mode only)",
         "ICW4_MS = None      # master/slave (buffered mode only)"): _UNUSED,
        ("ICW4_BUF = 0x08     # buffered mode", "ICW4_BUF = 9     # buffered mode"): _UNUSED,
        ("ICW4_BUF = 0x08     # buffered mode", "ICW4_BUF = None     # buffered mode"): _UNUSED,
        ("self.irr = self.isr = self.imr = self.read_isr = self.poll = 0",
         "self.irr = self.isr = self.imr = self.read_isr = self.poll = 1"): _OVERWRITTEN,
        ("self.irr = self.isr = self.imr = self.read_isr = self.poll = 0",
         "self.irr = self.isr = self.imr = self.read_isr = self.poll = None"): _OVERWRITTEN,
        ('read_isr = _register("read_isr", flag=True)',
         'read_isr = _register("read_isr", flag=False)'): _FLAG,
        ('poll = _register("poll", flag=True)', 'poll = _register("poll", flag=False)'): _FLAG,
        **{(f"self.{name} = {v}{c}", f"self.{name} = {m}{c}"): _BEFORE_ICW1
           for name, v, ms, c in (
               ("ltim", "False", ("True", "None"), ""),
               ("icw_step", "0", ("1", "None"), "         # 0 = operational, else the ICW expected next"),
               ("ready", "False", ("None",), "        # no INTR until initialized"),
               ("icw1", "0", ("1", "None"), ""), ("icw3", "0", ("1", "None"), ""),
               ("icw4", "0", ("1", "None"), ""), ("vector_base", "0", ("1",), ""),
               ("auto_eoi", "False", ("True", "None"), ""), ("sfnm", "False", ("True", "None"), ""),
               ("rotate_on_aeoi", "False", ("True", "None"), ""),
               ("lowest", "7", ("8", "None"), "           # fixed priority: IR0 highest, IR7 lowest"),
               ("special_mask", "False", ("True", "None"), ""))
           for m in ms},
        ("for rank in range(8):", "for rank in range(9):"): _RANK9,
        ("return 8", "return 9"): "8 and 9 both mean 'no level' to every caller: a rank < 8 beats both",
        ("if rank == 8:", "if rank == 9:"): ("in ``pending`` a rank of 8 (no request) then fails the "
                                             "'rank < in-service rank' test, which is at most 8"),
        ("return -1", "return -2"): "callers only ask whether the level is negative",
        ("self.icw_step = 0", "self.icw_step = 1"): _OCW1,
        ("self.icw_step = 0", "self.icw_step = None"): _OCW1,
        ("self.ready = False", "self.ready = None"): "None is as false as False for every use",
        ("self.icw3 = value", "self.icw3 = None"): "ICW3 is stored only (the board wiring is fixed)",
        ("self.icw4 = value", "self.icw4 = None"): "ICW4's bits are taken apart when written; the raw value is never read",
        ("return (self.master, irq) if irq < 8 else (self.slave, irq - 8)",
         "return (self.master, irq) if irq < 8 else (self.slave, irq + 8)"):
            "the chip takes the level modulo 8 (``level_no & 7``): irq - 8 and irq + 8 name the same input",
        ("byte = 0xFF if chip is None else chip.read(offset + i)",
         "byte = 0xFF if chip is None else chip.read(offset - i)"):
            "a chip decodes only A0: offset + 1 and offset - 1 have the same parity",
        ("self._next_after(4)", "self._next_after(5)"): ("any step past 3 ends the sequence the "
                                                         "same way: the chip becomes operational"),
        ('_ocw2_table: dict[int, Callable[["Pic8259", int], None]] = {',
         '_ocw2_table: dict[int, Callable[["XXPic8259XX", int], None]] = {'): _ANNOTATION,
        ("self.on_intr: Callable[[bool], None] | None = None",
         "self.on_intr: Callable[[bool], None] & None = None"): _ANNOTATION,
        ("OCW2_NOP: lambda s, l: None,", "OCW2_NOP: lambda s, l: 0,"): "OCW2 handlers' results are ignored",
        ("self._lines = [PicLine(self, n) for n in range(16)]",
         "self._lines = [PicLine(self, n) for n in range(17)]"): ("``line(16)`` is refused by "
                                                                   "``_route`` before the list is indexed"),
    },
}
