"""Test code assembles guests with the same helper the benchmarks ship with."""
from hv.guests.asm import assemble, write_image  # noqa: F401
