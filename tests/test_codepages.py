"""Code-page tracking (hv/codepages.py, hv/fastpath/codepages.c): stores leave the slow
path only on pages without translated code, and translated code never goes stale.

Each case runs on a bare engine, tracked and untracked (the engine's own behaviour, always
the slow path): both must compute the same thing. Machine code is spelled out in bytes.
"""
from __future__ import annotations

import os
import struct

import pytest
from unicorn import UC_ARCH_X86, UC_HOOK_MEM_WRITE, UC_MODE_32, UC_PROT_ALL, Uc
from unicorn import x86_const as X

from hv import codepages

pytestmark = pytest.mark.skipif(not codepages.install(),
                                reason=f"code-page tracking unavailable: {codepages.why_not()}")


def mov_mem_imm(addr: int, value: int) -> bytes:        # mov dword [addr], imm32
    return b"\xc7\x05" + struct.pack("<II", addr, value)


def mov_esi_ebx() -> bytes:                             # mov esi, ebx
    return b"\x89\xde"


def call(at: int, target: int) -> bytes:                # call rel32
    return b"\xe8" + struct.pack("<i", target - (at + 5))


def mov_ebx_ret(value: int) -> tuple[int, int]:
    """``mov ebx, value; ret`` as two dwords to store."""
    code = b"\xbb" + struct.pack("<I", value) + b"\xc3\x90\x90"
    return struct.unpack("<II", code)


def engine(track: bool) -> Uc:
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    if track:
        assert codepages.track(uc)
    uc.mem_map(0, 0x200000, UC_PROT_ALL)
    uc.reg_write(X.UC_X86_REG_ESP, 0x9000)
    return uc


def assemble(base: int, parts) -> bytes:
    code = b""
    for p in parts:
        code += p(base + len(code)) if callable(p) else p
    return code


@pytest.mark.parametrize("track", [True, False])
def test_a_store_loop_writes_every_value_and_leaves_the_slow_path(track):
    uc = engine(track)
    # mov ecx, 0x4000; L: mov [0x100000 + ecx*4 - 4], ecx; loop L
    code = b"\xb9\x00\x40\x00\x00" + b"\x89\x0c\x8d\xfc\xff\x0f\x00" + b"\xe2\xf7"
    uc.mem_write(0x1000, code)
    uc.emu_start(0x1000, 0x1000 + len(code))
    got = struct.unpack("<16384I", uc.mem_read(0x100000, 0x10000))
    assert got == tuple(range(1, 0x4001))
    n = codepages.counts(uc)
    if track:
        assert n["tlb cleaned"] >= 16 and n["engine path"] == 0      # one per 4 KiB page written
    else:
        assert not any(n.values())


@pytest.mark.parametrize("track", [True, False])
def test_code_that_rewrites_the_next_instruction_runs_the_new_one(track):
    uc = engine(track)
    code = b"\xb8\x11\x11\x11\x11"                          # mov eax, 0x11111111
    code += mov_mem_imm(0x1000 + 15 + 1, 0x22222222)         # patch the imm32 below
    code += b"\xbb\x33\x33\x33\x33"                          # mov ebx, 0x33333333
    uc.mem_write(0x1000, code)
    uc.emu_start(0x1000, 0x1000 + len(code))
    assert uc.reg_read(X.UC_X86_REG_EBX) == 0x22222222


@pytest.mark.parametrize("track", [True, False])
def test_code_written_then_run_then_rewritten_on_a_page_stored_to_before(track):
    """The page's TLB entry is cleaned while it holds no code; once code is translated
    from it, stores there must invalidate that code again."""
    uc = engine(track)
    page = 0x50000
    first, second = mov_ebx_ret(0x11111111), mov_ebx_ret(0x22222222)
    prog = assemble(0x1000, [
        mov_mem_imm(page + 0x800, 0),                        # clean the entry: no code yet
        mov_mem_imm(page, first[0]), mov_mem_imm(page + 4, first[1]),
        lambda at: call(at, page),
        mov_esi_ebx(),
        mov_mem_imm(page, second[0]), mov_mem_imm(page + 4, second[1]),
        lambda at: call(at, page),
    ])
    uc.mem_write(0x1000, prog)
    uc.emu_start(0x1000, 0x1000 + len(prog))
    assert (uc.reg_read(X.UC_X86_REG_ESI), uc.reg_read(X.UC_X86_REG_EBX)) == \
        (0x11111111, 0x22222222)


def paged_engine(track: bool) -> Uc:
    """Paging on: 0-4 MiB identity-mapped; VA 0x400000 (code view) and VA 0x805000 (data
    view) both map physical page 0x50000 (the two do not share a TLB slot)."""
    uc = engine(track)
    pd, pt0, pt1, pt2 = 0x100000, 0x101000, 0x102000, 0x103000
    uc.mem_write(pd, struct.pack("<3I", pt0 | 3, pt1 | 3, pt2 | 3))
    uc.mem_write(pt0, b"".join(struct.pack("<I", i << 12 | 3) for i in range(1024)))
    uc.mem_write(pt1, struct.pack("<I", 0x50000 | 3))
    uc.mem_write(pt2 + 5 * 4, struct.pack("<I", 0x50000 | 3))
    uc.reg_write(X.UC_X86_REG_CR3, pd)
    uc.reg_write(X.UC_X86_REG_CR0, uc.reg_read(X.UC_X86_REG_CR0) | 1 | 1 << 31)
    return uc


@pytest.mark.parametrize("track", [True, False])
def test_a_store_through_another_virtual_address_invalidates_the_code(track):
    """Stores go through the data view, code runs from the code view: when the physical
    page gets code, the data view's cleaned entry must catch stores again (QEMU's
    tlb_protect_code by host address; the engine only redoes the code view's entry)."""
    uc = paged_engine(track)
    code_va, data_va = 0x400000, 0x805000
    first, second = mov_ebx_ret(0x11111111), mov_ebx_ret(0x22222222)
    prog = assemble(0x1000, [
        mov_mem_imm(data_va + 0x800, 0),                     # clean the data view's entry
        mov_mem_imm(data_va, first[0]), mov_mem_imm(data_va + 4, first[1]),
        lambda at: call(at, code_va),
        mov_esi_ebx(),
        mov_mem_imm(data_va, second[0]), mov_mem_imm(data_va + 4, second[1]),
        lambda at: call(at, code_va),
    ])
    uc.mem_write(0x1000, prog)
    uc.emu_start(0x1000, 0x1000 + len(prog))
    assert (uc.reg_read(X.UC_X86_REG_ESI), uc.reg_read(X.UC_X86_REG_EBX)) == \
        (0x11111111, 0x22222222)
    if track:
        assert codepages.counts(uc)["smc checks"] >= 1


def test_a_write_hook_added_later_sees_stores_after_a_tlb_flush():
    """Cleaned entries bypass the slow path where write hooks run: whoever adds one flushes
    the TLB (hv's debugger does), and from then on every store is seen."""
    uc = engine(True)
    prog = mov_mem_imm(0x60000, 1) + mov_mem_imm(0x60004, 2)
    uc.mem_write(0x1000, prog)
    uc.emu_start(0x1000, 0x1000 + len(prog))
    assert codepages.counts(uc)["tlb cleaned"] >= 1
    seen = []
    uc.hook_add(UC_HOOK_MEM_WRITE, lambda u, acc, addr, size, value, d: seen.append(addr),
                None, 0x60000, 0x60fff)
    codepages.flush_tlb(uc)
    uc.emu_start(0x1000, 0x1000 + len(prog))
    assert seen == [0x60000, 0x60004]
    assert codepages.counts(uc)["engine path"] >= 1          # the engine's way while hooked


def test_an_untracked_engine_keeps_the_engine_behaviour_and_forget_frees_the_slot():
    uc = engine(True)
    codepages.forget(uc)
    prog = mov_mem_imm(0x60000, 1)
    uc.mem_write(0x1000, prog)
    uc.emu_start(0x1000, 0x1000 + len(prog))
    assert codepages.counts(uc) == {k: 0 for k in codepages.counts(uc)}
    assert uc.mem_read(0x60000, 4) == b"\x01\0\0\0"


@pytest.mark.parametrize("enabled", [True, False])
def test_exit_checks_decide_whether_a_code_hook_stop_is_immediate(enabled):
    """Off, a stop asked by a code hook waits for the end of the block (hv's vCPU stops
    only between blocks); on (the debugger), it takes effect before the next instruction."""
    from unicorn import UC_HOOK_CODE
    uc = engine(False)
    assert codepages.exit_checks(uc, enabled)
    prog = b"\x40" * 8 + b"\xf4"                    # inc eax x8; hlt
    uc.mem_write(0x1000, prog)
    uc.hook_add(UC_HOOK_CODE, lambda u, addr, size, d: u.emu_stop(), None, 0x1003, 0x1003)
    uc.emu_start(0x1000, 0x1000 + len(prog) - 1)
    assert uc.reg_read(X.UC_X86_REG_EAX) == (3 if enabled else 8)


def _install_in_child(cache_home) -> str:
    import subprocess
    import sys
    code = ("from hv import codepages; ok = codepages.install(); "
            "print(ok, codepages.why_not())")
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    # (run from outside the checkout: its hv source tree would shadow the installed package)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True, timeout=60, cwd=cache_home).stdout.strip()


def test_the_symbol_cache_is_written_once_and_a_forged_one_patches_nothing(tmp_path):
    import json
    first = _install_in_child(tmp_path)
    cache = tmp_path / "hv" / "unicorn-symbols.json"
    saved = json.loads(cache.read_text())
    assert first == "True None"
    assert set(saved["symbols"]) >= {codepages.NOTDIRTY, codepages.PROTECT, codepages.UNPROTECT}
    assert _install_in_child(tmp_path) == "True None"            # from the cache
    # A cache that names other code: the digests refuse it, the engine stays unpatched.
    for name in (codepages.PROTECT, codepages.UNPROTECT):
        saved["symbols"][name] = [[saved["symbols"][name][0][0] + 16, saved["symbols"][name][0][1]]]
    cache.write_text(json.dumps(saved))
    forged = _install_in_child(tmp_path)
    assert forged.startswith("False ") and "None" not in forged
