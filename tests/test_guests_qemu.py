"""The small guests behave as documented on the reference PC (QEMU + SeaBIOS)."""
from __future__ import annotations

from hv import guests
from tests.qemu_util import run_image


def test_hello_prints_its_greeting_from_floppy():
    out = run_image(guests.image_path("hello"), until=r"Hello.*\r\n", timeout=15)
    assert out == "Hello from hv!\r\n"


def test_hello_prints_its_greeting_from_hard_disk():
    out = run_image(guests.image_path("hello"), drive="hd", until=r"Hello.*\r\n", timeout=15)
    assert out == "Hello from hv!\r\n"


def test_timer_counts_five_ticks_and_sees_the_pit_count_down():
    out = run_image(guests.image_path("timer"), until=r"timer done\r\n", timeout=15)
    assert out == (
        "timer: counting IRQ0 ticks\r\n"
        "tick 1\r\ntick 2\r\ntick 3\r\ntick 4\r\ntick 5\r\n"
        "pit: counting down\r\n"
        "timer done\r\n"
    )


def test_keyecho_echoes_keys_names_special_ones_and_quits_on_esc():
    out = run_image(
        guests.image_path("keyecho"),
        until=r"bye\r\n",
        timeout=15,
        keys=["h", "i", "up", "ret", "f1", "esc"],
        keys_after="Esc quits",
    )
    assert out == "keyecho: type keys, Esc quits\r\nhi<up>\r\n<f1>\r\nbye\r\n"
