import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hv import fastpath
from hv.devices.pic8259 import DualPic8259, Pic8259
from tests.devices.harness import Harness

MASTER_CMD, MASTER_DATA, SLAVE_CMD, SLAVE_DATA = 0x20, 0x21, 0xA0, 0xA1
EOI = 0x20
READ_IRR, READ_ISR, POLL = 0x0A, 0x0B, 0x0C


def bios_init(h, aeoi=False, sfnm=False):
    """The PC BIOS sequence: ICW1 edge+ICW4, ICW2 base, ICW3 cascade, ICW4 8086."""
    icw4 = 0x01 | (0x02 if aeoi else 0) | (0x10 if sfnm else 0)
    for cmd, data, base, icw3 in ((MASTER_CMD, MASTER_DATA, 0x08, 0x04),
                                  (SLAVE_CMD, SLAVE_DATA, 0x70, 0x02)):
        h.outb(cmd, 0x11)
        h.outb(data, base)
        h.outb(data, icw3)
        h.outb(data, icw4)


def make(**kw):
    pic = DualPic8259()
    h = Harness(pic)
    bios_init(h, **kw)
    return pic, h


def test_power_on_pic_raises_no_interrupt_even_with_a_request():
    pic = DualPic8259()
    pic.line(0).pulse()
    assert not pic.has_interrupt()
    assert pic.master.imr == 0xFF


def test_uninitialized_pic_stays_quiet_after_ocw1_unmask():
    pic = DualPic8259()
    h = Harness(pic)
    h.outb(MASTER_DATA, 0x00)
    pic.line(1).pulse()
    assert not pic.has_interrupt


def test_bios_init_sequence_sets_vector_bases():
    pic, h = make()
    pic.line(0).pulse()
    assert pic.acknowledge() == 0x08
    h.outb(MASTER_CMD, EOI)
    pic.line(8).pulse()
    assert pic.acknowledge() == 0x70


def test_icw1_clears_imr_and_icw_sequence_without_icw3_in_single_mode():
    pic = Pic8259()
    pic.write(0, 0x13)          # ICW1: single, ICW4 needed
    pic.write(1, 0x40)          # ICW2
    pic.write(1, 0x03)          # ICW4 (no ICW3 in single mode): AEOI
    assert pic.ready and pic.auto_eoi and pic.vector_base == 0x40
    assert pic.imr == 0
    pic.write(1, 0xFE)          # now OCW1
    assert pic.imr == 0xFE


def test_icw_sequence_without_icw4_ends_after_icw3():
    pic = Pic8259()
    pic.write(0, 0x10)          # ICW1: cascade, no ICW4
    pic.write(1, 0x20)
    pic.write(1, 0x04)
    assert pic.ready
    pic.write(1, 0x55)
    assert pic.imr == 0x55


def test_rising_edge_raises_intr_and_acknowledge_returns_vector():
    pic, h = make()
    pic.line(1).set_level(True)
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x09
    assert not pic.has_interrupt()


def test_on_intr_callback_reports_intr_changes():
    pic, h = make()
    seen = []
    pic.on_intr = seen.append
    pic.line(3).pulse()
    assert seen[-1] is True
    pic.acknowledge()
    assert seen[-1] is False


def test_request_stays_in_irr_until_acknowledged():
    pic, h = make()
    h.outb(MASTER_DATA, 0xFF)
    pic.line(4).pulse()
    h.outb(MASTER_CMD, READ_IRR)
    assert h.inb(MASTER_CMD) & 0x10
    h.outb(MASTER_DATA, 0x00)
    assert pic.acknowledge() == 0x0C
    assert not h.inb(MASTER_CMD) & 0x10


def test_lowering_line_before_inta_withdraws_request_and_gives_spurious_irq7():
    pic, h = make()
    pic.line(5).set_level(True)
    assert pic.has_interrupt()
    pic.line(5).set_level(False)
    assert not pic.has_interrupt()
    assert pic.acknowledge() == 0x0F
    h.outb(MASTER_CMD, READ_ISR)
    assert h.inb(MASTER_CMD) == 0     # spurious IRQ 7 sets no ISR bit
    assert pic.master.spurious == 1


def test_held_high_line_needs_a_new_edge_for_a_second_interrupt():
    pic, h = make()
    pic.line(1).set_level(True)
    pic.acknowledge()
    h.outb(MASTER_CMD, EOI)
    assert not pic.has_interrupt()
    pic.line(1).set_level(False)
    pic.line(1).set_level(True)
    assert pic.has_interrupt()


def test_masked_request_does_not_interrupt_until_unmasked():
    pic, h = make()
    h.outb(MASTER_DATA, 0x02)
    pic.line(1).pulse()
    assert not pic.has_interrupt()
    assert h.inb(MASTER_DATA) == 0x02
    h.outb(MASTER_DATA, 0x00)
    assert pic.has_interrupt()


def test_fixed_priority_serves_lowest_numbered_irq_first():
    pic, h = make()
    pic.line(6).pulse()
    pic.line(3).pulse()
    assert pic.acknowledge() == 0x0B
    h.outb(MASTER_CMD, EOI)
    assert pic.acknowledge() == 0x0E


def test_in_service_irq_blocks_lower_priority_but_not_higher():
    pic, h = make()
    pic.line(3).pulse()
    pic.acknowledge()
    pic.line(5).pulse()
    assert not pic.has_interrupt()
    pic.line(1).pulse()
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x09


def test_nonspecific_eoi_clears_highest_priority_in_service():
    pic, h = make()
    pic.line(4).pulse()
    pic.acknowledge()
    pic.line(1).pulse()
    pic.acknowledge()
    h.outb(MASTER_CMD, READ_ISR)
    assert h.inb(MASTER_CMD) == 0x12
    h.outb(MASTER_CMD, EOI)
    assert h.inb(MASTER_CMD) == 0x10


def test_specific_eoi_clears_named_level_only():
    pic, h = make()
    pic.line(4).pulse()
    pic.acknowledge()
    pic.line(1).pulse()
    pic.acknowledge()
    h.outb(MASTER_CMD, 0x60 | 4)      # specific EOI, level 4
    h.outb(MASTER_CMD, READ_ISR)
    assert h.inb(MASTER_CMD) == 0x02


def test_rotate_on_nonspecific_eoi_makes_served_level_lowest():
    pic, h = make()
    pic.line(0).pulse()
    pic.acknowledge()
    h.outb(MASTER_CMD, 0xA0)          # rotate on non-specific EOI
    pic.line(0).pulse()
    pic.line(1).pulse()
    assert pic.acknowledge() == 0x09  # IR0 is now lowest priority


def test_set_priority_command_rotates_priority():
    pic, h = make()
    h.outb(MASTER_CMD, 0xC0 | 4)      # IR4 lowest -> IR5 highest
    pic.line(3).pulse()
    pic.line(6).pulse()
    assert pic.acknowledge() == 0x0E


def test_rotate_on_specific_eoi_sets_lowest_priority():
    pic, h = make()
    pic.line(3).pulse()
    pic.acknowledge()
    h.outb(MASTER_CMD, 0xE0 | 3)      # rotate on specific EOI 3
    assert pic.master.isr == 0 and pic.master.lowest == 3


def test_auto_eoi_leaves_isr_clear():
    pic, h = make(aeoi=True)
    pic.line(1).pulse()
    assert pic.acknowledge() == 0x09
    h.outb(MASTER_CMD, READ_ISR)
    assert h.inb(MASTER_CMD) == 0
    pic.line(4).pulse()
    assert pic.has_interrupt()


def test_rotate_in_auto_eoi_mode_rotates_after_each_inta():
    pic, h = make(aeoi=True)
    h.outb(MASTER_CMD, 0x80)          # rotate in AEOI mode (set)
    pic.line(0).pulse()
    pic.acknowledge()
    pic.line(0).pulse()
    pic.line(1).pulse()
    assert pic.acknowledge() == 0x09


def test_irq8_is_delivered_through_cascade_with_slave_vector():
    pic, h = make()
    pic.line(8).pulse()
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x70
    h.outb(MASTER_CMD, READ_ISR)
    h.outb(SLAVE_CMD, READ_ISR)
    assert h.inb(MASTER_CMD) == 0x04
    assert h.inb(SLAVE_CMD) == 0x01


def test_irq14_vector_and_eoi_to_both_chips_clears_service():
    pic, h = make()
    pic.line(14).pulse()
    assert pic.acknowledge() == 0x76
    h.outb(SLAVE_CMD, EOI)
    h.outb(MASTER_CMD, EOI)
    assert pic.master.isr == 0 and pic.slave.isr == 0


def test_masking_irq2_on_master_blocks_slave_interrupts():
    pic, h = make()
    h.outb(MASTER_DATA, 0x04)
    pic.line(12).pulse()
    assert not pic.has_interrupt()


def test_isa_irq2_is_redirected_to_irq9():
    pic, h = make()
    pic.line(2).pulse()
    assert pic.acknowledge() == 0x71


def test_second_slave_request_reaches_cpu_after_slave_then_master_eoi():
    pic, h = make()
    pic.line(9).pulse()
    pic.line(11).pulse()
    assert pic.acknowledge() == 0x71
    assert not pic.has_interrupt()
    h.outb(SLAVE_CMD, EOI)
    h.outb(MASTER_CMD, EOI)
    assert pic.acknowledge() == 0x73


def test_slave_in_auto_eoi_delivers_back_to_back_requests():
    pic, h = make(aeoi=True)
    pic.line(9).pulse()
    pic.line(11).pulse()
    assert pic.acknowledge() == 0x71
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x73


def test_special_fully_nested_lets_higher_slave_irq_through_in_service_cascade():
    pic, h = make(sfnm=True)
    pic.line(12).pulse()
    assert pic.acknowledge() == 0x74
    pic.line(9).pulse()
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x71


def test_without_sfnm_higher_slave_irq_waits_for_master_eoi():
    pic, h = make()
    pic.line(12).pulse()
    pic.acknowledge()
    pic.line(9).pulse()
    assert not pic.has_interrupt()
    h.outb(MASTER_CMD, EOI)
    assert pic.acknowledge() == 0x71


def test_slave_spurious_gives_irq15_vector_and_leaves_master_ir2_in_service():
    pic, h = make()
    # INT from the slave was seen on IR2, then the request vanished before INTA.
    pic.master.irr |= 0x04
    assert pic.acknowledge() == 0x77
    assert pic.slave.isr == 0
    assert pic.master.isr == 0x04
    assert pic.slave.spurious == 1


def test_ocw3_selects_irr_or_isr_for_reads():
    pic, h = make()
    pic.line(3).pulse()
    pic.acknowledge()
    pic.line(5).pulse()
    h.outb(MASTER_CMD, READ_IRR)
    assert h.inb(MASTER_CMD) == 0x20
    h.outb(MASTER_CMD, READ_ISR)
    assert h.inb(MASTER_CMD) == 0x08


def test_poll_command_returns_level_and_acknowledges():
    pic, h = make()
    h.outb(MASTER_DATA, 0xFF)         # polling works with the CPU's INTR unused
    h.outb(MASTER_DATA, 0x00)
    pic.line(6).pulse()
    h.outb(MASTER_CMD, POLL)
    assert h.inb(MASTER_CMD) == 0x86
    assert pic.master.isr == 0x40
    assert not pic.has_interrupt()


def test_poll_with_nothing_pending_reports_no_interrupt():
    pic, h = make()
    h.outb(MASTER_CMD, POLL)
    assert h.inb(MASTER_CMD) & 0x80 == 0


def test_special_mask_mode_allows_lower_priority_while_in_service_level_masked():
    pic, h = make()
    pic.line(3).pulse()
    pic.acknowledge()
    pic.line(5).pulse()
    assert not pic.has_interrupt()
    h.outb(MASTER_DATA, 0x08)         # mask IR3 (in service)
    h.outb(MASTER_CMD, 0x68)          # OCW3: ESMM + SMM
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x0D
    h.outb(MASTER_CMD, 0x48)          # reset special mask mode
    assert pic.master.special_mask is False


def test_word_write_to_master_ports_is_two_byte_cycles():
    pic, h = make()
    h.outw(MASTER_CMD, 0xAB0A)        # 0x20 <- OCW3 read IRR, 0x21 <- IMR 0xAB
    assert h.inb(MASTER_DATA) == 0xAB
    assert h.inw(SLAVE_CMD) & 0xFF00 == 0


def test_level_mode_rerequests_after_eoi_while_line_high():
    pic = DualPic8259()
    h = Harness(pic)
    h.outb(MASTER_CMD, 0x19)          # ICW1: LTIM, cascade, ICW4
    h.outb(MASTER_DATA, 0x08)
    h.outb(MASTER_DATA, 0x04)
    h.outb(MASTER_DATA, 0x01)
    pic.line(5).set_level(True)
    assert pic.acknowledge() == 0x0D
    h.outb(MASTER_CMD, EOI)
    assert pic.has_interrupt()


def test_reset_returns_to_quiet_power_on_state():
    pic, h = make()
    pic.line(1).pulse()
    pic.reset()
    assert not pic.has_interrupt()
    assert pic.master.imr == 0xFF and pic.master.irr == 0


def test_after_reset_a_new_request_raises_no_interrupt_and_irr_isr_read_zero():
    pic, h = make()
    pic.line(1).pulse()
    pic.acknowledge()
    pic.reset()
    pic.line(4).pulse()
    assert not pic.has_interrupt()
    h.outb(MASTER_CMD, READ_ISR)
    assert h.inb(MASTER_CMD) == 0
    assert h.inb(MASTER_DATA) == 0xFF and h.inb(SLAVE_DATA) == 0xFF


def test_reset_pic_needs_the_whole_icw_sequence_again():
    pic, h = make()
    pic.reset()
    h.outb(MASTER_DATA, 0x00)                 # an OCW1, not an ICW2: still not ready
    pic.line(0).pulse()
    assert not pic.has_interrupt()
    bios_init(h)
    pic.line(0).pulse()
    assert pic.acknowledge() == 0x08


def test_ocw3_without_rr_keeps_the_register_read_selection():
    pic, h = make()
    pic.line(3).pulse()
    pic.acknowledge()
    pic.line(5).pulse()
    h.outb(MASTER_CMD, READ_ISR)
    h.outb(MASTER_CMD, 0x08)                  # OCW3: RR=0 RIS=0: no change
    assert h.inb(MASTER_CMD) == 0x08
    h.outb(MASTER_CMD, READ_IRR)
    h.outb(MASTER_CMD, 0x09)                  # OCW3: RR=0 RIS=1: no change either
    assert h.inb(MASTER_CMD) == 0x20


def test_ocw3_smm_without_esmm_leaves_special_mask_mode_alone():
    pic, h = make()
    h.outb(MASTER_CMD, 0x28)                  # SMM=1, ESMM=0
    assert pic.master.special_mask is False
    h.outb(MASTER_CMD, 0x68)                  # SMM=1, ESMM=1
    assert pic.master.special_mask is True
    h.outb(MASTER_CMD, 0x08)                  # ESMM=0: unchanged
    assert pic.master.special_mask is True


def test_a_spurious_inta_before_initialization_gives_vector_7():
    pic = DualPic8259()
    assert pic.acknowledge() == 0x07 and pic.master.spurious == 1


def test_before_initialization_command_port_reads_give_irr():
    pic = DualPic8259()
    h = Harness(pic)
    pic.line(4).set_level(True)
    assert h.inb(MASTER_CMD) == 0x10
    pic.reset()
    pic.line(5).pulse()
    assert h.inb(MASTER_CMD) == 0x20


def test_ocw2_nop_changes_nothing():
    pic, h = make()
    pic.line(3).pulse()
    pic.acknowledge()
    h.outb(MASTER_CMD, 0x40)                  # OCW2 R SL EOI = 010: no operation
    assert pic.master.isr == 0x08 and pic.master.lowest == 7


def test_rotate_on_nonspecific_eoi_with_nothing_in_service_keeps_the_priority():
    pic, h = make()
    h.outb(MASTER_CMD, 0xA0)                  # nothing in service: no EOI, no rotation
    pic.line(5).pulse()
    pic.line(0).pulse()
    assert pic.acknowledge() == 0x08


def test_level_mode_inta_of_a_pulse_consumes_the_request():
    pic = DualPic8259()
    h = Harness(pic)
    h.outb(MASTER_CMD, 0x19)                  # ICW1: LTIM, cascade, ICW4
    h.outb(MASTER_DATA, 0x08)
    h.outb(MASTER_DATA, 0x04)
    h.outb(MASTER_DATA, 0x01)
    pic.line(5).pulse()                       # the line is low again after the pulse
    assert pic.acknowledge() == 0x0D
    h.outb(MASTER_CMD, EOI)
    assert not pic.has_interrupt()


def test_the_pair_answers_at_20h_and_a0h_as_pic_with_a_master_and_a_slave():
    pic = DualPic8259()
    assert pic.name == "pic"
    assert [(r.base, r.length, r.bias) for r in pic.ports] == [(0x20, 2, 0), (0xA0, 2, 0x80)]
    assert pic.master.master and not pic.slave.master


def test_isa_lines_are_0_to_15_and_start_low():
    pic = DualPic8259()
    with pytest.raises(ValueError):
        pic.line(16)
    with pytest.raises(ValueError):
        pic.set_irq(-1, True)
    assert pic.line(15).level is False
    pic.line(3).set_level(True)
    assert pic.line(3).level is True
    pic.reset()
    assert pic.line(3).level is False


def test_a_second_line_going_high_keeps_the_first_lines_level_for_edge_detection():
    pic, h = make()
    pic.line(1).set_level(True)
    assert pic.acknowledge() == 0x09
    h.outb(MASTER_CMD, EOI)
    pic.line(3).set_level(True)
    assert pic.acknowledge() == 0x0B
    h.outb(MASTER_CMD, EOI)
    pic.line(1).set_level(True)               # still high: no new edge, no request
    assert not pic.has_interrupt()


def test_poll_with_irq0_pending_reports_level_0():
    pic, h = make()
    pic.line(0).pulse()
    h.outb(MASTER_CMD, POLL)
    assert h.inb(MASTER_CMD) == 0x80


def test_icw1_selects_irr_for_reads_again():
    pic, h = make()
    h.outb(MASTER_CMD, READ_ISR)
    bios_init(h)
    pic.line(4).pulse()
    assert h.inb(MASTER_CMD) == 0x10


def test_icw1_without_ic4_turns_auto_eoi_and_sfnm_off():
    pic, h = make(aeoi=True, sfnm=True)
    h.outb(MASTER_CMD, 0x10)                  # ICW1 without IC4: ICW2, ICW3, no ICW4
    h.outb(MASTER_DATA, 0x08)
    h.outb(MASTER_DATA, 0x04)
    assert not pic.master.auto_eoi and not pic.master.sfnm
    pic.line(1).pulse()
    pic.acknowledge()
    assert pic.master.isr == 0x02             # no automatic EOI any more


def test_icw2_takes_only_bits_7_to_3_for_the_vector_base():
    pic = DualPic8259()
    h = Harness(pic)
    h.outb(MASTER_CMD, 0x11)
    h.outb(MASTER_DATA, 0x0F)
    h.outb(MASTER_DATA, 0x04)
    h.outb(MASTER_DATA, 0x01)
    pic.line(0).pulse()
    assert pic.acknowledge() == 0x08


def test_plain_eois_do_not_rotate_priorities():
    pic, h = make()
    for eoi in (EOI, 0x60 | 3):               # non-specific, then specific for IR3
        pic.line(3).pulse()
        pic.acknowledge()
        h.outb(MASTER_CMD, eoi)
        pic.line(4).pulse()
        pic.line(0).pulse()
        assert pic.acknowledge() == 0x08      # IR0 still highest
        h.outb(MASTER_CMD, EOI)
        assert pic.acknowledge() == 0x0C
        h.outb(MASTER_CMD, EOI)


def test_rotate_in_auto_eoi_mode_can_be_cleared_again():
    pic, h = make(aeoi=True)
    h.outb(MASTER_CMD, 0x80)                  # rotate in AEOI: set
    h.outb(MASTER_CMD, 0x00)                  # rotate in AEOI: clear
    pic.line(0).pulse()
    pic.acknowledge()
    pic.line(0).pulse()
    pic.line(1).pulse()
    assert pic.acknowledge() == 0x08          # no rotation: IR0 still first


def test_icw1_cancels_a_pending_poll_command():
    pic, h = make()
    pic.line(4).pulse()
    h.outb(MASTER_CMD, POLL)
    bios_init(h)
    pic.line(6).pulse()
    assert h.inb(MASTER_CMD) == 0x40          # IRR, not a poll word; nothing acknowledged
    assert pic.master.isr == 0


def test_no_interrupt_while_the_icw_sequence_is_under_way():
    pic = DualPic8259()
    h = Harness(pic)
    h.outb(MASTER_CMD, 0x11)                  # ICW1 only: ICW2-4 still to come
    pic.line(0).pulse()
    assert not pic.has_interrupt()


def test_spurious_interrupts_are_counted_on_each_chip():
    pic, h = make()
    for _ in range(2):
        pic.line(5).set_level(True)
        pic.line(5).set_level(False)
        assert pic.acknowledge() == 0x0F
    pic.master.irr |= 0x04                    # the slave's INT seen on IR2, then gone
    pic.acknowledge()
    h.outb(MASTER_CMD, EOI)
    pic.master.irr |= 0x04
    pic.acknowledge()
    assert (pic.master.spurious, pic.slave.spurious) == (2, 2)


def test_inta_of_a_slave_interrupt_keeps_the_other_master_lines_levels():
    pic, h = make()
    pic.line(1).set_level(True)
    assert pic.acknowledge() == 0x09
    h.outb(MASTER_CMD, EOI)
    pic.line(9).pulse()
    assert pic.acknowledge() == 0x71
    h.outb(SLAVE_CMD, EOI)
    h.outb(MASTER_CMD, EOI)
    pic.line(1).set_level(True)               # IRQ 1 never went low: no new request
    assert not pic.has_interrupt()


def test_a_wide_read_is_at_most_four_byte_cycles():
    pic, h = make()
    h.outb(MASTER_DATA, 0x5A)
    assert pic.read(1, 8) == 0xFFFFFF5A


def test_ocw3_esmm_and_smm_are_bits_6_and_5_only():
    pic, h = make()
    h.outb(MASTER_CMD, 0x29)                  # SMM=1 with RIS=1 but ESMM=0: no change
    assert pic.master.special_mask is False
    h.outb(MASTER_CMD, 0x68)
    h.outb(MASTER_CMD, 0x4B)                  # ESMM=1, SMM=0 (RR, RIS set): reset
    assert pic.master.special_mask is False


def test_a_chip_is_a_master_unless_told_and_icw1_gives_a_slave_address_7():
    master, slave = Pic8259(), Pic8259(master=False)
    master.write(0, 0x11)
    slave.write(0, 0x11)
    assert master.master and not slave.master
    assert (master.icw3, slave.icw3) == (0, 7)


def test_icw1_with_ic4_keeps_auto_eoi_off_until_icw4_sets_it():
    pic = Pic8259()
    pic.write(0, 0x13)                        # single, ICW4 needed
    pic.write(1, 0x08)
    pic.write(1, 0x01)                        # ICW4: 8086, no AEOI
    assert pic.ready and not pic.auto_eoi and not pic.sfnm
    pic.irr = 0x01
    pic.intack(0)
    assert pic.isr == 0x01


def test_a_slave_level_in_service_blocks_a_lower_slave_level_until_its_eoi():
    pic, h = make()
    pic.line(9).pulse()
    assert pic.acknowledge() == 0x71
    h.outb(MASTER_CMD, EOI)                   # master only: slave IR1 still in service
    pic.line(12).pulse()
    assert not pic.has_interrupt()
    h.outb(SLAVE_CMD, EOI)
    assert pic.acknowledge() == 0x74


def test_rotation_wraps_priority_from_ir7_back_to_ir0():
    pic, h = make()
    h.outb(MASTER_CMD, 0xC0 | 6)              # IR6 lowest: IR7 highest, then IR0
    pic.line(0).pulse()
    pic.line(7).pulse()
    assert pic.acknowledge() == 0x0F
    h.outb(MASTER_CMD, 0x60 | 7)
    assert pic.acknowledge() == 0x08


@pytest.mark.skipif(not fastpath.c_available(), reason="the C fast path was not built")
def test_bound_to_the_c_fast_path_the_chips_registers_live_in_the_shared_c_struct():
    from unicorn import UC_ARCH_X86, UC_MODE_16, Uc
    fast = fastpath.CFastpath(Uc(UC_ARCH_X86, UC_MODE_16))
    try:
        pic, h = make()
        pic.bind_fast(fast, lambda off: 0x20 + off if off < 0x80 else 0xA0 + off - 0x80)
        h.outb(MASTER_DATA, 0x5A & ~0x08)
        pic.line(3).pulse()
        pic.line(9).pulse()
        h.outb(SLAVE_CMD, READ_ISR)
        master, slave = fast.ctl.pic[0], fast.ctl.pic[1]
        ports = fast.ctl.ports
        assert [(ports[p].kind, ports[p].arg) for p in (0x20, 0x21, 0xA0, 0xA1)] == \
            [(fastpath.PK_PIC, 0), (fastpath.PK_PIC, 1), (fastpath.PK_PIC, 2), (fastpath.PK_PIC, 3)]
        assert (master.imr, master.irr, master.isr) == (0x52, 0x0C, 0)
        assert (slave.irr, slave.read_isr) == (0x02, 1)
        assert pic.acknowledge() == 0x71          # IR2 (the slave) outranks IR3
        assert (master.irr, master.isr, slave.irr, slave.isr) == (0x08, 0x04, 0, 0x02)
        h.outb(MASTER_CMD, POLL)                  # a poll read has side effects: C must not answer it
        assert master.poll == 1
        assert h.inb(MASTER_CMD) == 0 and master.poll == 0     # IR3 waits behind IR2 in service
    finally:
        fast.close()


port_offsets = st.sampled_from([0x20, 0x21, 0xA0, 0xA1])


def rank(chip, level):
    """Priority rank of ``level`` (0 = highest) under the chip's current rotation."""
    return (level - chip.lowest - 1) & 7


def check_chip(chip):
    """What the 8259A datasheet guarantees about one chip's state and its INT output."""
    assert 0 <= chip.irr <= 0xFF and 0 <= chip.isr <= 0xFF and 0 <= chip.imr <= 0xFF
    level = chip.pending()
    if not chip.ready:
        assert level == -1                        # no INT before the ICW sequence ends
        return
    if level < 0:
        return
    assert chip.irr >> level & 1 and not chip.imr >> level & 1   # requested and unmasked
    requested = [n for n in range(8) if (chip.irr & ~chip.imr) >> n & 1]
    assert rank(chip, level) == min(rank(chip, n) for n in requested)   # the best one
    blocking = chip.isr & ~(chip.imr if chip.special_mask else 0)
    if chip.sfnm and chip.master:
        blocking &= ~(1 << 2)
    assert all(rank(chip, n) > rank(chip, level) for n in range(8) if blocking >> n & 1)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.booleans(), port_offsets, st.sampled_from([1, 2, 4]),
                          st.integers(0, 0xFFFFFFFF), st.integers(0, 15), st.integers(0, 3)),
                max_size=60),
       st.booleans())
def test_random_port_traffic_and_irq_activity_keep_the_priority_rules(ops, initialized):
    pic = DualPic8259()
    h = Harness(pic)
    if initialized:
        bios_init(h)
    for is_write, port, size, value, irq, action in ops:
        if is_write:
            h.bus.write(port, size, value & ((1 << (8 * size)) - 1))
        else:
            chip = pic.master if port < 0x80 else pic.slave
            polling = chip.poll
            expect = chip.imr if port & 1 else (chip.isr if chip.read_isr else chip.irr)
            got = pic.read(port - 0x20, size)          # the device's own answer, unmasked
            assert 0 <= got < 1 << (8 * size)
            if not polling:
                assert got & 0xFF == expect             # the register OCW3 selected (or IMR)
        if action == 0:
            pic.line(irq).pulse()
        elif action == 1:
            pic.set_irq(irq, bool(value & 1))
        elif action == 2 and pic.has_interrupt():
            m = pic.master
            level = m.pending()
            vector = pic.acknowledge()
            assert vector & 0xF8 in (m.vector_base, pic.slave.vector_base)
            if level != 2 and not m.auto_eoi:
                assert m.isr >> level & 1             # INTA put it in service
        check_chip(pic.master)
        check_chip(pic.slave)
        assert pic.has_interrupt == (pic.master.pending() >= 0)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF), st.sampled_from([1, 2, 4]), st.integers(0, 0xFFFFFFFF))
def test_accesses_outside_the_two_chips_read_all_ones_and_change_nothing(offset, size, value):
    pic = DualPic8259()
    touched = {offset + i for i in range(size)} & {0, 1, 0x80, 0x81}
    before = [(c.irr, c.isr, c.imr, c.icw_step, c.ready) for c in (pic.master, pic.slave)]
    pic.write(offset, size, value)
    got = pic.read(offset, size)
    assert 0 <= got < 1 << (8 * size)
    if not touched:
        assert got == (1 << (8 * size)) - 1
        assert [(c.irr, c.isr, c.imr, c.icw_step, c.ready) for c in (pic.master, pic.slave)] == before


# ---- snapshots: state() / load_state() (devices/state.py) -------------------------------

def busy_pair():
    """A pair in which every saved field differs from its power-on value: LTIM on the
    slave, AEOI with rotation on the slave, SFNM and special mask on the master, a
    rotated priority, ISR/IRR/IMR bits, a line held high, an OCW3 register choice and a
    pending poll, and a spurious INTA counted on each chip."""
    pic = DualPic8259()
    h = Harness(pic)
    pic.acknowledge()                             # spurious: master
    for cmd, data, icw1, base, icw3, icw4 in ((MASTER_CMD, MASTER_DATA, 0x11, 0x08, 0x04, 0x11),
                                              (SLAVE_CMD, SLAVE_DATA, 0x19, 0x70, 0x02, 0x03)):
        h.outb(cmd, icw1)
        h.outb(data, base)
        h.outb(data, icw3)
        h.outb(data, icw4)
    h.outb(SLAVE_CMD, 0x80)                       # rotate on AEOI
    pic.line(10).set_level(True)                  # level-triggered slave input
    assert pic.acknowledge() == 0x70 | 2          # slave IR2 (AEOI: in service no longer)
    h.outb(MASTER_CMD, 0xC4)                      # set priority: IR4 lowest
    pic.line(6).set_level(True)                   # held high
    pic.line(7).pulse()
    pic.line(12).pulse()                          # slave IR4 requested, not acknowledged
    h.outb(MASTER_CMD, 0x68)                      # special mask mode on
    h.outb(MASTER_DATA, 0x21)                     # IMR
    h.outb(MASTER_CMD, READ_ISR)
    h.outb(SLAVE_DATA, 0x80)                      # slave IMR: IR7 masked
    h.outb(SLAVE_CMD, POLL)                       # poll pending on the slave
    pic.slave.spurious += 1
    return pic, h


def test_a_saved_pair_loaded_into_a_fresh_pair_has_every_register_and_behaves_the_same():
    pic, h = busy_pair()
    saved = pic.state()
    power_on = DualPic8259().state()
    differs = {k for chip in ("master", "slave") for k in saved[chip]
               if saved[chip][k] != power_on[chip][k]}
    assert differs == set(saved["master"]) - {"icw_step"}    # the step: see the range test
    assert saved["lines"][6] and saved["lines"][10] and not saved["lines"][7]
    fresh = DualPic8259()
    fresh.load_state(saved)
    assert fresh.state() == saved
    h2 = Harness(fresh)
    # The same continuation gives the same answers: the slave's poll, the master's ISR
    # (OCW3 selection), then fresh requests through both chips.
    for harness in (h, h2):
        harness.outb(SLAVE_DATA, 0x00)
    assert h.inb(SLAVE_CMD) == h2.inb(SLAVE_CMD) != 0
    assert h.inb(MASTER_CMD) == h2.inb(MASTER_CMD)
    for p in (pic, fresh):
        p.line(1).pulse()
        p.line(9).pulse()
    assert [pic.acknowledge() for _ in range(4)] == [fresh.acknowledge() for _ in range(4)]
    assert fresh.state() == pic.state()


@pytest.mark.parametrize("key,good,bad", [
    *[(k, (0, 0xFF), (-1, 0x100)) for k in Pic8259._BYTES],
    ("icw_step", (0, 2, 3, 4), (1, 5, -1)),      # step 1 is ICW1 itself: never waited for
    ("lowest", (0, 7), (8, -1)),
    ("spurious", (0, 1 << 40), (-1, "1")),
])
def test_a_saved_chip_value_outside_its_range_is_refused_and_its_bounds_load(key, good, bad):
    pic, _ = busy_pair()
    saved = pic.state()
    for value in good:
        pic.load_state({**saved, "slave": {**saved["slave"], key: value}})
        assert pic.state()["slave"][key] == value
    for chip in ("master", "slave"):              # the one-line error names the chip
        for value in bad:
            with pytest.raises(ValueError, match=f"^pic {chip}: saved {key} "):
                pic.load_state({**saved, chip: {**saved[chip], key: value}})
        for flag in Pic8259._FLAGS:
            with pytest.raises(ValueError, match=f"^pic {chip}: saved {flag} "):
                pic.load_state({**saved, chip: {**saved[chip], flag: 1}})


@pytest.mark.parametrize("lines", [[False] * 15, [False] * 17, (False,) * 16, [0] * 16,
                                   [False] * 15 + [None], None])
def test_saved_lines_must_be_sixteen_levels(lines):
    pic, _ = busy_pair()
    saved = pic.state()
    with pytest.raises(ValueError, match="lines"):
        pic.load_state({**saved, "lines": lines})
    missing = {k: v for k, v in saved.items() if k != "lines"}
    with pytest.raises(ValueError, match="lines"):
        pic.load_state(missing)
    for chip in ("master", "slave"):
        with pytest.raises(ValueError, match=chip):
            pic.load_state({k: v for k, v in saved.items() if k != chip})


def test_a_master_irq_after_a_slave_interrupt_is_acknowledged_still_makes_an_edge():
    pic, h = make()
    pic.line(8).pulse()
    assert pic.acknowledge() == 0x70              # through master IR2
    assert pic.master.pins >> 2 & 1 == 0 and 0 <= pic.master.pins <= 0xFF
    pic.line(0).pulse()                           # higher priority than IR2 in service
    assert pic.acknowledge() == 0x08
