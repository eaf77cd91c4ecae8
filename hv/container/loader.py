"""Loading a static Linux i386 ELF into a fresh address space, as Linux's binfmt_elf does.

Two kinds of program load: static ``ET_EXEC`` (gcc -m32 -static) at its link addresses,
and static-PIE (``ET_DYN`` with no ``PT_INTERP``, gcc -m32 -static-pie) at ``PIE_BASE``.
Anything else, and every malformed file (truncated headers, segments that overlap,
reach outside the user address space or beyond the file, an entry point outside the
loaded image, ...), is a ``LoadError`` with a one-line reason.

Segments are not copied: the file-backed pages of each ``PT_LOAD`` are a private
(copy-on-write) ``mmap`` of the file, which costs nothing until the guest writes to
it; only the bss tail of the last file page is zeroed, and the rest of the bss is
anonymous memory. This needs segments whose file offset and address agree modulo the
page size, as Linux's loader does too (static glibc's segments are).

The loader also builds the initial stack (argc, argv, envp, auxv: the layout of
``create_elf_tables`` in fs/binfmt_elf.c) and the descriptor table the process runs
under. Guest layout (one 3 GiB user address space, as a 3G/1G i386 kernel):

    0x00000000-0x0000FFFF  never mapped (NULL and small-offset dereferences fault)
    program image          at its link address (ET_EXEC) or PIE_BASE (static-PIE)
    brk heap               from the page after the image, grown by brk()
    mmap area              allocated top-down below MMAP_TOP
    stack                  below STACK_TOP, grown on demand up to STACK_MAX
    SYS_PAGE               the GDT and the ring-3 entry trampoline, read-only
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

PAGE = 0x1000
MIN_ADDR = 0x10000                  # Linux's default vm.mmap_min_addr
TASK_TOP = 0xC0000000               # end of the user address space
STACK_TOP = TASK_TOP
STACK_MAX = 8 << 20                 # RLIMIT_STACK
STACK_INITIAL = 128 << 10           # mapped at start; faults below grow it
MMAP_TOP = STACK_TOP - STACK_MAX - (1 << 20)   # a 1 MiB gap above the mmap area
PIE_BASE = 0x00400000               # ELF_ET_DYN_BASE of an ia32 task
MAX_IMAGE = 1 << 30                 # total PT_LOAD memory we accept
MAX_PHNUM = 64
MAX_ARG_BYTES = 128 << 10           # argv + envp strings (Linux: MAX_ARG_STRLEN per string)

# The system page: not part of the user address space (the loader's tables only).
SYS_PAGE = 0xFFFFF000
GDT_ADDR = SYS_PAGE                 # 9 descriptors
TRAMPOLINE = SYS_PAGE + 0x800       # one `iretd`: CPL0 -> CPL3 at the entry point
ENTRY_FRAME = SYS_PAGE + PAGE - 20  # the iretd frame: EIP, CS, EFLAGS, ESP, SS
GDT_ENTRIES = 9
KERNEL_CS, KERNEL_DS, USER_CS, USER_DS = 0x08, 0x10, 0x1B, 0x23
TLS_ENTRY_MIN = 6                   # GDT_ENTRY_TLS_MIN on i386 Linux: entries 6, 7, 8
TLS_ENTRIES = 3
USER_EFLAGS = 0x202                 # IF set, IOPL 0

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4

# ELF constants (the System V gABI, i386 supplement).
ET_EXEC, ET_DYN = 2, 3
EM_386 = 3
PT_LOAD, PT_INTERP, PT_PHDR = 1, 3, 6
PF_X, PF_W, PF_R = 1, 2, 4

# auxv keys (include/uapi/linux/auxvec.h)
AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN = 23, 25, 26, 31
HWCAP_I686 = 0x178BFBFF             # CPUID.1:EDX of the CPU glibc sees (fpu..sse2)
CLOCK_TICKS = 100
PLATFORM = b"i686"


class LoadError(Exception):
    """The program cannot be loaded; str() is a one-line reason."""


@dataclass(frozen=True)
class Segment:
    vaddr: int      # after the load bias
    offset: int
    filesz: int
    memsz: int
    prot: int


@dataclass(frozen=True)
class ElfImage:
    """A validated static i386 executable (addresses already biased)."""

    entry: int
    phdr: int           # where the program headers are in guest memory (AT_PHDR)
    phnum: int
    segments: tuple[Segment, ...]
    end: int            # page-rounded end of the highest segment: brk starts here
    bias: int


def _prot(flags: int) -> int:
    return ((PROT_READ if flags & PF_R else 0) | (PROT_WRITE if flags & PF_W else 0)
            | (PROT_EXEC if flags & PF_X else 0))


def _page_down(x: int) -> int:
    return x & ~(PAGE - 1)


def _page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


def parse_elf(head: bytes, file_size: int) -> ElfImage:
    """Validate the ELF and program headers in ``head`` (the file's first bytes)."""
    if len(head) < 52:
        raise LoadError("not an ELF file: truncated header")
    if head[:4] != b"\x7fELF":
        raise LoadError("not an ELF file: bad magic")
    if head[4] != 1 or head[5] != 1:
        raise LoadError("not a 32-bit little-endian ELF (need i386)")
    e_type, e_machine, _version, entry, phoff = struct.unpack_from("<HHIII", head, 16)
    phentsize, phnum = struct.unpack_from("<HH", head, 42)
    if e_machine != EM_386:
        raise LoadError(f"not an i386 program (e_machine {e_machine})")
    if e_type not in (ET_EXEC, ET_DYN):
        raise LoadError(f"not an executable (e_type {e_type})")
    if phentsize != 32 or not 0 < phnum <= MAX_PHNUM:
        raise LoadError(f"bad program header table ({phnum} entries of {phentsize} bytes)")
    if phoff + phnum * 32 > min(len(head), file_size):
        raise LoadError("truncated program header table")
    phdrs = [struct.unpack_from("<8I", head, phoff + 32 * i) for i in range(phnum)]
    if any(p[0] == PT_INTERP for p in phdrs):
        raise LoadError("dynamically linked (PT_INTERP): only static programs run in a container")
    bias = PIE_BASE if e_type == ET_DYN else 0
    segments: list[Segment] = []
    phdr_addr = None
    for p_type, off, vaddr, _paddr, filesz, memsz, flags, _align in phdrs:
        if p_type == PT_PHDR:
            phdr_addr = vaddr + bias
        if p_type != PT_LOAD or memsz == 0:
            continue
        va = vaddr + bias
        if filesz > memsz:
            raise LoadError(f"segment at {va:#x}: file size larger than memory size")
        if off + filesz > file_size:
            raise LoadError(f"segment at {va:#x} reaches beyond the end of the file")
        if va % PAGE != off % PAGE:
            raise LoadError(f"segment at {va:#x} is not page-congruent with its file offset")
        if va < MIN_ADDR or va + memsz > MMAP_TOP:
            raise LoadError(f"segment at {va:#x} (+{memsz:#x}) is outside the user address space")
        segments.append(Segment(va, off, filesz, memsz, _prot(flags)))
    if not segments:
        raise LoadError("no loadable segment")
    segments.sort(key=lambda s: s.vaddr)
    total = 0
    for a, b in zip(segments, segments[1:]):
        if _page_up(a.vaddr + a.memsz) > _page_down(b.vaddr):
            raise LoadError(f"segments at {a.vaddr:#x} and {b.vaddr:#x} overlap")
    for s in segments:
        total += _page_up(s.vaddr + s.memsz) - _page_down(s.vaddr)
    if total > MAX_IMAGE:
        raise LoadError(f"segments total {total >> 20} MiB (limit {MAX_IMAGE >> 20} MiB)")
    entry += bias
    if not any(s.vaddr <= entry < s.vaddr + s.memsz and s.prot & PROT_EXEC for s in segments):
        raise LoadError(f"entry point {entry:#x} is outside the executable segments")
    if phdr_addr is None:   # the loaded segment that holds the headers (as Linux's loader)
        for s in segments:
            if s.offset <= phoff and phoff + phnum * 32 <= s.offset + s.filesz:
                phdr_addr = s.vaddr + phoff - s.offset
                break
        else:
            phdr_addr = 0
    end = _page_up(max(s.vaddr + s.memsz for s in segments))
    return ElfImage(entry, phdr_addr, phnum, tuple(segments), end, bias)


def read_elf(fd: int) -> tuple[ElfImage, int]:
    """Parse the ELF open at host ``fd``; returns (image, file size)."""
    size = os.fstat(fd).st_size
    head = os.pread(fd, min(size, 4096), 0)
    try:
        return parse_elf(head, size), size
    except struct.error as exc:   # parse_elf checks lengths first; this is a backstop
        raise LoadError(f"malformed ELF ({exc})") from None


def map_image(space, image: ElfImage, fd: int) -> None:
    """Map ``image``'s segments into ``space`` (a guest_memory.AddressSpace)."""
    for s in image.segments:
        lo, hi = _page_down(s.vaddr), _page_up(s.vaddr + s.memsz)
        file_end = _page_up(s.vaddr + s.filesz) if s.filesz else lo
        if file_end > lo:
            space.map_file(lo, file_end - lo, s.prot, fd, _page_down(s.offset), kind="image")
            tail = s.vaddr + s.filesz
            if s.memsz > s.filesz and tail < file_end:
                # the bss starts inside the last file page: zero the rest of that page
                space.poke(tail, bytes(file_end - tail))
        if hi > file_end:
            space.map_anonymous(file_end, hi - file_end, s.prot, kind="image")


def build_stack(space, image: ElfImage, argv: list[bytes], envp: list[bytes], execfn: bytes,
                ids: tuple[int, int, int, int], random16: bytes) -> int:
    """Write the initial stack below STACK_TOP; returns the initial ESP (at argc).

    ``ids`` are (uid, euid, gid, egid) for the auxv."""
    if any(b"\0" in s for s in argv + envp + [execfn]):
        raise LoadError("an argument or environment string contains a NUL byte")
    if sum(len(s) + 1 for s in argv + envp) + len(execfn) + 1 > MAX_ARG_BYTES:
        raise LoadError("argument list too long")
    sp = STACK_TOP - 4                      # the top word stays zero (Linux's end marker)

    def push(data: bytes) -> int:
        nonlocal sp
        sp -= len(data)
        space.poke(sp, data)
        return sp
    execfn_at = push(execfn + b"\0")
    env_at = [push(s + b"\0") for s in reversed(envp)][::-1]
    arg_at = [push(s + b"\0") for s in reversed(argv)][::-1]
    platform_at = push(PLATFORM + b"\0")
    sp &= ~0xF
    random_at = push(random16)
    uid, euid, gid, egid = ids
    auxv = [(AT_PHDR, image.phdr), (AT_PHENT, 32), (AT_PHNUM, image.phnum), (AT_PAGESZ, PAGE),
            (AT_BASE, 0), (AT_FLAGS, 0), (AT_ENTRY, image.entry), (AT_UID, uid), (AT_EUID, euid),
            (AT_GID, gid), (AT_EGID, egid), (AT_HWCAP, HWCAP_I686), (AT_CLKTCK, CLOCK_TICKS),
            (AT_PLATFORM, platform_at), (AT_SECURE, 0), (AT_RANDOM, random_at), (AT_HWCAP2, 0),
            (AT_EXECFN, execfn_at), (AT_NULL, 0)]
    words = [len(argv), *arg_at, 0, *env_at, 0] + [x for pair in auxv for x in pair]
    sp = (sp - 4 * len(words)) & ~0xF       # argc 16-byte aligned, as the i386 ABI wants
    space.poke(sp, struct.pack(f"<{len(words)}I", *words))
    return sp


def descriptor(base: int, limit: int, access: int, flags: int = 0xC) -> bytes:
    """One 8-byte segment descriptor (flags: G, D/B, L, AVL in bits 3..0)."""
    lo = (limit & 0xFFFF) | ((base & 0xFFFF) << 16)
    hi = (((base >> 16) & 0xFF) | (access << 8) | (((limit >> 16) & 0xF) << 16) | (flags << 20)
          | (base & 0xFF000000))
    return struct.pack("<II", lo, hi)


def system_page(entry: int, initial_sp: int) -> bytes:
    """The read-only page at SYS_PAGE: GDT, the iretd trampoline and its frame.

    Every descriptor has its accessed bit preset: the CPU would otherwise write it on
    the first segment load, and the page is mapped read-only for the engine so that the
    guest cannot edit its own GDT (a call gate or a DPL0 code descriptor would be a way
    to ring 0)."""
    page = bytearray(PAGE)
    gdt = (bytes(8) + descriptor(0, 0xFFFFF, 0x9B) + descriptor(0, 0xFFFFF, 0x93)
           + descriptor(0, 0xFFFFF, 0xFB) + descriptor(0, 0xFFFFF, 0xF3))
    page[0:len(gdt)] = gdt
    page[TRAMPOLINE - SYS_PAGE] = 0xCF                     # iretd
    page[ENTRY_FRAME - SYS_PAGE:] = struct.pack("<5I", entry, USER_CS, USER_EFLAGS, initial_sp,
                                                USER_DS)
    return bytes(page)


def tls_descriptor(base: int, limit: int, flags: int) -> bytes:
    """The GDT entry for a ``struct user_desc`` (set_thread_area), as arch/x86's
    fill_ldt(): always DPL3, accessed bit preset (see system_page)."""
    seg_32bit, contents = flags & 1, (flags >> 1) & 3
    read_exec_only, limit_in_pages = (flags >> 3) & 1, (flags >> 4) & 1
    seg_not_present, useable = (flags >> 5) & 1, (flags >> 6) & 1
    access = ((0 if seg_not_present else 0x80) | 0x60 | 0x10 | (contents << 2)
              | ((0 if read_exec_only else 1) << 1) | 1)
    return descriptor(base, limit, access, (limit_in_pages << 3) | (seg_32bit << 2) | useable)
