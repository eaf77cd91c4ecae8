"""Surviving mutants that no test can kill, with the reason each is equivalent.

Keyed by module name (``tests.mutation.MODULES``), then by (source line, mutated line) as
``mutmut show`` prints them (stripped), so the entries survive line-number changes.
"""
from __future__ import annotations

_NAMED_ONLY = "the model names this register, bit or command after the datasheet but never compares with it"
_UNUSED = "the constant names a datasheet bit the model never uses (stored-only ICW/OCW fields)"
_OVERWRITTEN = ("``_Registers`` is filled by ``Pic8259.reset()`` right after it is made, so its "
                "own initial values are never read")
_BEFORE_ICW1 = ("the value is only read after ICW1, which sets it again (or, before ICW1, only "
                "where every value gives the same answer: the chip drives no INT until initialized)")
_RANK9 = "a ninth turn tests the bit the first one tested, so it can only confirm 'none'"
_OCW1 = "a data-port write with no ICW expected is OCW1 for any step the ICW table does not name"
_ANNOTATION = "an annotation: with ``from __future__ import annotations`` it is never evaluated"
_WIDTH = "x86 port I/O is 1, 2 or 4 bytes wide: no access of 5 or more bytes reaches a device"
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
_PARTIAL = ("this line runs only for a chunk that leaves guest RAM, and RAM is one run from "
            "address 0: counting up, the probe meets the unit outside before unit n; counting "
            "down, the first unit probed (the chunk's top) is already outside, so k stays 0 "
            "and ``lo`` is never used")
_UNUSED_ENUM = "an enum member the model names for the datasheet but never compares with"

_PIT_RESET = ("``Counter.reset()`` fills the count state right after it is made, and ``valid`` is "
              "read only by C, after ``bind_fast`` has set it")
_UNPROGRAMMED = ("an unprogrammed counter reads 0 and ignores counts and latches; the first control "
                 "word sets this field (or the count written after it does) before anything reads it")
_ILLEGAL_ONE = ("the two differ only for a new count of 1, which the 8254 datasheet makes illegal in "
                "modes 2 and 3 (the edge is one period on, as the next start position gives it)")

_USED_END = ("the used ring starts 4-aligned and is 6 + 8n bytes long, so it ends 2 bytes short of "
             "a 4-aligned end of RAM: one byte more (or a third byte of its last field) is in RAM too")

_STP_CLEAR = ("bit 0 (STP) is clear wherever this is looked at: a command with STP returns "
              "before, and the window opens only while the NIC runs")
_DATA_PORT = "offset 10h is the data port, served before the register decode"
_PERF = ("a window that serves no whole access changes nothing: C passes every access on to the "
         "model, which moves the same bytes")
_PAGES_OF_A_FRAME = "a full frame needs (1514 + 4 + 4 + 255) >> 8 = 6 pages; this sum gives 6 too"
_SHORT = "a 60-byte frame is padded with no bytes"

EQUIVALENT: dict[str, dict[tuple[str, str], str]] = {
    "nic_ne2000": {
        **{(f"{n} = {v}{c}", f"{n} = {m}{c}"): _NAMED_ONLY for n, v, m, c in (
            ("STA", "0x02", "3", "           # start"),
            ("RD0", "0x08", "9", "           # remote DMA command, RD2..RD0"), ("RD1", "0x10", "17", ""),
            ("PS0", "0x40", "65", "           # register page select"), ("PS1", "0x80", "129", ""),
            ("RD_NOT_ALLOWED", "0x00", "1", ""), ("RD_NOT_ALLOWED", "0x00", "None", ""),
            ("RXE", "0x04", "5", "           # receive error"),
            ("TXE", "0x08", "9", "           # transmit error"),
            ("COL", "0x04", "5", ""), ("ABT", "0x08", "9", ""), ("CRS", "0x10", "17", ""),
            ("FU", "0x20", "33", ""), ("CDH", "0x40", "65", ""), ("OWC", "0x80", "129", ""),
            ("CRC", "0x02", "3", ""), ("FAE", "0x04", "5", ""), ("FO", "0x08", "9", ""),
            ("DFR", "0x80", "129", ""),
            ("SEP", "0x01", "2", "           # save errored packets (there are none here)"),
            ("CRC", "0x01", "2", "           # inhibit CRC"), ("ATD", "0x08", "9", ""),
            ("OFST", "0x10", "17", ""), ("BOS", "0x02", "3", ""), ("LS", "0x08", "9", ""),
            ("ARM", "0x10", "17", ""), ("FT0", "0x20", "33", ""), ("FT1", "0x40", "65", ""))},
        ("TXP = 0x04           # transmit packet (self-clearing)",
         "TXP = 5           # transmit packet (self-clearing)"): _STP_CLEAR,
        ("RD_MASK = 0x38", "RD_MASK = 57"): _STP_CLEAR,
        ("RD2 = 0x20", "RD2 = 33"): "RD2 is only ORed with STP (bit 0), at reset: 21h either way",
        ("PHY = 0x20           # 1 = multicast/broadcast destination",
         "PHY = 33           # 1 = multicast/broadcast destination"):
            "PHY is only ever set together with PRX (bit 0)",
        ("rsr = int(RSR_.PRX) | (int(RSR_.PHY) if frame[0] & 1 else 0)",
         "rsr = int(RSR_.PRX) | (int(RSR_.PHY) if frame[0] & 1 else 1)"):
            "PRX is bit 0: a unicast frame's status is 01h either way",
        ("CLDA0, CLDA1, BNRY, TSR, NCR, FIFO, ISR = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07",
         "CLDA0, CLDA1, BNRY, TSR, NCR, FIFO, ISR = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 7"):
            "FIFO reads 00h, as an offset no register answers does",
        ("CLDA0, CLDA1, BNRY, TSR, NCR, FIFO, ISR = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07",
         "CLDA0, CLDA1, BNRY, TSR, NCR, FIFO, ISR = 0x01, 0x02, 0x03, 0x04, 0x05, 7, 0x07"):
            "FIFO reads 00h, as an offset no register answers does (and ISR's entry comes later)",
        ("P3_CONFIG0, P3_CONFIG2, P3_CONFIG3 = 0x33, 0x35, 0x36",
         "P3_CONFIG0, P3_CONFIG2, P3_CONFIG3 = 52, 0x35, 0x36"):
            "CONFIG0 reads 00h, as the unmapped page 3 offsets (34h among them) do",
        ("NIC_REGS = 0x10          # offsets 0x00-0x0F: the DP8390",
         "NIC_REGS = 17          # offsets 0x00-0x0F: the DP8390"): _DATA_PORT,
        ("if offset < NIC_REGS:", "if offset <= NIC_REGS:"): _DATA_PORT,
        ("elif size == 1 and offset < NIC_REGS:", "elif size == 1 and offset <= NIC_REGS:"): _DATA_PORT,
        ('self._mem[at:at + n] = (value & 0xFFFFFFFF).to_bytes(4, "little")[:n]',
         'self._mem[at:at + n] = (value & 0xFFFFFFFF).to_bytes(5, "little")[:n]'):
            "little endian: the first n (at most 4) bytes of the 4- and the 5-byte forms are the same",
        ("RAM_SIZE = 0x4000        # 16 KiB (QEMU's ne2k has 32 KiB; pass ram_size=0x8000 to match)",
         "RAM_SIZE = 16385        # 16 KiB (QEMU's ne2k has 32 KiB; pass ram_size=0x8000 to match)"):
            "the RAM size is rounded down to whole pages: 16385 bytes are 16 KiB",
        ("ram_size = max(0x100, min(int(ram_size), 0x8000)) & ~0xFF",
         "ram_size = max(257, min(int(ram_size), 0x8000)) & ~0xFF"):
            "rounded down to whole pages, 257 is 256 (100h)",
        ("ram_size = max(0x100, min(int(ram_size), 0x8000)) & ~0xFF",
         "ram_size = max(0x100, min(int(ram_size), 32769)) & ~0xFF"):
            "rounded down to whole pages, 32769 is 32768 (8000h)",
        ("MAX_FRAME = 1514         # longest untagged Ethernet frame without CRC",
         "MAX_FRAME = 1515         # longest untagged Ethernet frame without CRC"): _PAGES_OF_A_FRAME,
        **{("return avail > (MAX_FRAME + RX_HEADER + CRC_LEN + 0xFF) >> 8", f"return avail > ({m}) >> 8"):
           _PAGES_OF_A_FRAME for m in ("MAX_FRAME - RX_HEADER + CRC_LEN + 0xFF",
                                       "MAX_FRAME + RX_HEADER - CRC_LEN + 0xFF",
                                       "MAX_FRAME + RX_HEADER + CRC_LEN + 256")},
        ("self._win_at = None               # (``_push`` opens the window or leaves it shut)",
         'self._win_at = ""               # (``_push`` opens the window or leaves it shut)'):
            "a window never opened has moved 0 bytes: taking it back moves nothing, whatever marks it",
        ("if a < stop < end:", "if a <= stop < end:"): _PERF,
        ("if self.cr & CR_.STP or not (RAM_START >> 8 <= start < stop <= self.ram_end >> 8",
         "if self.cr & CR_.STP or not (RAM_START >> 8 <= start <= stop <= self.ram_end >> 8"):
            "start < stop follows from start <= CURR < stop, tested in the same condition",
        ("ok_ring = (RAM_START >> 8 <= start < stop <= self.ram_end >> 8",
         "ok_ring = (RAM_START >> 8 <= start <= stop <= self.ram_end >> 8"):
            "start < stop follows from start <= CURR < stop, tested in the same condition",
        ("if a < stop < end:", "if a < stop <= end:"): "clipping the end to PSTOP when it is PSTOP changes nothing",
        ("if not RAM_START <= a < self.ram_end:", "if not RAM_START <= a <= self.ram_end:"): _PERF,
        ("if end - a < 2:", "if end + a < 2:"): _PERF,
        ("if size > 1 and offset & (size - 1):", "if size >= 1 and offset & (size - 1):"):
            "offset & 0 is 0: a byte access is never refused either way",
        ("if RAM_START <= a and a + RX_HEADER <= self.ram_end:",
         "if RAM_START <= a and a + RX_HEADER < self.ram_end:"):
            "BNRY << 8 is page aligned: it is never 4 bytes short of the end of RAM",
        ("if len(frame) < MIN_FRAME:", "if len(frame) <= MIN_FRAME:"): _SHORT,
        ("if len(frame) < MIN_FRAME and not self.rcr & RCR_.AR:",
         "if len(frame) <= MIN_FRAME and not self.rcr & RCR_.AR:"): _SHORT,
        ("**{MAR0 + i: (lambda n, i=i: n.mar[i]) for i in range(8)},",
         "**{MAR0 + i: (lambda n, i=i: n.mar[i]) for i in range(9)},"):
            "MAR0 + 8 is page 2 offset 0, CR, which is answered before the page decode",
        ("**{MAR0 + i: _mar_w(i) for i in range(8)},", "**{MAR0 + i: _mar_w(i) for i in range(9)},"):
            "MAR0 + 8 is page 2 offset 0, CR, which is answered before the page decode",
    },
    "disk_ide": {
        **{(f"{n} = {v}{c}", f"{n} = {m}{c}"): _NAMED_ONLY for n, v, m, c in (
            ("DATA", "0", "1", ""), ("LBA_HIGH", "5", "6", "            # Cylinder High"),
            ("IDX", "0x02", "3", "              # obsolete index pulse; never set"),
            ("CORR", "0x04", "5", "             # obsolete corrected data; never set"),
            ("AMNF", "0x01", "2", '             # also "no error" diagnostic code 01h after reset'),
            ("TK0NF", "0x02", "3", ""), ("MCR", "0x08", "9", ""), ("MC", "0x20", "33", ""),
            ("ICRC", "0x80", "129", '             # BBK before ATA-4; also "device 1 failed" in diagnostic codes'),
            ("HOB", "0x80", "129", "              # 48-bit high-order byte readback; unused (no LBA48)"),
            ("NOP", "0x00", "1", ""), ("IDENTIFY_PACKET_DEVICE", "0xA1", "162", ""))},
        ("DF = 0x20", "DF = 33"): "DF is only ever set together with ERR (bit 0), so 21h adds nothing",
        ("DEV = 0x10", "DEV = 17"): ("the drive is chosen by (Device & DEV) >> 4: bit 0 shifts out, so "
                                     "11h selects as 10h does"),
        ("self.capacity = min(disk.sectors, LBA28_MAX) if disk is not None else 0",
         "self.capacity = min(disk.sectors, LBA28_MAX) if disk is not None else 1"):
            "an absent drive runs no command, and only commands read the capacity",
        ("self.tr_valid = self.tr_cyls > 0", "self.tr_valid = self.tr_cyls > 1"):
            ("a present drive's default geometry has 2 to 16383 cylinders (``hd_geometry``), an "
             "absent one 0: > 0 and > 1 agree"),
        ("self.drives: tuple[Disk | None, Disk | None] = drives",
         "self.drives: tuple[Disk & None, Disk | None] = drives"): _ANNOTATION,
        ("self.drives: tuple[Disk | None, Disk | None] = drives",
         "self.drives: tuple[Disk | None, Disk & None] = drives"): _ANNOTATION,
        ("if u.pos < end:", "if u.pos <= end:"):
            ("a window of no bytes serves nothing: C passes every access on to the model, and "
             "taking the window back moves the cursor by 0"),
        ("u.status = _BSY if u.present else 0", "u.status = _BSY if u.present else 1"):
            "an absent drive's status is never read: every register of it but Device reads 00h",
        ("u.status = _READY                     # (every handler sets its own status)",
         "u.status = None                     # (every handler sets its own status)"):
            "every command handler sets Status itself (completion, failure or a data phase)",
        ("u.pio_mode = mode & 0x07 if mode >= 0x08 else 0",
         "u.pio_mode = mode & 0x07 if mode > 0x08 else 0"): "mode 08h is PIO mode 0: both branches give 0",
        ("u.pio_mode = mode & 0x07 if mode >= 0x08 else 0",
         "u.pio_mode = mode & 0x07 if mode >= 9 else 0"): "mode 08h is PIO mode 0: both branches give 0",
    },
    "virtio_queue": {
        ("MAX_QUEUE_SIZE = 32768          # §2.7: queue size is a power of 2, at most 32768",
         "MAX_QUEUE_SIZE = 32769          # §2.7: queue size is a power of 2, at most 32768"):
            "no power of 2 lies between 32768 and 32769, and sizes must be powers of 2",
        ('int.from_bytes(raw[12:14], "little"), int.from_bytes(raw[14:16], "little"))',
         'int.from_bytes(raw[12:15], "little"), int.from_bytes(raw[14:16], "little"))'):
            "only flag bits 0-2 are ever tested; the extra byte lands in bits 16-23",
        ('int.from_bytes(raw[12:14], "little"), int.from_bytes(raw[14:16], "little"))',
         'int.from_bytes(raw[12:14], "little"), int.from_bytes(raw[14:17], "little"))'):
            "a descriptor is 16 bytes: the slice [14:17] is [14:16]",
        ("if length == 0 or length % DESC_SIZE or length // DESC_SIZE > MAX_INDIRECT:",
         "if length == 0 or length % DESC_SIZE or length / DESC_SIZE > MAX_INDIRECT:"):
            "the length is a multiple of 16 here (tested just before): both quotients are the same number",
        ("table, table_len = addr, length // DESC_SIZE", "table, table_len = addr, length / DESC_SIZE"):
            "the length is a multiple of 16 here: a float of the same value compares and indexes alike",
        ("if offset >= n:", "if offset > n:"):
            ("an offset equal to the buffer's length reads 0 bytes from it and goes on with offset 0, "
             "as skipping it does"),
        ("if pos >= n:", "if pos > n:"):
            ("a position equal to the buffer's length writes 0 bytes into it and goes on at position "
             "0, as skipping it does"),
        ("break", "continue"): ("once every byte is read (written), each later buffer takes 0 bytes "
                                "(is skipped): the loop ends with the same result"),
        ("check_ram(self.mem, addr, 2, f\"queue {self.index}: ring field\")",
         "check_ram(self.mem, addr, 3, f\"queue {self.index}: ring field\")"): _USED_END,
        ("(\"used ring\", self.device, USED_ALIGN, 6 + USED_ELEM_SIZE * num)):",
         "(\"used ring\", self.device, USED_ALIGN, 7 + USED_ELEM_SIZE * num)):"): _USED_END,
    },
    "pit8254": {
        ("PORT_B = 0x21               # system control port B (0x61)",
         "PORT_B = 34               # system control port B (0x61)"):
            "the port range's bias and the offset compared with are the same constant: port 0x61 still reaches port B",
        ("PORTB_SPKR_DATA = 0x02      # speaker data enable (AND with OUT2)",
         "PORTB_SPKR_DATA = 3      # speaker data enable (AND with OUT2)"):
            "it is only ever ORed with PORTB_GATE2 (0x01): 0x01|0x02 and 0x01|0x03 are the same mask",
        ("n %= 10000", "n %= 10001"): "``count`` reduces the count modulo 10000 before converting it",
        ("self.mode = self.rw = self.load = self.n = self.msb_next = self.valid = 0",
         "self.mode = self.rw = self.load = self.n = self.msb_next = self.valid = 1"): _PIT_RESET,
        ("if not self.armed or self.frozen is not None or not self.gate and self.mode in PERIODIC:",
         "if not self.armed or self.frozen is not None or not self.gate and self.mode not in PERIODIC:"):
            "only counter 0's edges are scheduled, and GATE0 is tied high: the gate clause is never true",
        ("edge = self.load + self.n + (1 if self.mode in (4, 5) else 0)",
         "edge = self.load + self.n + (1 if self.mode in (4, 6) else 0)"):
            ("mode 5 counts only after a gate trigger and only GATE2 moves, while the edge timer is "
             "counter 0's"),
        ("return self._periodic_edge(s - 1, new_load, new_n)",
         "return self._periodic_edge(s + 1, new_load, new_n)"): _ILLEGAL_ONE,
        ("return self._periodic_edge(s - 1, new_load, new_n)",
         "return self._periodic_edge(s - 2, new_load, new_n)"): _ILLEGAL_ONE,
        ("if self.pending is not None and t >= self.pending[0]:",
         "if self.pending is not None and t >= self.pending[1]:"):
            ("the pending reload is built so that old and new count and OUT agree from its load tick "
             "(index 1) to its switch tick (index 0; the same tick in mode 2)"),
        **{(f"self.{n}: int | None = None{c}", f"self.{n}: int & None = None{c}"): _ANNOTATION
           for n, c in (("ol", "        # latched count"), ("status_latch", ""),
                        ("frozen", "    # elapsed ticks while the gate holds counting"),
                        ("null_until", "  # NULL COUNT clears at this tick"))},
        ("self.pending: tuple[int, int, int] | None = None",
         "self.pending: tuple[int, int, int] & None = None"): _ANNOTATION,
        ("for i in range(max(1, min(size, 4))):", "for i in range(max(1, min(size, 5))):"): _WIDTH,
        ("c._state.valid = 0", "c._state.valid = 1"):
            ("the model runs on the vCPU's thread while the guest is stopped, and every ``_pull`` is "
             "followed by a ``_push`` before the guest runs again: C never reads the 0"),
        ("and c.n > 0 and self.clock._paused_at is None)", "and c.n >= 0 and self.clock._paused_at is None)"):
            "an armed counter's n is its full count, never 0 (``load_state`` refuses it too)",
        ("and c.n > 0 and self.clock._paused_at is None)", "and c.n > 1 and self.clock._paused_at is None)"):
            "a count of 1 is illegal in modes 2 and 3, the only modes C serves",
        **{(f"self.{n} = {v}{c}", f"self.{n} = {m}{c}"): _UNPROGRAMMED for n, v, m, c in (
            ("mode_bits", "0", "1", "        # M2-M0 as written (status shows them)"),
            ("mode", "0", "1", ""), ("rw", "0", "1", ""), ("bcd", "False", "True", ""),
            ("cr_lsb", "0", "1", ""), ("write_msb_next", "False", "True", ""),
            ("read_msb_next", "False", "True", ""), ("load", "0", "1", ""), ("n", "0", "1", ""))},
        ("self.cr = 0", "self.cr = 1"): (_UNPROGRAMMED + "; only a gate trigger of a one-shot never "
                                         "given a count reads it, a count the datasheet leaves undefined"),
        ("self._timer: Timer | None = None", "self._timer: Timer & None = None"): _ANNOTATION,
        ("self._timer_tick = 0", "self._timer_tick = 1"):
            "read only when the timer fires, after ``_rearm`` has set it with the timer",
        **{("self.port_b = 0", f"self.port_b = {m}"): "``reset()``, called at the end of ``__init__``, sets it to 0"
           for m in ("1", "None")},
        **{("self.ol_reads_left = 0", f"self.ol_reads_left = {m}"):
           "read only after a count latch sets it (``latch_count``)" for m in ("1",)},
    },
    "dma8237": {
        ("self.page = bytearray(0x10)    # index = port - 0x80",
         "self.page = bytearray(17)    # index = port - 0x80"): _PAGES,
        ("self.page[:] = bytes(0x10)     # the 74LS612 powers up undefined; zero it",
         "self.page[:] = bytes(17)     # the 74LS612 powers up undefined; zero it"): _PAGES,
        ("stopped = False", "stopped = None"): "None is as false as False for every use",
        **{('return b"".join(chunk[i:i + unit] for i in range(len(chunk) - unit, -1, -unit)) / ', m): why
           for m, why in (
               ('return b"".join(chunk[i:i + unit] for i in range(len(chunk) + unit, -1, -unit)) / ',
                "the two extra start positions lie at or past the chunk's end and slice to nothing"),
               ('return b"".join(chunk[i:i + unit] for i in range(len(chunk) - unit, -2, -unit)) / ',
                "a chunk is whole units long, so the last start position is 0 with either stop"))},
        ("write_ram(self.mem, phys, chunk if step > 0 else _reverse_units(chunk, unit))",
         "write_ram(self.mem, phys, chunk if step >= 0 else _reverse_units(chunk, unit))"): _STEP,
        ("out += chunk if step > 0 else _reverse_units(chunk, unit)",
         "out += chunk if step >= 0 else _reverse_units(chunk, unit)"): _STEP,
        ("while k < n and self._in_ram(self._phys(channel, c.cur_addr + step * k), unit):",
         "while k <= n and self._in_ram(self._phys(channel, c.cur_addr + step * k), unit):"): _PARTIAL,
        **{("lo = c.cur_addr if step > 0 else c.cur_addr - n + 1", f"lo = c.cur_addr if step > 0 else {m}"):
           _PARTIAL for m in ("c.cur_addr + n + 1", "c.cur_addr - n - 1", "c.cur_addr - n + 2")},
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
        ('_extended_access(ctx, disk, "read")', '_extended_access(ctx, disk, "XXreadXX")'):
            "a read is whatever is neither \"write\", \"verify\" nor \"seek\": the name is never compared",
        ('flat = int.from_bytes(mem.read(pkt + 16, 8), "little") if size >= 0x18 else 0',
         'flat = int.from_bytes(mem.read(pkt + 16, 8), "little") if size >= 0x18 else 1'):
            "the flat address is used only when the packet is 0x18 bytes or longer, exactly when it is read",
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
        ("for i in range(max(1, min(size, 4))):", "for i in range(max(1, min(size, 5))):"): _WIDTH,
        ("chip.write(offset + i, value >> (8 * i)) / self._update() / ",
         "chip.write(offset - i, value >> (8 * i)) / self._update() / "):
            "a chip decodes only A0: offset + i and offset - i have the same parity",
        ('def load_state(self, state: dict, who: str = "pic") -> None:',
         'def load_state(self, state: dict, who: str = "XXpicXX") -> None:'):
            ("the default name appears only in the error message of a chip loaded on its own, "
             "which hv never does: the pair passes each chip's name"),
        ("self._lines = [PicLine(self, n) for n in range(16)]",
         "self._lines = [PicLine(self, n) for n in range(17)]"): ("``line(16)`` is refused by "
                                                                   "``_route`` before the list is indexed"),
    },
}
