from hypothesis import given, settings
from hypothesis import strategies as st

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


port_offsets = st.sampled_from([0x20, 0x21, 0xA0, 0xA1])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), port_offsets, st.sampled_from([1, 2, 4]),
                          st.integers(0, 0xFFFFFFFF), st.integers(0, 15), st.integers(0, 3)),
                max_size=60))
def test_random_port_traffic_and_irq_activity_never_raises(ops):
    pic = DualPic8259()
    h = Harness(pic)
    for is_write, port, size, value, irq, action in ops:
        if is_write:
            h.bus.write(port, size, value & ((1 << (8 * size)) - 1))
        else:
            assert 0 <= h.bus.read(port, size) < 1 << (8 * size)
        if action == 0:
            pic.line(irq).pulse()
        elif action == 1:
            pic.set_irq(irq, bool(value & 1))
        elif action == 2 and pic.has_interrupt():
            assert 0 <= pic.acknowledge() <= 0xFF


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF), st.sampled_from([1, 2, 4]), st.integers(0, 0xFFFFFFFF))
def test_any_offset_and_size_never_raises(offset, size, value):
    pic = DualPic8259()
    pic.write(offset, size, value)
    pic.read(offset, size)
