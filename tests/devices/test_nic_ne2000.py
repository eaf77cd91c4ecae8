"""Register-level tests of the NE2000 model, driven through port I/O as a driver would."""
from __future__ import annotations

import binascii
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.devices.nic_ne2000 import ADDR_SPACE, Ne2000, mar_hash_index
from tests.asm import assemble
from tests.devices.harness import Harness, RecordingIrq
from tests.qemu_util import qemu_available

BASE = 0x300
CR, ISR, BNRY, TSR, RSR, CNTR2 = BASE + 0x00, BASE + 0x07, BASE + 0x03, BASE + 0x04, BASE + 0x0C, BASE + 0x0F
PSTART, PSTOP, TPSR, TBCR0, TBCR1 = BASE + 0x01, BASE + 0x02, BASE + 0x04, BASE + 0x05, BASE + 0x06
RSAR0, RSAR1, RBCR0, RBCR1 = BASE + 0x08, BASE + 0x09, BASE + 0x0A, BASE + 0x0B
RCR, TCR, DCR, IMR = BASE + 0x0C, BASE + 0x0D, BASE + 0x0E, BASE + 0x0F
PAR0, CURR, MAR0 = BASE + 0x01, BASE + 0x07, BASE + 0x08     # page 1
DATA, RESET = BASE + 0x10, BASE + 0x1F

STP, STA, TXP = 0x01, 0x02, 0x04
RREAD, RWRITE, SENDPKT, NODMA = 0x08, 0x10, 0x18, 0x20
PAGE0, PAGE1, PAGE2 = 0x00, 0x40, 0x80
PRX, PTX, OVW, CNT, RDC, RST = 0x01, 0x02, 0x10, 0x20, 0x40, 0x80
AB, AM, PRO = 0x04, 0x08, 0x10

MAC = bytes.fromhex("525400123456")
RX_START, RX_STOP = 0x4C, 0x80        # Linux ne.c: 6 pages of TX buffer at 0x40


class Wire:
    def __init__(self):
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)


def make(port=None, **kw):
    irq = RecordingIrq()
    nic = Ne2000(irq=irq, mac=MAC, port=port, **kw)
    return Harness(nic), nic, irq


def start(h, rcr=0, word=True, pstart=RX_START, pstop=RX_STOP, bnry=None, curr=None):
    """The usual driver bring-up: stopped, DCR, ring, PAR, CURR, then start."""
    h.outb(CR, PAGE0 | NODMA | STP)
    h.outb(DCR, 0x49 if word else 0x48)
    h.outb(RBCR0, 0)
    h.outb(RBCR1, 0)
    h.outb(RCR, rcr)
    h.outb(TCR, 0)
    h.outb(PSTART, pstart)
    h.outb(PSTOP, pstop)
    h.outb(BNRY, pstart if bnry is None else bnry)
    h.outb(ISR, 0xFF)
    h.outb(CR, PAGE1 | NODMA | STP)
    for i, b in enumerate(MAC):
        h.outb(PAR0 + i, b)
    h.outb(CURR, pstart if curr is None else curr)
    h.outb(CR, PAGE0 | NODMA | STA)


def remote(h, addr, count, cmd):
    h.outb(RBCR0, count & 0xFF)
    h.outb(RBCR1, count >> 8)
    h.outb(RSAR0, addr & 0xFF)
    h.outb(RSAR1, addr >> 8)
    h.outb(CR, cmd | STA)


def read_bytes(h, addr, count):
    remote(h, addr, count, RREAD)
    return bytes(h.inb(DATA) for _ in range(count))


def read_words(h, addr, count):
    remote(h, addr, count, RREAD)
    out = bytearray()
    for _ in range((count + 1) // 2):
        out += h.inw(DATA).to_bytes(2, "little")
    return bytes(out[:count])


def write_words(h, addr, data):
    data = data + b"\0" * (len(data) & 1)
    remote(h, addr, len(data), RWRITE)
    for i in range(0, len(data), 2):
        h.outw(DATA, data[i] | data[i + 1] << 8)


def frame_to(dest, length=100, fill=0xA5):
    return dest + MAC[::-1] + b"\x08\x00" + bytes([fill]) * (length - 14)


def ring_packet(h, page):
    """(status, next page, byte count, payload) of the packet at ``page``."""
    hdr = read_words(h, page << 8, 4)
    count = hdr[2] | hdr[3] << 8
    return hdr[0], hdr[1], count, hdr


# ---- board: PROM and reset ----------------------------------------------------

def test_prom_reads_the_mac_with_every_byte_doubled():
    h, nic, _ = make()
    start(h, word=False)
    prom = read_bytes(h, 0, 32)
    assert prom[0:12] == bytes(b for b in MAC for _ in (0, 1))


def test_prom_ends_with_the_ne2000_signature_0x57_0x57():
    h, nic, _ = make()
    start(h, word=True)
    prom = read_words(h, 0, 32)
    assert prom[28:32] == b"\x57\x57\x57\x57"


def test_reading_the_reset_port_sets_rst_and_stops_the_nic():
    h, nic, irq = make()
    start(h)
    assert h.inb(ISR) & RST == 0
    h.inb(RESET)
    h.outb(RESET, 0)
    assert h.inb(ISR) & RST
    assert h.inb(CR) & STP


def test_start_command_clears_rst():
    h, nic, _ = make()
    assert h.inb(ISR) & RST
    h.outb(CR, NODMA | STA)
    assert h.inb(ISR) & RST == 0


def test_writing_one_to_rst_does_not_clear_it():
    h, nic, _ = make()
    h.outb(ISR, 0xFF)
    assert h.inb(ISR) & RST


def test_tally_counters_read_zero_and_clear_when_read():
    # Linux ne.c's probe: write 0xFF to MAR5 (page 1 offset 0x0D), then CNTR0 must read 0.
    h, nic, _ = make()
    h.outb(CR, PAGE1 | NODMA | STP)
    h.outb(BASE + 0x0D, 0xFF)
    h.outb(CR, PAGE0 | NODMA | STP)
    assert h.inb(BASE + 0x0D) == 0


def test_a_byte_read_of_the_data_port_in_word_mode_gives_the_low_byte_and_moves_a_word():
    h, nic, _ = make()
    start(h, word=True)
    remote(h, 0, 4, RREAD)
    assert nic.read(0x10, 1) == MAC[0]         # the device's answer fits the access
    assert h.inb(RSAR0) == 2


def test_aligned_word_access_to_nic_registers_reads_all_ones_as_on_qemu():
    h, nic, _ = make()
    assert h.inw(BASE + 0x06) == 0xFFFF


def test_unaligned_word_access_reads_zero_as_on_qemu():
    h, nic, _ = make()
    assert h.inw(BASE + 0x07) == 0


# ---- registers ------------------------------------------------------------------

def test_page_select_switches_between_page0_and_page1_registers():
    h, nic, _ = make()
    start(h)
    h.outb(CR, PAGE1 | NODMA | STA)
    assert bytes(h.inb(PAR0 + i) for i in range(6)) == MAC
    h.outb(MAR0 + 3, 0x5A)
    assert h.inb(MAR0 + 3) == 0x5A
    h.outb(CR, PAGE0 | NODMA | STA)
    assert h.inb(BASE + 0x0B) != 0x5A          # page 0 offset 0x0B is not MAR3


def test_page2_reads_back_the_page0_write_only_registers():
    h, nic, _ = make()
    start(h, rcr=AB | AM)
    h.outb(TPSR, 0x40)
    h.outb(IMR, 0x15)
    h.outb(TCR, 0x02)
    h.outb(CR, PAGE2 | NODMA | STA)
    assert h.inb(BASE + 0x01) == RX_START
    assert h.inb(BASE + 0x02) == RX_STOP
    assert h.inb(BASE + 0x04) == 0x40
    assert h.inb(BASE + 0x0C) == AB | AM
    assert h.inb(BASE + 0x0D) == 0x02
    assert h.inb(BASE + 0x0E) & 0x01 == 0x01
    assert h.inb(BASE + 0x0F) == 0x15


def test_remote_write_then_remote_read_returns_the_bytes():
    h, nic, _ = make()
    start(h)
    data = bytes(range(200))
    write_words(h, 0x4000, data)
    assert read_words(h, 0x4000, 200) == data


def test_byte_mode_remote_write_then_read_returns_the_bytes():
    h, nic, _ = make()
    start(h, word=False)
    remote(h, 0x5001, 3, RWRITE)
    for b in b"abc":
        h.outb(DATA, b)
    assert read_bytes(h, 0x5001, 3) == b"abc"


def test_remote_dma_sets_rdc_and_advances_crda_when_the_count_runs_out():
    h, nic, _ = make()
    start(h)
    remote(h, 0x4100, 4, RREAD)
    h.inw(DATA)
    assert h.inb(ISR) & RDC == 0
    h.inw(DATA)
    assert h.inb(ISR) & RDC
    assert h.inb(RSAR0) | h.inb(RSAR1) << 8 == 0x4104


def test_remote_dma_of_zero_bytes_completes_at_once():
    h, nic, _ = make()
    start(h)
    remote(h, 0x4000, 0, RWRITE)
    assert h.inb(ISR) & RDC


def test_remote_writes_outside_ram_are_ignored():
    h, nic, _ = make()
    start(h)
    write_words(h, 0x0000, b"\0\0")
    write_words(h, 0x8000, b"\1\2")
    assert read_words(h, 0, 2) == bytes([MAC[0], MAC[0]])
    assert read_words(h, 0x8000, 2) == b"\xff\xff"


def test_remote_read_wraps_from_pstop_to_pstart():
    h, nic, _ = make()
    start(h)
    write_words(h, RX_START << 8, b"AB")
    write_words(h, (RX_STOP << 8) - 2, b"YZ")
    assert read_words(h, (RX_STOP << 8) - 2, 4) == b"YZAB"


# ---- transmit --------------------------------------------------------------------

def transmit(h, data, page=0x40):
    write_words(h, page << 8, data)
    h.outb(TPSR, page)
    h.outb(TBCR0, len(data) & 0xFF)
    h.outb(TBCR1, len(data) >> 8)
    h.outb(CR, NODMA | TXP | STA)


def test_transmit_sends_exactly_the_frame_padded_to_60_bytes():
    wire = Wire()
    h, nic, _ = make(port=wire)
    start(h)
    transmit(h, b"\xff" * 6 + MAC + b"\x08\x06" + b"hi")
    assert wire.frames == [b"\xff" * 6 + MAC + b"\x08\x06" + b"hi" + bytes(44)]


def test_transmit_of_a_long_frame_sends_it_unchanged():
    wire = Wire()
    h, nic, _ = make(port=wire)
    start(h)
    data = bytes(i & 0xFF for i in range(1514))
    transmit(h, data)
    assert wire.frames == [data]


def test_transmit_sets_ptx_in_isr_and_tsr_and_clears_txp():
    h, nic, _ = make(port=Wire())
    start(h)
    transmit(h, bytes(64))
    assert h.inb(ISR) & PTX
    assert h.inb(TSR) & 0x01
    assert h.inb(CR) & TXP == 0


def test_transmit_with_the_cable_unplugged_still_completes():
    h, nic, _ = make(port=None)
    start(h)
    transmit(h, bytes(64))
    assert h.inb(ISR) & PTX


def test_transmit_count_past_the_end_of_ram_is_cut_at_the_end():
    wire = Wire()
    h, nic, _ = make(port=wire)
    start(h)
    h.outb(TPSR, 0x7F)
    h.outb(TBCR0, 0xFF)
    h.outb(TBCR1, 0xFF)
    h.outb(CR, NODMA | TXP | STA)
    assert len(wire.frames[0]) == 256


def test_transmit_in_loopback_mode_does_not_reach_the_wire():
    wire = Wire()
    h, nic, _ = make(port=wire)
    start(h)
    h.outb(TCR, 0x02)
    transmit(h, bytes(64))
    assert wire.frames == [] and h.inb(ISR) & PTX


# ---- receive ------------------------------------------------------------------------

def test_unicast_frame_for_our_address_lands_in_the_ring_with_its_header():
    h, nic, _ = make()
    start(h)
    frame = frame_to(MAC, 100)
    assert nic.receive(frame) is True
    hdr = read_words(h, RX_START << 8, 4)
    assert hdr == bytes([0x01, RX_START + 1, 104, 0])
    assert read_words(h, (RX_START << 8) + 4, 100) == frame


def test_receive_advances_curr_past_the_packet_and_sets_prx():
    h, nic, _ = make()
    start(h)
    nic.receive(frame_to(MAC, 600))            # 604 + 4 CRC bytes = 3 pages
    h.outb(CR, PAGE1 | NODMA | STA)
    assert h.inb(CURR) == RX_START + 3
    h.outb(CR, PAGE0 | NODMA | STA)
    assert h.inb(ISR) & PRX
    assert h.inb(RSR) == 0x01


def test_unicast_frame_for_another_address_is_dropped():
    h, nic, _ = make()
    start(h)
    assert nic.receive(frame_to(bytes.fromhex("525400999999"))) is False
    assert h.inb(ISR) & PRX == 0


def test_broadcast_is_dropped_without_ab():
    h, nic, _ = make()
    start(h, rcr=0)
    assert nic.receive(frame_to(b"\xff" * 6)) is False


def test_broadcast_is_accepted_with_ab_and_marked_phy():
    h, nic, _ = make()
    start(h, rcr=AB)
    assert nic.receive(frame_to(b"\xff" * 6)) is True
    assert read_words(h, RX_START << 8, 1)[0] == 0x21


def test_multicast_hash_index_is_the_top_six_bits_of_the_ethernet_crc():
    dest = bytes.fromhex("01005e000001")
    reflected = binascii.crc32(dest) ^ 0xFFFFFFFF
    be = int(f"{reflected:032b}"[::-1], 2)
    assert mar_hash_index(dest) == be >> 26


def test_multicast_is_accepted_only_when_its_mar_bit_is_set():
    h, nic, _ = make()
    start(h, rcr=AM)
    dest = bytes.fromhex("01005e000001")
    assert nic.receive(frame_to(dest)) is False
    bit = mar_hash_index(dest)
    h.outb(CR, PAGE1 | NODMA | STA)
    h.outb(MAR0 + (bit >> 3), 1 << (bit & 7))
    h.outb(CR, PAGE0 | NODMA | STA)
    assert nic.receive(frame_to(dest)) is True


def test_multicast_is_dropped_without_am_even_if_the_hash_matches():
    h, nic, _ = make()
    start(h, rcr=0)
    h.outb(CR, PAGE1 | NODMA | STA)
    for i in range(8):
        h.outb(MAR0 + i, 0xFF)
    h.outb(CR, PAGE0 | NODMA | STA)
    assert nic.receive(frame_to(bytes.fromhex("01005e000001"))) is False


def test_promiscuous_mode_accepts_any_address():
    h, nic, _ = make()
    start(h, rcr=PRO)
    assert nic.receive(frame_to(bytes.fromhex("0a0b0c0d0e0f"))) is True


def test_short_frames_are_padded_to_60_bytes():
    h, nic, _ = make()
    start(h)
    assert nic.receive(MAC + b"x" * 10) is True
    assert read_words(h, RX_START << 8, 4)[2] == 64


def test_receive_wraps_at_pstop_to_pstart():
    h, nic, _ = make()
    start(h, bnry=RX_START + 2, curr=RX_STOP - 1)
    frame = frame_to(MAC, 400)                  # header + 252 bytes in the last page
    assert nic.receive(frame) is True
    hdr = read_words(h, (RX_STOP - 1) << 8, 4)
    assert hdr[1] == RX_START + 1               # 408 bytes -> 2 pages, wrapped
    # read it back the way a driver does: remote DMA wraps at PSTOP too
    assert read_words(h, ((RX_STOP - 1) << 8) + 4, 400) == frame
    assert read_words(h, RX_START << 8, 148) == frame[252:]


def test_full_ring_sets_ovw_and_drops_the_frame():
    h, nic, _ = make()
    start(h, bnry=RX_START + 2, curr=RX_START)   # two free pages, CURR may not reach BNRY
    assert nic.receive(frame_to(MAC, 600)) is False
    assert h.inb(ISR) & OVW
    assert h.inb(CNTR2) == 1
    h.outb(CR, PAGE1 | NODMA | STA)
    assert h.inb(CURR) == RX_START


def test_a_frame_that_exactly_fills_the_free_pages_is_refused_so_curr_never_reaches_bnry():
    h, nic, _ = make()
    start(h, bnry=RX_START + 2, curr=RX_START)   # two free pages
    exact = frame_to(MAC, 504)                   # 504 + 4 header + 4 CRC = 512 bytes: 2 pages
    assert nic.receive(exact) is False
    assert h.inb(ISR) & OVW and h.inb(CNTR2) == 1
    h.outb(CR, PAGE1 | NODMA | STA)
    assert h.inb(CURR) == RX_START


def test_a_frame_one_page_short_of_the_free_space_is_stored_and_the_next_is_refused():
    h, nic, _ = make()
    start(h, bnry=RX_START + 2, curr=RX_START)
    assert nic.receive(frame_to(MAC, 248)) is True   # 248 + 8 = 256 bytes: 1 page
    h.outb(CR, PAGE1 | NODMA | STA)
    assert h.inb(CURR) == RX_START + 1
    h.outb(CR, PAGE0 | NODMA | STA)
    assert nic.receive(frame_to(MAC, 60)) is False  # one page left: it would reach BNRY
    assert h.inb(ISR) & OVW


def test_an_exactly_full_ring_after_wrapping_is_refused_too():
    h, nic, _ = make()
    start(h, bnry=RX_START + 1, curr=RX_STOP - 1)   # free: the last page and the first
    assert nic.receive(frame_to(MAC, 504)) is False
    assert nic.receive(frame_to(MAC, 248)) is True
    assert nic.curr == RX_START and nic.bnry == RX_START + 1


def test_frames_fill_the_ring_until_it_overflows_without_crashing():
    h, nic, _ = make()
    start(h)
    accepted = [nic.receive(frame_to(MAC, 1514)) for _ in range(20)]
    assert accepted[:5] == [True] * 5
    assert accepted[-1] is False
    assert h.inb(ISR) & OVW


def test_stopped_nic_drops_frames():
    h, nic, _ = make()
    start(h)
    h.outb(CR, NODMA | STP)
    assert nic.receive(frame_to(MAC)) is False


def test_ring_pointers_outside_ram_drop_frames():
    h, nic, _ = make()
    start(h, pstart=0x10, pstop=0xF0)
    assert nic.receive(frame_to(MAC)) is False


def test_send_packet_command_reads_the_packet_at_bnry():
    h, nic, _ = make()
    start(h)
    frame = frame_to(MAC, 80)
    nic.receive(frame)
    h.outb(CR, SENDPKT | STA)
    data = bytearray()
    for _ in range(100):                         # 84 bytes: 42 words, then RDC
        if h.inb(ISR) & RDC:
            break
        data += h.inw(DATA).to_bytes(2, "little")
    assert h.inb(ISR) & RDC and len(data) == 84
    assert bytes(data[4:84]) == frame


# ---- interrupts ----------------------------------------------------------------------

def test_isr_bits_clear_by_writing_ones():
    h, nic, _ = make()
    start(h)
    nic.receive(frame_to(MAC))
    transmit(h, bytes(60))
    h.outb(ISR, PRX)
    assert h.inb(ISR) & (PRX | PTX) == PTX


def test_irq_is_raised_only_when_an_isr_bit_is_unmasked():
    h, nic, irq = make()
    start(h)
    nic.receive(frame_to(MAC))
    assert irq.level is False
    h.outb(IMR, PRX)
    assert irq.level is True


def test_irq_drops_when_the_isr_bit_is_cleared():
    h, nic, irq = make()
    start(h)
    h.outb(IMR, PRX | PTX)
    nic.receive(frame_to(MAC))
    assert irq.level is True
    h.outb(ISR, PRX)
    assert irq.level is False


def test_reset_alone_does_not_raise_the_irq():
    h, nic, irq = make()
    start(h)
    h.outb(IMR, 0x7F)
    h.inb(RESET)
    assert irq.level is False


def test_board_takes_its_base_and_isa_irq_from_the_constructor():
    nic = Ne2000(irq=None, base=0x280, isa_irq=10)
    assert nic.ports[0].base == 0x280 and nic.ports[0].length == 0x20 and nic.irq == 10


# ---- hostile guests and hostile wires ------------------------------------------------------

access = st.tuples(st.integers(0, 0x1F), st.sampled_from([1, 2, 4]), st.integers(0, 0xFFFFFFFF),
                   st.booleans())
event = st.one_of(access, st.binary(min_size=0, max_size=2000))


def check_receive(nic, frame, stored, before, mem_before):
    """What one frame from the wire may do to the ring: a stored frame lands between
    PSTART and PSTOP behind a header naming the next page, CURR moves on and stays short
    of BNRY; a refused one changes neither the ring nor CURR."""
    curr0 = before
    if not stored:
        assert nic.curr == curr0 and bytes(nic._mem) == mem_before
        return
    start, stop = nic.pstart, nic.pstop
    assert start <= curr0 < stop and start <= nic.curr < stop   # CURR stays in the ring
    assert nic.curr != nic.bnry                                  # never catches up with BNRY
    hdr = nic._mem[curr0 << 8:(curr0 << 8) + 4]
    size = max(len(frame), 60) if not nic.rcr & 0x02 else len(frame)
    assert hdr[1] == nic.curr and hdr[2] | hdr[3] << 8 == size + 4
    lo, hi = start << 8, stop << 8                               # nothing outside the ring
    assert nic._mem[:lo] == mem_before[:lo] and nic._mem[hi:] == mem_before[hi:]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(event, max_size=60), prestart=st.booleans(), rcr=st.integers(0, 0xFF))
def test_random_port_accesses_and_frames_keep_the_ring_pointers_and_interrupt_line_right(
        events, prestart, rcr):
    h, nic, irq = make(port=Wire())
    if prestart:
        start(h, rcr=rcr)
    for ev in events:
        if isinstance(ev, bytes):
            curr, mem = nic.curr, bytes(nic._mem)
            stored = nic.receive(ev)
            check_receive(nic, ev, stored, curr, mem)
            continue
        off, size, value, is_write = ev
        if is_write:
            h.bus.write(BASE + off, size, value & ((1 << 8 * size) - 1))
        else:
            got = nic.read(off, size)                 # the device's own answer
            assert 0 <= got < 1 << (8 * size)
        assert len(nic._mem) == ADDR_SPACE + 4
        assert 0 <= nic.rsar <= 0xFFFF and 0 <= nic.rbcr <= 0xFFFF
        assert nic.isr & 0x7F & ~0x7F == 0 and 0 <= nic.imr <= 0x7F   # RST never masks in
        assert irq.level == bool(nic.isr & nic.imr & 0x7F)
        if nic.cr & 0x01:
            assert nic.isr & 0x80                     # stopped: RST says so
    assert len(nic._mem) == ADDR_SPACE + 4


@settings(max_examples=200, deadline=None)
@given(regs=st.lists(st.tuples(st.integers(1, 0x0F), st.integers(0, 0xFF)), max_size=30),
       frames=st.lists(st.binary(min_size=0, max_size=2000), max_size=10))
def test_any_ring_programming_then_frames_never_write_outside_ram(regs, frames):
    h, nic, _ = make()
    for page in (PAGE0, PAGE1):
        h.outb(CR, page | NODMA | STA)
        for off, v in regs:
            h.outb(BASE + off, v)
    h.outb(CR, PAGE0 | NODMA | STA)
    h.outb(RCR, PRO)
    outside = bytes(nic._mem[0x8000:])
    prom = bytes(nic._mem[:0x4000])
    for f in frames:
        curr, mem = nic.curr, bytes(nic._mem)
        check_receive(nic, f, nic.receive(f), curr, mem)
    assert bytes(nic._mem[0x8000:]) == outside and bytes(nic._mem[:0x4000]) == prom


def test_can_receive_says_false_when_a_full_size_frame_would_not_fit():
    h, nic, _ = make()
    start(h)
    assert nic.can_receive() is True
    stored = 0
    while stored < 20 and nic.receive(frame_to(MAC, 1514)):
        stored += 1
    assert stored == 8                           # 52 pages of ring, 6 pages a frame
    assert nic.can_receive() is False



# ---- the same register sequence against QEMU's ne2k_isa --------------------------------------
# A table-driven boot sector does the port I/O and prints every value it reads on COM1;
# the model replays the table. Reads where this model follows the datasheet on purpose
# (see the module docstring) carry a label in XCHECK_SKIP.

XCHECK_SKIP = {"prom-reserved", "stp-sets-rst"}
OUTB, OUTW, INB, INW, END = 1, 2, 3, 4, 0


def xcheck_ops():
    ops = []
    B = BASE

    def outb(p, v):
        ops.append((OUTB, p, v))

    def outw(p, v):
        ops.append((OUTW, p, v))

    def inb(p, label=None):
        ops.append((INB, p, label))

    def inw(p, label=None):
        ops.append((INW, p, label))

    inb(B + 0x1F); outb(B + 0x1F, 0); inb(B + 7)                        # reset port, ISR.RST
    outb(B, 0x21); inb(B)
    outb(B, 0x61); outb(B + 0x0D, 0xFF); outb(B, 0x21); inb(B + 0x0D)   # Linux ne.c probe
    outb(B + 0x0E, 0x48); outb(B + 0x0A, 32); outb(B + 0x0B, 0)         # PROM, byte mode
    outb(B + 0x08, 0); outb(B + 0x09, 0); outb(B, 0x0A)
    for i in range(32):
        inb(B + 0x10, "prom-reserved" if 12 <= i < 28 else None)
    inb(B + 7); inb(B + 8); inb(B + 9)
    outb(B + 7, 0x40); inb(B + 7)
    outb(B, 0x21); outb(B + 0x0E, 0x49)                                  # word mode, ring
    outb(B + 0x01, 0x4C); outb(B + 0x02, 0x80); outb(B + 0x03, 0x4C)
    outb(B + 0x0C, 0x04); outb(B + 0x0D, 0)
    outb(B + 0x0A, 0); outb(B + 0x0B, 0); outb(B + 0x04, 0x40)
    outb(B, 0x22); inb(B + 7)                                            # STA clears RST
    outb(B + 0x0A, 8); outb(B + 0x0B, 0); outb(B + 0x08, 0); outb(B + 0x09, 0x40); outb(B, 0x12)
    for v in (0x1111, 0x2222, 0x3333, 0x4444):
        outw(B + 0x10, v)
    inb(B + 7); outb(B + 7, 0xFF); inb(B + 7)
    outb(B + 0x0A, 0); outb(B + 0x0B, 0); outb(B, 0x12); inb(B + 7); outb(B + 7, 0x40)  # RBCR=0
    outb(B + 0x0A, 6); outb(B + 0x0B, 0); outb(B + 0x08, 0xFF); outb(B + 0x09, 0x3F); outb(B, 0x0A)
    for _ in range(3):
        inw(B + 0x10)                                                    # odd 0x3FFF: hole, RAM
    inb(B + 8); inb(B + 9)
    outb(B + 0x0A, 4); outb(B + 0x0B, 0); outb(B + 0x08, 0xFE); outb(B + 0x09, 0x7F); outb(B, 0x0A)
    inw(B + 0x10); inw(B + 0x10); inb(B + 8); inb(B + 9)                 # wrap PSTOP -> PSTART
    outb(B + 0x0F, 0x3F); outb(B + 0x05, 8); outb(B + 0x06, 0); outb(B, 0x26)   # transmit
    inb(B); inb(B + 4); inb(B + 7)
    outb(B, 0xA2); inb(B + 1); inb(B + 2)                                # page 2 PSTART/PSTOP
    outb(B, 0x62); inb(B + 7); outb(B + 7, 0x4D); inb(B + 7); inb(B + 1)
    outb(B, 0x22); inb(B + 0x0A); inb(B + 0x0B); inb(B + 0x0D); inb(B + 0x0E); inb(B + 0x0F)
    inw(B + 7); inb(B + 0x11); inb(B + 0x18)                             # unaligned word, holes
    outb(B, 0x21); inb(B + 7, "stp-sets-rst")
    ops.append((END, 0, 0))
    return ops


def xcheck_image(ops) -> bytes:
    table = "".join(f".byte {k}\n.word {p}, {v if k in (OUTB, OUTW) else 0}\n" for k, p, v in ops)
    src = f"""
    cli
    xor %ax,%ax; mov %ax,%ds; mov %ax,%es; mov %ax,%ss; mov $0x7c00,%sp
    mov $0x0208,%ax; mov $0x7e00,%bx; mov $0x0002,%cx; xor %dh,%dh; int $0x13
    mov $table,%si
next:
    lodsb; mov %al,%bl
    lodsw; mov %ax,%dx
    lodsw
    cmp $0,%bl; je done
    cmp $1,%bl; jne 1f; out %al,%dx; jmp next
1:  cmp $2,%bl; jne 2f; out %ax,%dx; jmp next
2:  cmp $3,%bl; jne 3f; in %dx,%al; call hex8; call sp; jmp next
3:  in %dx,%ax; push %ax; mov %ah,%al; call hex8; pop %ax; call hex8; call sp; jmp next
done:
    mov $'E',%al; call putc; mov $10,%al; call putc
4:  hlt; jmp 4b
sp: mov $' ',%al
putc: push %dx; mov $0x3f8,%dx; out %al,%dx; pop %dx; ret
hex8: push %ax; shr $4,%al; call nib; pop %ax
nib: and $0x0f,%al; add $'0',%al; cmp $'9',%al; jbe putc; add $7,%al; jmp putc
    .org 510
    .word 0xaa55
table:
{table}
    .org 4608
"""
    return assemble(src, boot_sector=False)


def xcheck_qemu(ops) -> list[str]:
    with tempfile.TemporaryDirectory() as td:
        disk = Path(td, "d.img")
        disk.write_bytes(xcheck_image(ops).ljust(1_474_560, b"\0"))
        proc = subprocess.Popen(
            ["qemu-system-i386", "-display", "none", "-serial", "stdio", "-monitor", "none",
             "-no-reboot", "-m", "32", "-drive", f"file={disk},if=floppy,format=raw,index=0",
             "-boot", "a", "-nic", "none",
             "-device", "ne2k_isa,iobase=0x300,irq=9,mac=52:54:00:12:34:56"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        out = b""
        deadline = time.monotonic() + 30
        try:
            while b"E\n" not in out and time.monotonic() < deadline:
                if select.select([proc.stdout], [], [], 0.2)[0]:
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    out += chunk
        finally:
            proc.kill()
            proc.wait()
    text = out.decode("latin-1")
    assert "E\n" in text, f"guest did not finish: {text!r}"
    return text[:text.index("E\n")].split()


def xcheck_model(ops) -> list[str]:
    h = Harness(Ne2000(irq=None, mac=MAC))
    vals = []
    for k, p, v in ops:
        if k == OUTB:
            h.outb(p, v)
        elif k == OUTW:
            h.outw(p, v)
        elif k == INB:
            vals.append(f"{h.inb(p):02X}")
        elif k == INW:
            vals.append(f"{h.inw(p):04X}")
    return vals


@pytest.mark.skipif(not qemu_available(), reason="qemu-system-i386 not installed")
def test_register_and_remote_dma_reads_match_qemu_ne2k_isa():
    ops = xcheck_ops()
    labels = [v for k, p, v in ops if k in (INB, INW)]
    qemu, model = xcheck_qemu(ops), xcheck_model(ops)
    assert len(qemu) == len(model) == len(labels)
    diffs = [(i, q, m) for i, (q, m, lab) in enumerate(zip(qemu, model, labels))
             if lab not in XCHECK_SKIP and q != m]
    assert diffs == []
