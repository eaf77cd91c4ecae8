"""Port 0xE9 debug console and port 0x80 POST codes."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from hv.devices.debugcon import DebugConsole, PostCode
from tests.devices.harness import Harness


def make():
    out = bytearray()
    con = DebugConsole(sink=out.extend)
    post = PostCode()
    return Harness(con, post), con, post, out


def test_bytes_written_to_port_e9_reach_the_sink():
    h, _, _, out = make()
    for c in b"ok\n":
        h.outb(0xE9, c)
    assert out == b"ok\n"


def test_reading_port_e9_returns_e9_for_detection():
    h, *_ = make()
    assert h.inb(0xE9) == 0xE9


def test_a_word_write_to_e9_sends_only_the_low_byte():
    h, _, _, out = make()
    h.outw(0xE9, 0x4241)
    assert out == b"A"


def test_debug_console_without_a_sink_ignores_writes():
    h = Harness(DebugConsole())
    h.outb(0xE9, 0x41)
    assert h.inb(0xE9) == 0xE9


def test_post_port_remembers_the_last_code():
    h, _, post, _ = make()
    h.outb(0x80, 0x12)
    h.outb(0x80, 0x34)
    assert post.last == 0x34
    assert h.inb(0x80) == 0x34


def test_post_history_keeps_the_last_256_codes_in_order():
    h, _, post, _ = make()
    for i in range(300):
        h.outb(0x80, i & 0xFF)
    assert len(post.codes) == 256
    assert list(post.codes) == [i & 0xFF for i in range(44, 300)]


def test_device_names_and_ports():
    _, con, post, _ = make()
    assert (con.name, con.ports[0].base) == ("debugcon", 0xE9)
    assert (post.name, post.ports[0].base) == ("post", 0x80)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([0x80, 0xE9]), st.sampled_from([1, 2, 4]),
                          st.integers(0, 0xFFFFFFFF)), max_size=30))
def test_random_port_accesses_print_low_bytes_and_keep_the_last_post_code(ops):
    h, con, post, out = make()
    printed, codes = bytearray(), []
    for is_write, port, size, value in ops:
        value &= (1 << 8 * size) - 1
        dev = con if port == 0xE9 else post
        if is_write:
            h.bus.write(port, size, value)
            (printed if port == 0xE9 else codes).append(value & 0xFF)   # the low byte only
        else:
            got = dev.read(0, size)              # the device's own answer
            low = 0xE9 if port == 0xE9 else post.last
            assert got == ((1 << 8 * size) - 1) & ~0xFF | low
    assert bytes(out) == bytes(printed)
    assert list(post.codes) == codes[-256:] and post.last == (codes[-1] if codes else 0)


@settings(max_examples=200, deadline=None)
@given(st.integers(-4, 8), st.sampled_from([0, 1, 2, 4]), st.integers(0, 2**64))
def test_accesses_at_any_offset_other_than_zero_print_nothing_and_read_all_ones(off, size, value):
    out = bytearray()
    con, post = DebugConsole(sink=out.extend), PostCode()
    for dev in (con, post):
        dev.write(off, size, value)
        got = dev.read(off, size)
        ones = (1 << (8 * size)) - 1 if size > 0 else 0
        if off != 0 or size == 0:
            assert got == ones
        else:
            assert got & ~0xFF == ones & ~0xFF
    written = off == 0 and size > 0
    assert bytes(out) == (bytes([value & 0xFF]) if written else b"")
    assert list(post.codes) == ([value & 0xFF] if written else [])
