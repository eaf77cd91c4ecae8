"""Loads and stores at full speed: track which guest pages hold translated code, and
leave out the engine's exit check after every memory access.

Unicorn 2.1.4 sends every guest store to RAM down its slow path for good (no NX means
every x86 page counts as executable, and its ``notdirty_write`` only cleans TLB entries
of non-executable pages): a store costs ~190 ns instead of ~1, and a Linux boot spends
most of its time there. ``hv/fastpath/codepages.c`` restores QEMU's rule (slow path only
while the page holds translated code); this module finds the three engine functions it
replaces, checks that their code is byte for byte the code hv was written against, and
patches them once per process. docs/unicorn.md explains the mechanism; ``hv run --stats``
shows the counts.

Unicorn also follows every guest load and store with a call that looks for a stop
request, so that a hook's ``uc_emu_stop`` takes effect at once. hv stops the vCPU only
between blocks (the block hook, interrupts, faults) except for the debugger's code
hooks, so ``exit_checks(uc, False)`` turns the engine's own switch for them off
(``uc_struct.no_exit_request``, read when code is translated) and the debugger turns
it back on: loads and stores then cost 1.4-2.4x less in a tight loop.

Any mismatch (another Unicorn build, no C fast path) leaves the engine as it is: correct,
only slower. ``HV_CODEPAGES=0`` does the same on purpose (for measurements).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import mmap
import os
import struct
import threading
import weakref
from pathlib import Path

from hv import cpu as _cpu

# The engine functions replaced, with the SHA-256 of their code in the unicorn 2.1.4
# x86-64 manylinux build (the offsets hard-coded in codepages.c are inside these bytes).
NOTDIRTY = "notdirty_write.isra.0"
PROTECT = "tlb_protect_code_x86_64"
UNPROTECT = "tlb_unprotect_code_x86_64"
EXPECTED = {
    NOTDIRTY: "35cf1e309d575522d9db9cfe050c4b2e601a74350a24f555eb8a9e9e2d404ad5",
    PROTECT: "8fac77a3d151ef5263bcf5972612af9228035c260d6b53ac01f14ee09d2541f3",
    UNPROTECT: "ae3f4619b0413d70d3004b9131c3752153074e45725be13b9a148978895e359e",
}
# Exported engine functions the C side calls.
CALLS = ("page_collection_lock_x86_64", "page_collection_unlock_x86_64",
         "tb_invalidate_phys_page_fast_x86_64", "tlb_set_dirty_x86_64",
         "tlb_reset_dirty_x86_64", "qemu_map_ram_ptr_x86_64")
# uc_struct.hook[UC_HOOK_MEM_WRITE_IDX].head (probed at install, see _hook_head_ok)
HOOK_MEM_WRITE_HEAD = 0x448
# uc_struct.no_exit_request, as check_exit_request_x86_64 (this code) reads it
NO_EXIT_REQUEST = 0x7F2
EXIT_CHECK = "check_exit_request_x86_64"
EXIT_CHECK_SHA256 = "510a8886a941b35cb265269d3dc980b90afcff99a8f91907a45128ae3f8ba4cd"

_lock = threading.Lock()


def _library_path() -> Path:
    from unicorn.unicorn_py3.unicorn import uclib
    return Path(uclib._name)


@functools.lru_cache(maxsize=None)
def _symtab() -> dict[str, list[tuple[int, int]]]:
    """name -> [(value, size)] from libunicorn's .symtab (local symbols included)."""
    data = _library_path().read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return {}
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    out: dict[str, list[tuple[int, int]]] = {}
    for sh in sections:
        if sh[1] != 2:                       # SHT_SYMTAB
            continue
        strtab = sections[sh[6]]
        str_off = strtab[4]
        for i in range(sh[5] // 24):
            name_off, info, _other, _shndx, value, size = struct.unpack_from(
                "<IBBHQQ", data, sh[4] + i * 24)
            if info & 0xF != 2:              # STT_FUNC
                continue
            end = data.index(b"\0", str_off + name_off)
            out.setdefault(data[str_off + name_off:end].decode(), []).append((value, size))
    return out


# The few symbols hv needs, and where the function after tlb_unprotect_code starts (the
# room for its jump). Parsing the 38,000-entry .symtab takes ~0.1 s, every hv start, so the
# result is cached per library file; a stale or forged cache can do no harm, since every
# patched function's code is checked against its digest before it is touched.
WANTED = ("helper_le_stl_mmu_x86_64", NOTDIRTY, PROTECT, UNPROTECT, EXIT_CHECK)
NEXT_AFTER_UNPROTECT = "next function after " + UNPROTECT


def _cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hv" / "unicorn-symbols.json"


@functools.lru_cache(maxsize=None)
def _symbols() -> dict[str, list[tuple[int, int]]]:
    lib = _library_path()
    st = lib.stat()
    key = f"{lib}:{st.st_size}:{st.st_mtime_ns}"
    cache = _cache_path()
    try:
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return {name: [tuple(e) for e in entries] for name, entries in saved["symbols"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    table = _symtab()
    out = {name: table.get(name, []) for name in WANTED}
    if out[UNPROTECT]:
        after = out[UNPROTECT][0][0]
        out[NEXT_AFTER_UNPROTECT] = [(min(v for entries in table.values() for v, _ in entries
                                          if v > after), 0)]
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "symbols": out}))
        os.replace(tmp, cache)
    except OSError:
        pass                                 # a read-only home: parse again next time
    return out


def _load_bias() -> int:
    """Run-time address minus link-time address of the loaded library."""
    from unicorn.unicorn_py3.unicorn import uclib
    value, _ = _symbols()["helper_le_stl_mmu_x86_64"][0]
    return ctypes.cast(uclib.helper_le_stl_mmu_x86_64, ctypes.c_void_p).value - value


def _notdirty_address(bias: int) -> tuple[int, int] | None:
    """The x86 engine's notdirty_write: the local function its 32-bit store helper calls."""
    import capstone
    candidates = {v + bias: size for v, size in _symbols().get(NOTDIRTY, [])}
    start, size = _symbols()["helper_le_stl_mmu_x86_64"][0]
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    code = ctypes.string_at(start + bias, size)
    for insn in md.disasm(code, start + bias):
        if insn.mnemonic == "call" and insn.op_str.startswith("0x"):
            target = int(insn.op_str, 16)
            if target in candidates:
                return target, candidates[target]
    return None


def _digest(addr: int, size: int) -> str:
    return hashlib.sha256(ctypes.string_at(addr, size)).hexdigest()


def _overwrite(addr: int, replacement: int, room: int) -> None:
    jump = _cpu._jump_to(replacement)
    assert len(jump) <= room
    page = addr & ~(mmap.PAGESIZE - 1)
    span = ((addr + room + mmap.PAGESIZE - 1) & ~(mmap.PAGESIZE - 1)) - page
    if _cpu._libc.mprotect(page, span, 7) != 0:
        raise OSError(ctypes.get_errno(), "mprotect on the engine failed")
    ctypes.memmove(addr, jump + b"\xcc" * (room - len(jump)), room)
    _cpu._libc.mprotect(page, span, 5)


def _hook_head_ok() -> bool:
    """The C side reads uc_struct.hook[MEM_WRITE].head at HOOK_MEM_WRITE_HEAD: NULL until
    a memory-write hook is added (a deleted hook leaves the list at the next emu_start)."""
    from unicorn import UC_ARCH_X86, UC_HOOK_MEM_WRITE, UC_MODE_32, Uc
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    head = ctypes.c_void_p.from_address(uc._uch.value + HOOK_MEM_WRITE_HEAD)
    before = head.value
    uc.hook_add(UC_HOOK_MEM_WRITE, lambda *a: None)
    return not before and bool(head.value)


_state: dict[str, object] = {}


def install() -> bool:
    """Patch the engine once per process; False (engine untouched) when anything differs
    from what hv knows."""
    with _lock:
        if "ok" in _state:
            return bool(_state["ok"])
        _state["ok"] = False
        _state["why"] = _install()
        _state["ok"] = _state["why"] is None
        return bool(_state["ok"])


def why_not() -> str | None:
    """Why install() left the engine alone (None when it patched it)."""
    install()
    return _state.get("why")        # type: ignore[return-value]


def _install() -> str | None:
    if os.environ.get("HV_CODEPAGES", "1") == "0":
        return "HV_CODEPAGES=0"
    from hv import fastpath
    if not fastpath.c_available():
        return "the C fast path is not built"
    try:
        bias = _load_bias()
        found = _notdirty_address(bias)
        if found is None:
            return "notdirty_write not found"
        notdirty, nd_size = found
        protect, p_size = _symbols()[PROTECT][0]
        unprotect, u_size = _symbols()[UNPROTECT][0]
        protect, unprotect = protect + bias, unprotect + bias
        # room to the next function (the padding after a tiny function is ours to use)
        p_room = unprotect - protect
        u_room = _symbols()[NEXT_AFTER_UNPROTECT][0][0] - (unprotect - bias)
        got = {NOTDIRTY: _digest(notdirty, nd_size), PROTECT: _digest(protect, p_size),
               UNPROTECT: _digest(unprotect, u_size)}
    except (KeyError, IndexError, OSError, ValueError) as e:
        return f"engine symbols unreadable: {e}"
    for name, want in EXPECTED.items():
        if got[name] != want:
            return f"{name} is not the code hv knows (unicorn==2.1.4 x86-64 expected)"
    if p_room < 14 or u_room < 14 or not _hook_head_ok():
        return "engine layout differs"
    ffi, lib = fastpath._fastpath.ffi, fastpath._fastpath.lib
    from unicorn.unicorn_py3.unicorn import uclib
    calls = [ffi.cast("void *", ctypes.cast(getattr(uclib, n), ctypes.c_void_p).value)
             for n in CALLS]
    _cpu.register_engine_address(NOTDIRTY, notdirty)
    tramp = _cpu._patch_prepared(NOTDIRTY)
    lib.hv_codepages_set_engine(*calls, ffi.cast("void *", tramp))
    addr = lambda name: int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))
    # The bookkeeping first, then the store path that relies on it.
    _overwrite(protect, addr("hv_tlb_protect_code"), p_room)
    _overwrite(unprotect, addr("hv_tlb_unprotect_code"), u_room)
    _cpu.intercept({NOTDIRTY: addr("hv_notdirty_write")})
    return None


def track(uc) -> bool:
    """Start tracking a fresh engine (before its first emu_start). False: it keeps the
    engine's slow path (not installed, or too many engines alive)."""
    if not install():
        return False
    from hv import fastpath
    lib, ffi = fastpath._fastpath.lib, fastpath._fastpath.ffi
    handle = ffi.cast("void *", fastpath._uch(uc))
    if not lib.hv_codepages_track(handle):
        return False
    # The slot frees itself with the engine (forget() does it sooner).
    weakref.finalize(uc, lib.hv_codepages_forget, handle)
    return True


def forget(uc) -> None:
    if _state.get("ok"):
        from hv import fastpath
        lib, ffi = fastpath._fastpath.lib, fastpath._fastpath.ffi
        lib.hv_codepages_forget(ffi.cast("void *", fastpath._uch(uc)))


def counts(uc) -> dict[str, int]:
    """What the C side counted for this engine (zeros when untracked)."""
    if not _state.get("ok"):
        return {}
    from hv import fastpath
    lib, ffi = fastpath._fastpath.lib, fastpath._fastpath.ffi
    n = lib.hv_codepages_counts(ffi.cast("void *", fastpath._uch(uc)))
    # TLB entries cleaned (stores go straight to RAM), stores checked for self-modifying
    # code, pages that gained / lost translated code, stores left to the engine's way
    return {"tlb cleaned": n.cleaned, "smc checks": n.code_stores,
            "code pages +": n.protected_pages, "code pages -": n.unprotected_pages,
            "engine path": n.slow}


def flush_tlb(uc) -> None:
    """Empty the engine's TLB: every entry starts on the store slow path again (needed
    after adding a memory-write hook, which only sees stores that take that path)."""
    from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH
    from unicorn.unicorn_py3.unicorn import uclib
    err = uclib.uc_ctl(uc._uch, ctypes.c_int(UC_CTL_TLB_FLUSH | UC_CTL_IO_WRITE << 30))
    if err:
        raise RuntimeError(f"uc_ctl(TLB_FLUSH) failed: {err}")


@functools.lru_cache(maxsize=None)
def _exit_checks_known() -> bool:
    if os.environ.get("HV_CODEPAGES", "1") == "0":
        return False
    try:
        value, size = _symbols()[EXIT_CHECK][0]
        return _digest(value + _load_bias(), size) == EXIT_CHECK_SHA256
    except (KeyError, IndexError, OSError, ValueError):
        return False


def exit_checks_enabled(uc) -> bool | None:
    """Whether the engine looks for stop requests after memory accesses; None if unknown."""
    if not _exit_checks_known():
        return None
    return ctypes.c_uint8.from_address(uc._uch.value + NO_EXIT_REQUEST).value == 0


def exit_checks(uc, enabled: bool) -> bool:
    """Whether code translated from now on looks for a stop request after each memory
    access (the engine's default: on). Off is for engines whose hooks stop the CPU only
    between blocks; a code hook that calls emu_stop needs it on, and blocks translated
    before the change keep their old form (flush them). False if the switch is unknown."""
    if not _exit_checks_known():
        return False
    ctypes.c_uint8.from_address(uc._uch.value + NO_EXIT_REQUEST).value = 0 if enabled else 1
    return True
