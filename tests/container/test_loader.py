"""The ELF loader: what it accepts, what it refuses (one line each), and the initial stack."""
from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from hv import guests
from hv.container import loader
from hv.container.loader import LoadError
from hv.container.process import Process, run_to_exit
from tests.container.conftest import EXIT_7, TINY_BASE, TINY_CODE, run_tiny, tiny_elf

HELLO = guests.linux_program_path("hello")


def _load(tmp_path, data: bytes, **kw) -> Process:
    path = tmp_path / "prog"
    path.write_bytes(data)
    return Process(str(path), ["prog"], [], **kw)


def _refused(tmp_path, data: bytes) -> str:
    with pytest.raises(LoadError) as info:
        _load(tmp_path, data)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def _patch_phdr(data: bytes, index: int, field: int, value: int) -> bytes:
    """Set 32-bit field ``field`` of program header ``index``."""
    phoff = struct.unpack_from("<I", data, 28)[0]
    at = phoff + 32 * index + 4 * field
    return data[:at] + struct.pack("<I", value) + data[at + 4:]


def _hello_load_index(data: bytes, flags: int) -> int:
    phoff, = struct.unpack_from("<I", data, 28)
    phnum, = struct.unpack_from("<H", data, 44)
    for i in range(phnum):
        p_type, *_rest, p_flags, _align = struct.unpack_from("<8I", data, phoff + 32 * i)
        if p_type == 1 and p_flags == flags:
            return i
    raise AssertionError("no such segment")


def test_a_tiny_static_program_runs_to_its_exit_code(tmp_path):
    assert run_tiny(tmp_path, EXIT_7).exit_status == 7


@pytest.mark.parametrize("data,words", [
    (b"", "truncated"),
    (b"\x7fELF\x01\x01\x01", "truncated"),
    (b"MZ" + bytes(100), "magic"),
    (b"\x7fELF\x02\x01\x01" + bytes(100), "32-bit"),
])
def test_malformed_headers_are_refused_in_one_line(tmp_path, data, words):
    assert words in _refused(tmp_path, data)


def test_a_program_for_another_machine_is_refused(tmp_path):
    data = bytearray(tiny_elf(EXIT_7))
    data[18] = 62                                       # EM_X86_64
    assert "i386" in _refused(tmp_path, bytes(data))


def test_a_relocatable_object_is_refused(tmp_path):
    assert "not an executable" in _refused(tmp_path, tiny_elf(EXIT_7, e_type=1))


def test_a_program_header_table_past_the_end_is_refused(tmp_path):
    data = tiny_elf(EXIT_7)
    data = data[:28] + struct.pack("<I", 0x7FFFFFF0) + data[32:]
    assert "program header" in _refused(tmp_path, data)


def test_a_segment_reaching_beyond_the_file_is_refused(tmp_path):
    data = _patch_phdr(tiny_elf(EXIT_7), 0, 4, 0x100000)          # p_filesz
    data = _patch_phdr(data, 0, 5, 0x100000)
    assert "beyond the end of the file" in _refused(tmp_path, data)


def test_file_size_larger_than_memory_size_is_refused(tmp_path):
    data = _patch_phdr(tiny_elf(EXIT_7), 0, 5, 4)
    assert "file size larger" in _refused(tmp_path, data)


def test_a_huge_segment_is_refused_before_any_memory_is_taken(tmp_path):
    data = _patch_phdr(tiny_elf(EXIT_7), 0, 5, 0x70000000)        # 1.75 GiB of bss
    assert "outside the user address space" in _refused(tmp_path, data) or "MiB" in _refused(tmp_path, data)


def test_a_segment_at_page_zero_is_refused(tmp_path):
    data = _patch_phdr(tiny_elf(EXIT_7), 0, 2, 0)
    assert "outside the user address space" in _refused(tmp_path, data)


def test_an_entry_point_outside_the_executable_segments_is_refused(tmp_path):
    data = tiny_elf(EXIT_7)
    data = data[:24] + struct.pack("<I", 0x12345678) + data[28:]
    assert "entry point" in _refused(tmp_path, data)


def test_an_entry_point_in_a_non_executable_segment_is_refused(tmp_path):
    assert "entry point" in _refused(tmp_path, tiny_elf(EXIT_7, flags=6))    # R+W


def test_overlapping_segments_are_refused(tmp_path):
    data = HELLO.read_bytes()
    i = _hello_load_index(data, 5)                        # the text segment: move it onto the data
    j = _hello_load_index(data, 6)
    phoff = struct.unpack_from("<I", data, 28)[0]
    rw_vaddr = struct.unpack_from("<I", data, phoff + 32 * j + 8)[0]
    rx_off = struct.unpack_from("<I", data, phoff + 32 * i + 4)[0]
    data = _patch_phdr(data, i, 2, (rw_vaddr & ~0xFFF) | (rx_off & 0xFFF))
    assert "overlap" in _refused(tmp_path, data)


def test_a_segment_not_congruent_with_its_offset_is_refused(tmp_path):
    data = _patch_phdr(tiny_elf(EXIT_7), 0, 2, TINY_BASE + 4)
    data = data[:24] + struct.pack("<I", TINY_CODE + 4) + data[28:]
    assert "page-congruent" in _refused(tmp_path, data)


def test_a_dynamically_linked_program_is_refused(tmp_path):
    data = bytearray(tiny_elf(EXIT_7))
    data[44:46] = struct.pack("<H", 2)                    # a second header: PT_INTERP
    data += struct.pack("<8I", 3, 0, 0, 0, 0, 0, 4, 1)
    data[28:32] = struct.pack("<I", len(data) - 64)
    data[len(data) - 64:len(data) - 32] = struct.pack("<8I", *struct.unpack_from("<8I", tiny_elf(EXIT_7), 52))
    assert "dynamically linked" in _refused(tmp_path, bytes(data))


def test_a_missing_program_is_a_one_line_error(tmp_path):
    with pytest.raises(LoadError) as info:
        Process(str(tmp_path / "nothing"), ["x"], [])
    assert "nothing" in str(info.value) and "\n" not in str(info.value)


def test_segments_are_mapped_with_their_protection_and_bss_is_zero(tmp_path):
    p = Process(str(HELLO), ["hello"], [])
    kinds = [(a.prot, a.kind) for a in p.space.areas if a.kind == "image"]
    assert (5, "image") in kinds and (1, "image") in kinds and (3, "image") in kinds
    data = HELLO.read_bytes()
    j = _hello_load_index(data, 6)
    phoff = struct.unpack_from("<I", data, 28)[0]
    _t, _off, vaddr, _pa, filesz, memsz, _f, _a = struct.unpack_from("<8I", data, phoff + 32 * j)
    assert p.space.read(vaddr + filesz, memsz - filesz) == bytes(memsz - filesz)
    p.close()


def _auxv(p):
    sp = p.initial_sp
    mem = p.space
    argc, = struct.unpack("<I", mem.read(sp, 4))
    n = min(256, (loader.STACK_TOP - sp) // 4)
    words = struct.unpack(f"<{n}I", mem.read(sp, 4 * n))
    argv = words[1:1 + argc]
    at = 1 + argc + 1
    envp = []
    while words[at]:
        envp.append(words[at])
        at += 1
    at += 1
    aux = []
    while True:
        key, value = words[at], words[at + 1]
        aux.append((key, value))
        at += 2
        if key == 0:
            break
    cstr = lambda a: mem.read_cstr(a, 4096)
    return argc, [cstr(a) for a in argv], [cstr(e) for e in envp], aux


def test_the_initial_stack_holds_argv_envp_and_the_auxv_in_linux_order(tmp_path):
    p = Process(str(HELLO), ["hello", "arg one", ""], ["A=1", "B=two"], uid=1000, gid=100)
    assert p.initial_sp % 16 == 0
    argc, argv, envp, aux = _auxv(p)
    assert (argc, argv, envp) == (3, [b"hello", b"arg one", b""], [b"A=1", b"B=two"])
    keys = [k for k, _ in aux]
    assert keys == [loader.AT_PHDR, loader.AT_PHENT, loader.AT_PHNUM, loader.AT_PAGESZ, loader.AT_BASE,
                    loader.AT_FLAGS, loader.AT_ENTRY, loader.AT_UID, loader.AT_EUID, loader.AT_GID,
                    loader.AT_EGID, loader.AT_HWCAP, loader.AT_CLKTCK, loader.AT_PLATFORM, loader.AT_SECURE,
                    loader.AT_RANDOM, loader.AT_HWCAP2, loader.AT_EXECFN, loader.AT_NULL]
    a = dict(aux)
    data = HELLO.read_bytes()
    phnum, = struct.unpack_from("<H", data, 44)
    phoff, = struct.unpack_from("<I", data, 28)
    assert p.space.read(a[loader.AT_PHDR], 32 * phnum) == data[phoff:phoff + 32 * phnum]
    assert (a[loader.AT_PHENT], a[loader.AT_PHNUM], a[loader.AT_PAGESZ]) == (32, phnum, 4096)
    assert a[loader.AT_ENTRY] == struct.unpack_from("<I", data, 24)[0] == p.entry
    assert (a[loader.AT_UID], a[loader.AT_EUID], a[loader.AT_GID], a[loader.AT_EGID]) == (1000, 1000, 100, 100)
    assert p.space.read_cstr(a[loader.AT_PLATFORM], 16) == b"i686"
    assert p.space.read_cstr(a[loader.AT_EXECFN], 4096) == str(HELLO).encode()
    assert len(p.space.read(a[loader.AT_RANDOM], 16)) == 16 and a[loader.AT_SECURE] == 0
    p.close()


def test_an_argument_list_too_long_is_refused(tmp_path):
    with pytest.raises(LoadError, match="too long"):
        Process(str(HELLO), ["hello", "x" * (200 << 10)], [])


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc (with gcc-multilib) is needed to build a static PIE")
def test_a_static_pie_program_loads_at_the_pie_base_and_runs(tmp_path):
    src = tmp_path / "pie.c"
    src.write_text('#include <stdio.h>\nint main(void){printf("pie %d\\n", 6*7);return 5;}\n')
    out = tmp_path / "pie"
    build = subprocess.run(["gcc", "-m32", "-static-pie", "-O2", str(src), "-o", str(out)], capture_output=True)
    if build.returncode:
        pytest.skip(f"gcc -m32 -static-pie failed: {build.stderr.decode()[:200]}")
    import io
    stdout = io.BytesIO()
    p = Process(str(out), ["pie"], [], stdout=stdout)
    assert p.image.bias == loader.PIE_BASE and p.entry >= loader.PIE_BASE
    assert run_to_exit(p) == 5
    assert stdout.getvalue() == b"pie 42\n"


def test_the_gdt_is_out_of_the_guests_reach_for_writes(tmp_path):
    # mov [0xFFFFF000], eax: the first GDT entry
    p = run_tiny(tmp_path, bytes.fromhex("a300f0ffff") + EXIT_7)
    assert p.exit_status == 139
    assert "0xfffff000" in p.message


def test_page_zero_is_unmapped_so_a_null_read_is_sigsegv(tmp_path):
    p = run_tiny(tmp_path, bytes.fromhex("a100000000") + EXIT_7)     # mov eax, [0]
    assert p.exit_status == 139 and "read of 0x0" in p.message


def test_writing_the_programs_own_code_is_sigsegv(tmp_path):
    p = run_tiny(tmp_path, bytes.fromhex(f"a3{TINY_CODE:08x}")[:1] + struct.pack("<I", TINY_CODE) + EXIT_7)
    assert p.exit_status == 139 and "write" in p.message


def _can_build_i386() -> bool:
    if shutil.which("gcc") is None:
        return False
    probe = subprocess.run(["gcc", "-m32", "-static", "-x", "c", "-", "-o", "/dev/null"],
                           input=b"int main(void){return 0;}", capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_build_i386(), reason="gcc -m32 -static needs gcc-multilib")
def test_rebuilding_the_linux_programs_gives_the_committed_binaries(tmp_path):
    from hv.guests import build
    for target in build.LINUX_TARGETS:
        built = build.build_linux_program(target, tmp_path)
        assert built.read_bytes() == guests.linux_program_path(target.name).read_bytes(), target.name
