"""CPU features the engine lacks or gets wrong, around one vCPU: interrupt delivery at
any privilege level, MSRs, CPUID, the TSC and SYSENTER.

With the C fast path built, the work is done in ``hv/fastpath/cpu.c`` (delivery runs in
the engine's interrupt hook, 1-2 µs for a ring 3 -> 0 -> 3 round trip); ``hv/irq.py`` is
its Python twin, used by the Python dispatcher. This module holds what both share: the
engine layout checks, the CPUID table, the MSR interception, and the glue.

**MSRs.** Unicorn has no hook for RDMSR/WRMSR: its helpers answer what QEMU knows and
silently read 0 for anything else, and it keeps no IA32_APIC_BASE. hv therefore points
the engine's two MSR helpers at its own (a 14-byte jump written over each helper's entry;
the displaced instructions run from a trampoline that jumps back), once per process.
hv's helpers answer IA32_APIC_BASE and the TSC, pass the MSRs the engine implements to
it (SYSENTER, PAT, MISC_ENABLE, EFER...), and raise #GP for every other one, as a real CPU
does. Engines hv does not run as a PC (process containers) see the engine's own helpers.

**I/O permission.** The engine also lets every IN/OUT through at any privilege level; the
same mechanism puts a check (CPL against IOPL, then the TSS I/O bitmap) in front of its six
port helpers, and a denied access is a #GP(0) at the instruction, before any device sees it.
"""
from __future__ import annotations

import ctypes
import functools
import mmap
import struct
import threading
from dataclasses import dataclass

from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

# CPUX86State offsets in a context blob (unicorn 2.1.4, x86-64 host), checked below.
CTX_HEADER = 40
ENV = dict(eip=128, eflags=136, hflags=176, segs=184, ldt=328, tr=352, gdt=376, idt=400,
           cr=424, error_code=5384, is_int=5388, next_eip=5392, old_exception=5496)

KIND_EXT, KIND_SOFT, KIND_EXC = 0, 1, 2
FAULT_NONE, FAULT_TRIPLE, FAULT_UNSUPPORTED, FAULT_MMIO_STACK = range(4)

MSR_TSC, MSR_APIC_BASE = 0x10, 0x1B
APIC_BASE_RESET = 0xFEE00000 | 1 << 11 | 1 << 8      # enabled, bootstrap processor
APIC_BASE_WRITABLE = 1 << 8 | 1 << 11 | 0xFFFFFF000
# MSRs the engine itself implements and hv passes through to it.
ENGINE_MSRS = (
    0x8B,                   # IA32_BIOS_SIGN_ID (microcode revision: Linux reads it unguarded)
    0x174, 0x175, 0x176,    # SYSENTER_CS / ESP / EIP (the engine's sysexit reads them)
    0x1A0,                  # IA32_MISC_ENABLE
    0x277,                  # IA32_PAT
    0xC0000080,             # IA32_EFER (NX with PAE)
)


class LayoutError(RuntimeError):
    pass


def _ctx_base(ctx) -> int:
    return ctypes.cast(ctx.context, ctypes.c_void_p).value + CTX_HEADER


@functools.lru_cache(maxsize=1)
def check_layout() -> None:
    """Refuse to run on an engine whose CPU state is not laid out as hv expects: the
    delivery code edits the blob at these offsets."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.reg_write(X.UC_X86_REG_IDTR, (0, 0x11223344, 0x7FF, 0))
    uc.reg_write(X.UC_X86_REG_GDTR, (0, 0x55667788, 0x17, 0))
    uc.reg_write(X.UC_X86_REG_TR, (0x30, 0x12340000, 0x67, 0x8900))
    uc.reg_write(X.UC_X86_REG_CR3, 0xABC000)
    uc.reg_write(X.UC_X86_REG_EIP, 0x55667788)
    ctx = uc.context_save()
    b = _ctx_base(ctx)

    def u(off, t=ctypes.c_uint64):
        return t.from_address(b + off).value
    ok = (u(ENV["idt"] + 8) == 0x11223344 and u(ENV["idt"] + 16, ctypes.c_uint32) == 0x7FF
          and u(ENV["gdt"] + 8) == 0x55667788 and u(ENV["tr"], ctypes.c_uint32) == 0x30
          and u(ENV["tr"] + 8) == 0x12340000 and u(ENV["cr"] + 24) == 0xABC000
          and u(ENV["eip"]) == 0x55667788 and u(ENV["old_exception"], ctypes.c_int32) == -1)
    if not ok:
        raise LayoutError("this Unicorn build's CPU state layout is not the one hv knows "
                          "(unicorn==2.1.4 is required)")


@functools.lru_cache(maxsize=1)
def context_size() -> int:
    """The engine's context size (header included): a snapshot's CPU state is checked
    against it before a machine has an engine of its own."""
    return Uc(UC_ARCH_X86, UC_MODE_32).context_save().size


# -- CPUID ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CpuidEntry:
    leaf: int
    subleaf: int | None
    eax: int
    ebx: int
    ecx: int
    edx: int


HV_SIGNATURE = b"hvhvhvhvhvhv"
# Leaf 1 EDX: MCE (7), MTRR (12) and MCA (14) name machinery hv does not model.
L1_EDX_HIDE = 1 << 7 | 1 << 12 | 1 << 14
# Leaf 1 ECX: x2APIC (21) and TSC-deadline (24) are not modelled by hv's LAPIC; XSAVE (26)
# and OSXSAVE (27) are left out so the table need not follow CR4 (FXSAVE remains).
L1_ECX_HIDE = 1 << 21 | 1 << 24 | 1 << 26 | 1 << 27
L1_ECX_HYPERVISOR = 1 << 31
# Leaf 0x80000001 EDX: SYSCALL (11) and RDTSCP (27) are hook-only in the engine with no hv
# emulation; long mode (29) is beyond what hv delivers interrupts in.
EXT1_EDX_HIDE = 1 << 11 | 1 << 27 | 1 << 29


@functools.lru_cache(maxsize=1)
def cpuid_table() -> tuple[CpuidEntry, ...]:
    """The engine's own CPUID (its default CPU model), less what hv does not provide,
    plus a hypervisor leaf: what a guest is told is what it gets."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x1000)
    uc.mem_write(0, b"\x0f\xa2")
    regs = (X.UC_X86_REG_EAX, X.UC_X86_REG_EBX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX)

    def cpuid(leaf, sub=0):
        uc.reg_write(X.UC_X86_REG_EAX, leaf)
        uc.reg_write(X.UC_X86_REG_ECX, sub)
        uc.emu_start(0, 2)
        return [uc.reg_read(r) for r in regs]
    out = []
    max_basic = min(cpuid(0)[0], 0xD)
    for leaf in range(max_basic + 1):
        subs = {4: range(4), 7: range(1), 0xB: range(2)}.get(leaf)
        for sub in (subs or [None]):
            a, b, c, d = cpuid(leaf, sub or 0)
            if leaf == 1:
                b &= 0x0000FFFF                 # initial APIC ID 0, one logical CPU
                c = (c & ~L1_ECX_HIDE) | L1_ECX_HYPERVISOR
                d &= ~L1_EDX_HIDE
            if leaf == 0xD:                     # no XSAVE offered
                a = b = c = d = 0
            out.append(CpuidEntry(leaf, sub, a, b, c, d))
    max_ext = cpuid(0x80000000)[0]
    for leaf in range(0x80000000, max_ext + 1):
        a, b, c, d = cpuid(leaf)
        if leaf == 0x80000001:
            d &= ~EXT1_EDX_HIDE
        out.append(CpuidEntry(leaf, None, a, b, c, d))
    sig = struct.unpack("<III", HV_SIGNATURE)
    out.append(CpuidEntry(0x40000000, None, 0x40000001, *sig))
    out.append(CpuidEntry(0x40000001, None, 0, 0, 0, 0))
    return tuple(out)


def cpuid_lookup(table, max_basic: int, max_ext: int, leaf: int, sub: int) -> tuple[int, ...]:
    """hv_cpuid_hook's lookup, for the Python twin."""
    if leaf < 0x40000000 and leaf > max_basic:
        leaf = max_basic
    elif leaf >= 0x80000000 and leaf > max_ext:
        return (0, 0, 0, 0)
    for e in table:
        if e.leaf == leaf and (e.subleaf is None or e.subleaf == sub):
            return (e.eax, e.ebx, e.ecx, e.edx)
    return (0, 0, 0, 0)


# -- MSR interception (process-wide) ----------------------------------------------------
PATCH_LEN = 14              # jmp qword [rip+0]; .quad target
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_patch_lock = threading.Lock()
_patched: dict[str, int] = {}       # helper name -> trampoline address
_trampolines: list = []


_local_addresses: dict[str, int] = {}     # engine functions not exported (hv/codepages.py)


def engine_address(name: str) -> int:
    """Where engine function ``name`` is: exported ones through the dynamic linker,
    the others as registered by ``register_engine_address``."""
    if name in _local_addresses:
        return _local_addresses[name]
    return ctypes.cast(getattr(uclib, name), ctypes.c_void_p).value


def register_engine_address(name: str, addr: int) -> None:
    _local_addresses[name] = addr


def _jump_to(target: int) -> bytes:
    return b"\xff\x25\x00\x00\x00\x00" + struct.pack("<Q", target)


def _relocate(addr: int) -> tuple[int, bytes] | None:
    """The whole instructions at ``addr`` that cover PATCH_LEN bytes, and the same code
    to run elsewhere (followed by a jump back), or None if one of them cannot move: a
    RIP-relative operand or a branch. A final unconditional ``jmp`` to an address (a tail
    call, as the tiniest helpers end) moves as an absolute jump."""
    import capstone
    from capstone import x86_const as C
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    n, code = 0, b""
    for insn in md.disasm(ctypes.string_at(addr, 64), addr):
        if insn.id == C.X86_INS_JMP and insn.operands and insn.operands[0].type == C.X86_OP_IMM:
            return n + insn.size, code + _jump_to(insn.operands[0].imm)
        if insn.group(C.X86_GRP_JUMP) or insn.group(C.X86_GRP_CALL) or insn.group(C.X86_GRP_RET) \
                or insn.group(C.X86_GRP_BRANCH_RELATIVE):
            return None
        for op in insn.operands:
            if op.type == C.X86_OP_MEM and op.mem.base == C.X86_REG_RIP:
                return None
        n += insn.size
        code += bytes(insn.bytes)
        if n >= PATCH_LEN:
            return n, code + _jump_to(addr + n)
    return None


def _movable_prologue(addr: int) -> int:
    found = _relocate(addr)
    return found[0] if found and found[0] >= PATCH_LEN else 0


_prepared: dict[str, tuple[int, int]] = {}     # helper -> (trampoline, bytes displaced)


def _patch_prepared(helper: str) -> int:
    """The trampoline that runs ``helper``'s original code (made once, before patching,
    so a replacement can know where to jump before the first call reaches it)."""
    if helper in _prepared:
        return _prepared[helper][0]
    target = engine_address(helper)
    found = _relocate(target)
    if not found or found[0] < PATCH_LEN:
        raise RuntimeError(f"cannot relocate the prologue of {helper}")
    n, code = found
    tramp = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    tramp.write(code)
    _trampolines.append(tramp)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(tramp))
    _prepared[helper] = (addr, n)
    return addr


def _patch(helper: str, replacement: int) -> int:
    """Send ``helper`` (an engine function) to ``replacement``; returns a trampoline that
    runs the original."""
    tramp_addr = _patch_prepared(helper)
    n = _prepared[helper][1]
    target = engine_address(helper)
    page = target & ~(mmap.PAGESIZE - 1)
    span = (target + n + mmap.PAGESIZE - 1 & ~(mmap.PAGESIZE - 1)) - page
    rwx, rx = 7, 5
    if _libc.mprotect(page, span, rwx) != 0:
        raise RuntimeError(f"mprotect on the engine failed (errno {ctypes.get_errno()})")
    ctypes.memmove(target, _jump_to(replacement) + b"\xcc" * (n - PATCH_LEN), n)
    _libc.mprotect(page, span, rx)
    return tramp_addr


def intercept(helpers: dict[str, int]) -> dict[str, int]:
    """Point each engine helper (name -> replacement address) at its replacement, once per
    process; returns the trampolines that run the originals."""
    with _patch_lock:
        for name, replacement in helpers.items():
            if name not in _patched:
                _patched[name] = _patch(name, replacement)
        return {name: _patched[name] for name in helpers}


MSR_HELPERS = ("helper_rdmsr_x86_64", "helper_wrmsr_x86_64")
IO_HELPERS = ("helper_inb_x86_64", "helper_inw_x86_64", "helper_inl_x86_64",
              "helper_outb_x86_64", "helper_outw_x86_64", "helper_outl_x86_64")


@functools.lru_cache(maxsize=None)
def interception_available(helpers=MSR_HELPERS + IO_HELPERS) -> bool:
    try:
        return all(_movable_prologue(ctypes.cast(getattr(uclib, h), ctypes.c_void_p).value)
                   for h in helpers)
    except Exception:
        return False


def shutdown_text(what: str, first: int, last: int, eip: int, idt_limit: int) -> str:
    """The run's end when a vector cannot be delivered (the C and Python paths agree)."""
    chain = f"vector {first:#04x}" + (f", then {last:#04x}" if last != first else "")
    return f"{what}: {chain} could not be delivered at EIP {eip:#010x} (IDT limit {idt_limit:#x})"


# -- the per-vCPU glue ----------------------------------------------------------------------
class CpuAssist:
    """What a vCPU asks of this module. ``c``: delivery, CPUID, RDTSC and SYSENTER run in
    C (hv/fastpath/cpu.c); otherwise hv/irq.py and Python hooks do the same work. MSRs go
    through the C helpers whenever the C module is built (dispatch "python" included),
    else through Python ones that cannot raise #GP (a longjmp out of the engine cannot
    cross Python frames): unknown MSRs then read 0, as the bare engine does."""

    def __init__(self, vcpu, c: bool) -> None:
        from hv import fastpath
        check_layout()
        self.vcpu = vcpu
        self.uc = vcpu.uc
        # callable(written value) -> the value IA32_APIC_BASE holds now (set by the board)
        self.on_apic_base = None
        self.table = cpuid_table()
        self.max_basic = max(e.leaf for e in self.table if e.leaf < 0x40000000)
        self.max_ext = max(e.leaf for e in self.table if e.leaf >= 0x80000000)
        self.c = c and fastpath.c_available()
        self.k = None
        self._py_apic_base = APIC_BASE_RESET
        self._py_tsc_offset = 0
        if fastpath.c_available():
            self._make_c_state(fastpath)
        else:
            self._py_msr_interception()

    # -- C state -----------------------------------------------------------------------
    def _make_c_state(self, fastpath) -> None:
        ffi, lib = fastpath._fastpath.ffi, fastpath._fastpath.lib
        self._ffi, self._lib = ffi, lib
        k = self.k = ffi.new("hv_cpu *")
        self._handle = ffi.new_handle(self)
        fast = self.vcpu.fast
        if getattr(fast, "kind", "") == "c":
            k.ctl = fast.ctl
        else:   # the Python dispatcher: a C view of RAM of our own, for the I/O check's walks
            self._own_ctl = k.ctl = ffi.new("hv_ctl *")
            fn = fastpath._engine_functions()
            lib.hv_set_engine(k.ctl, ffi.cast("void *", fastpath._uch(self.uc)),
                              ffi.cast("void *", fn.ram_addr_ptr),
                              ffi.cast("void *", fn.tb_invalidate_ptr),
                              ffi.cast("void *", self.vcpu._host_ptr), self.vcpu.mem.span)
        uch = fastpath._uch(self.uc)
        k.uc = ffi.cast("void *", uch)
        alloc = uclib.uc_context_alloc
        ctxp = ctypes.c_void_p()
        if alloc(ctypes.c_void_p(uch), ctypes.byref(ctxp)) != 0:
            raise RuntimeError("uc_context_alloc failed")
        self._ctx_ptr = ctxp.value
        k.ctx = ffi.cast("void *", ctxp.value)
        k.env = ffi.cast("uint8_t *", ctxp.value + CTX_HEADER)
        addr = lambda f: ffi.cast("void *", ctypes.cast(f, ctypes.c_void_p).value)
        k.ctx_save, k.ctx_restore = addr(uclib.uc_context_save), addr(uclib.uc_context_restore)
        k.reg_read, k.reg_write = addr(uclib.uc_reg_read), addr(uclib.uc_reg_write)
        k.r_eflags, k.r_cs, k.r_ss, k.r_esp = (X.UC_X86_REG_EFLAGS, X.UC_X86_REG_CS,
                                               X.UC_X86_REG_SS, X.UC_X86_REG_ESP)
        k.r_msr = X.UC_X86_REG_MSR
        for name, off in ENV.items():
            setattr(k, "o_" + name, off)
        lib.hv_cpuid_ids[0:4] = [X.UC_X86_REG_EAX, X.UC_X86_REG_EBX, X.UC_X86_REG_ECX,
                                  X.UC_X86_REG_EDX]
        k.apic_base = APIC_BASE_RESET
        k.clock_origin_ns = self.vcpu.machine.clock.host_time(0)
        for i, msr in enumerate(ENGINE_MSRS):
            k.engine_msrs[i] = msr
        k.n_engine_msrs = len(ENGINE_MSRS)
        k.handle = self._handle
        for i, e in enumerate(self.table):
            ent = k.cpuid[i]
            ent.leaf, ent.subleaf, ent.has_subleaf = e.leaf, e.subleaf or 0, e.subleaf is not None
            ent.eax, ent.ebx, ent.ecx, ent.edx = e.eax, e.ebx, e.ecx, e.edx
        k.n_cpuid = len(self.table)
        k.cpuid_max_basic, k.cpuid_max_ext = self.max_basic, self.max_ext
        if interception_available():
            raise_ra = ffi.cast("void *", ctypes.cast(uclib.raise_exception_err_ra_x86_64,
                                                      ctypes.c_void_p).value)
            t = intercept({MSR_HELPERS[0]: self._c_addr("hv_rdmsr"),
                           MSR_HELPERS[1]: self._c_addr("hv_wrmsr")})
            lib.hv_set_msr_helpers(raise_ra, ffi.cast("void *", t[MSR_HELPERS[0]]),
                                   ffi.cast("void *", t[MSR_HELPERS[1]]))
            # The I/O permission check (IOPL, TSS bitmap) in front of the port helpers;
            # the originals must be known before the first jump reaches a stub.
            stubs = dict(zip(IO_HELPERS, ("hv_inb", "hv_inw", "hv_inl", "hv_outb", "hv_outw",
                                          "hv_outl")))
            with _patch_lock:
                originals = [_patched.get(h) for h in IO_HELPERS]
            if None in originals:
                tramps = [_patch_prepared(h) for h in IO_HELPERS]
                lib.hv_set_io_helpers(*(ffi.cast("void *", a) for a in tramps))
                intercept({h: self._c_addr(stubs[h]) for h in IO_HELPERS})
            else:
                lib.hv_set_io_helpers(*(ffi.cast("void *", a) for a in originals))
        _CPUS[id(self._handle)] = self

    def close(self) -> None:
        """The machine is done: forget this vCPU, so it and its engine can be freed
        (``_CPUS`` kept every vCPU ever made, a few MiB each, for the process's life)."""
        self.leave()
        if self.k is not None:
            _CPUS.pop(id(self._handle), None)
            if self._ctx_ptr:
                uclib.uc_context_free(ctypes.c_void_p(self._ctx_ptr))
                self._ctx_ptr = None
                self.k.ctx = self.k.env = self._ffi.NULL
        self.uc = None          # (this object and its C handle form a cycle: let go now)

    def _c_addr(self, name: str) -> int:
        return int(self._ffi.cast("uintptr_t", self._ffi.addressof(self._lib, name)))

    def _py_msr_interception(self) -> None:
        # No C module: the patched helpers are Python callbacks (kept alive here).
        global _PY_MSR
        if _PY_MSR is None and interception_available(MSR_HELPERS):
            proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
            rd_cb, wr_cb = proto(_py_rdmsr), proto(_py_wrmsr)
            t = intercept({MSR_HELPERS[0]: ctypes.cast(rd_cb, ctypes.c_void_p).value,
                           MSR_HELPERS[1]: ctypes.cast(wr_cb, ctypes.c_void_p).value})
            rd, wr = t[MSR_HELPERS[0]], t[MSR_HELPERS[1]]
            _PY_MSR = (rd_cb, wr_cb, proto(rd), proto(wr))

    # -- hooks -----------------------------------------------------------------------------
    def install(self) -> None:
        from unicorn import UC_HOOK_INSN, UC_HOOK_INTR
        uc = self.uc
        if self.c:
            ud = int(self._ffi.cast("uintptr_t", self.k))
            self._c_hook(UC_HOOK_INTR, "hv_intr_hook", ud)
            self._c_hook(UC_HOOK_INSN, "hv_cpuid_hook", ud, X.UC_X86_INS_CPUID)
            self._c_hook(UC_HOOK_INSN, "hv_rdtsc_hook", ud, X.UC_X86_INS_RDTSC)
            self._c_hook(UC_HOOK_INSN, "hv_sysenter_hook", ud, X.UC_X86_INS_SYSENTER)
            return
        uc.hook_add(UC_HOOK_INTR, self.vcpu._on_intr)
        uc.hook_add(UC_HOOK_INSN, self._py_cpuid, None, 1, 0, X.UC_X86_INS_CPUID)
        # The Python binding does not wrap RDTSC hooks; the library takes them (ctypes).
        self._rdtsc_cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(
            lambda uch, ud: self._py_rdtsc(uc, None))
        hook = ctypes.c_size_t()
        if uclib.uc_hook_add(uc._uch, ctypes.byref(hook), UC_HOOK_INSN, self._rdtsc_cb, None,
                             ctypes.c_uint64(1), ctypes.c_uint64(0),
                             ctypes.c_int(X.UC_X86_INS_RDTSC)):
            raise RuntimeError("uc_hook_add(RDTSC) failed")
        uc.hook_add(UC_HOOK_INSN, self._py_sysenter, None, 1, 0, X.UC_X86_INS_SYSENTER)

    def _c_hook(self, kind: int, name: str, ud: int, insn: int | None = None) -> None:
        hook = ctypes.c_size_t()
        extra = () if insn is None else (ctypes.c_int(insn),)
        err = uclib.uc_hook_add(self.uc._uch, ctypes.byref(hook), kind,
                                ctypes.c_void_p(self._c_addr(name)), ctypes.c_void_p(ud),
                                ctypes.c_uint64(1), ctypes.c_uint64(0), *extra)
        if err:
            raise RuntimeError(f"uc_hook_add({name}) failed: {err}")

    def enter(self) -> None:
        """Before each emu_start: the patched MSR helpers find this vCPU."""
        if self.k is not None:
            if not self.c and self.vcpu.fast.virtual:
                # The Python dispatcher's virtual clock lives in Python: hand C the time.
                self.k.virtual_clock = 1
                self.k.virtual_ns = self.vcpu.machine.clock.now()
            self._lib.hv_enter(self.k)
        else:
            _PY_CURRENT.cpu = self

    def leave(self) -> None:
        """After the run, on its thread: the patched helpers find no vCPU here any more (an
        engine run next on this thread, a process container's, gets the engine's own
        helpers, never this vCPU's state, which may be freed by then)."""
        if self.k is not None:
            self._lib.hv_enter(self._ffi.NULL)
        if getattr(_PY_CURRENT, "cpu", None) is self:
            _PY_CURRENT.cpu = None

    # -- what the vCPU loop and the board ask --------------------------------------------
    def deliver(self, vector: int, error: int | None = None, kind: int = KIND_EXT,
                eip: int | None = None, fault_eip: int | None = None) -> None:
        """Deliver between slices (external interrupts) or from a Python hook. GuestFault
        with the reason when the CPU would shut down (a triple fault)."""
        from hv.irq import GuestFault
        if eip is None:
            eip = self.uc.reg_read(X.UC_X86_REG_EIP)
        if self.c:
            if self._lib.hv_deliver(self.k, vector, kind, int(error is not None), error or 0, eip,
                                    eip if fault_eip is None else fault_eip) < 0:
                raise GuestFault(self.fault_text())
            return
        self.vcpu.delivery.deliver(vector, error, kind, eip,
                                   eip if fault_eip is None else fault_eip)

    def fault_text(self) -> str:
        k = self.k
        if k.fault == FAULT_UNSUPPORTED:
            what = "unsupported delivery (a task gate or virtual-8086 mode)"
        elif k.fault == FAULT_MMIO_STACK:
            what = "the interrupt stack is outside RAM"
        else:
            what = "triple fault"
        return shutdown_text(what, k.first_vector, k.fault_vector, k.fault_eip,
                             self.uc.reg_read(X.UC_X86_REG_IDTR)[2])

    @property
    def apic_base(self) -> int:
        return self.k.apic_base if self.k is not None else self._py_apic_base

    def set_apic_base(self, value: int) -> None:
        if self.k is not None:
            self.k.apic_base = value
        self._py_apic_base = value

    def reset(self) -> None:
        """Power-on: IA32_APIC_BASE back to 0xFEE00900, the TSC counting from 0."""
        self.set_apic_base(APIC_BASE_RESET)
        self.set_tsc(0)

    def set_tsc(self, value: int) -> None:
        """Make the TSC read ``value`` now (it keeps counting 1 GHz of virtual time)."""
        offset = value - self.vcpu.machine.clock.now()
        if self.k is not None:
            self.k.tsc_offset = offset
        self._py_tsc_offset = offset

    def counts(self) -> dict[tuple[str, str], int]:
        if not self.c:
            return {}
        k, out = self.k, {}
        for v in range(256):
            if k.softints[v]:
                out[("softint", f"int {v:#04x}")] = k.softints[v]
            if k.exceptions[v]:
                out[("exception", f"int {v:#04x}")] = k.exceptions[v]
        return out

    def tsc(self) -> int:
        if self.k is None:
            return self.vcpu.machine.clock.now() + self._py_tsc_offset
        if not self.c and self.vcpu.fast.virtual:
            # The Python dispatcher's virtual time reaches C only at each slice's start
            # (enter): between slices (a save, the monitor) it is read here.
            return (self.vcpu.machine.clock.now() + self.k.tsc_offset) & (1 << 64) - 1
        return self._lib.hv_tsc(self.k)

    # -- Python twins of the C hooks ---------------------------------------------------------
    def _py_cpuid(self, uc, ud) -> int:
        leaf = uc.reg_read(X.UC_X86_REG_EAX) & 0xFFFFFFFF
        sub = uc.reg_read(X.UC_X86_REG_ECX) & 0xFFFFFFFF
        out = list(cpuid_lookup(self.table, self.max_basic, self.max_ext, leaf, sub))
        if leaf == 1 and not self.apic_base & 1 << 11:
            out[3] &= ~(1 << 9)                 # a globally disabled APIC is not there
        for reg, v in zip((X.UC_X86_REG_EAX, X.UC_X86_REG_EBX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX),
                          out):
            uc.reg_write(reg, v)
        return 1

    def _py_rdtsc(self, uc, ud) -> int:
        t = self.tsc()
        uc.reg_write(X.UC_X86_REG_EAX, t & 0xFFFFFFFF)
        uc.reg_write(X.UC_X86_REG_EDX, t >> 32 & 0xFFFFFFFF)
        return 1

    def _py_sysenter(self, uc, ud) -> None:
        self.vcpu.delivery.sysenter()


_CPUS: dict[int, CpuAssist] = {}
_PY_MSR = None
_PY_CURRENT = threading.local()


def _py_rdmsr(env: int) -> None:
    cpu = getattr(_PY_CURRENT, "cpu", None)
    msr = ctypes.c_uint64.from_address(env + 8).value & 0xFFFFFFFF
    if cpu is None or msr not in (MSR_TSC, MSR_APIC_BASE):
        _PY_MSR[2](env)
        return
    v = cpu.tsc() if msr == MSR_TSC else cpu._py_apic_base
    ctypes.c_uint64.from_address(env).value = v & 0xFFFFFFFF
    ctypes.c_uint64.from_address(env + 16).value = v >> 32


def _py_wrmsr(env: int) -> None:
    cpu = getattr(_PY_CURRENT, "cpu", None)
    msr = ctypes.c_uint64.from_address(env + 8).value & 0xFFFFFFFF
    if cpu is None or msr not in (MSR_TSC, MSR_APIC_BASE):
        _PY_MSR[3](env)
        return
    v = (ctypes.c_uint64.from_address(env).value & 0xFFFFFFFF) | \
        (ctypes.c_uint64.from_address(env + 16).value & 0xFFFFFFFF) << 32
    if msr == MSR_TSC:
        cpu._py_tsc_offset = v - cpu.vcpu.machine.clock.now()
    elif not v & ~APIC_BASE_WRITABLE:
        cpu._py_apic_base = cpu.on_apic_base(v) if cpu.on_apic_base else v


def _register_callbacks() -> None:
    from hv import fastpath
    if not fastpath.c_available():
        return
    ffi = fastpath._fastpath.ffi

    @ffi.def_extern(onerror=fastpath._on_callback_error)
    def hv_py_cpu_fault(handle):
        cpu = ffi.from_handle(handle)
        cpu.vcpu._fail_in_hook(cpu.fault_text() + f" ({cpu.vcpu.where()})")

    @ffi.def_extern(onerror=fastpath._on_callback_error)
    def hv_py_apic_base(handle):
        cpu = ffi.from_handle(handle)
        if cpu.on_apic_base:        # the board's APIC says what the register holds now
            cpu.k.apic_base = cpu.on_apic_base(cpu.k.apic_base)


_register_callbacks()
