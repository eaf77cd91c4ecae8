"""Build every guest image (and the firmware other packages provide) with one command.

    python -m hv.guests.build              # rebuild guests/images/*.img and the firmware
    python -m hv.guests.build --out DIR    # write the guest images to DIR instead

Guests are built with GNU binutils (``as --32`` on ``.code16`` sources, ``ld -m elf_i386``
straight to a flat binary) and, for bioscheck's checks, ``gcc -m16 -ffreestanding``.
The output is deterministic: no timestamps, paths or debug info reach the images, so
the committed images can be compared byte for byte with a fresh build.

Targets are a table: a new guest is one more ``Target`` row; other firmware builders
are one more entry in ``FIRMWARE_BUILDERS``.
"""
from __future__ import annotations

import argparse
import importlib
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

GUESTS_DIR = Path(__file__).resolve().parent
SRC_DIR = GUESTS_DIR / "src"
IMAGES_DIR = GUESTS_DIR / "images"  # same as guests.IMAGES_DIR

SECTOR = 512
BOOT_SIGNATURE = b"\x55\xaa"
LOAD_ADDRESS = 0x7C00  # where the BIOS puts sector 0

AS = ["as", "--32", "-I", str(SRC_DIR)]
LD = ["ld", "-m", "elf_i386", "--build-id=none", "-nostdlib"]
CC = [
    "gcc", "-m16", "-march=i386", "-Os", "-ffreestanding", "-fno-builtin", "-nostdlib",
    "-fno-pic", "-fno-pie", "-fno-stack-protector", "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables", "-fcf-protection=none", "-mgeneral-regs-only", "-fno-common",
    "-Wall", "-Wextra", "-Werror", "-g0",
    "-Wno-array-bounds",  # gcc 12 flags every fixed low-memory address (BDA) as out of bounds
]


@dataclass(frozen=True)
class Target:
    """One boot-disk image: its sources (.S via as, .c via gcc) and how to link them."""

    name: str
    sources: tuple[str, ...]
    # A linker script in src/, or None for a single sector linked at 0x7C00.
    linker_script: str | None = None
    depends: tuple[str, ...] = field(default=())  # included files, for documentation
    description: str = ""                          # one line, for `hv list`
    c32: bool = False                              # .c files are 32-bit code (gcc -m32), not -m16


# Every C guest's boot sector and base; the hardware tests add cguest.h to the base.
_BOOT = ("boot_sector.inc", "realmode.h")
_CGUEST = _BOOT + ("cguest.h",)
_VIRTIO = _CGUEST + ("virtio.h",)

TARGETS: tuple[Target, ...] = (
    Target("hello", ("hello.S",), depends=("macros.inc", "common.inc"),
           description="prints a greeting on serial and screen, then halts"),
    Target("timer", ("timer.S",), depends=("macros.inc", "common.inc"),
           description="counts PIT ticks through IRQ 0 and the BIOS tick count"),
    Target("keyecho", ("keyecho.S",), depends=("macros.inc", "common.inc"),
           description="echoes keystrokes (INT 16h) back to the screen and serial"),
    Target("bioscheck", ("bioscheck_boot.S", "bioscheck.c"), linker_script="bioscheck.ld",
           depends=_BOOT,
           description="BIOS conformance: 43 INT 10h/13h/15h/16h/1Ah checks print PASS/FAIL"),
    # Hardware tests: C on a shared boot stage; they drive the devices by port I/O.
    Target("disktest", ("cguest_boot.S", "disktest.c"), linker_script="cguest.ld",
           depends=_CGUEST + ("disktest_common.h",),
           description="ATA PIO driver: reads, writes and checksums the scratch disk on IDE"),
    Target("nettest", ("cguest_boot.S", "nettest.c"), linker_script="cguest.ld",
           depends=_CGUEST + ("ne2000.h", "ipv4.h"),
           description="NE2000 driver: ARP and ping to the gateway 10.0.2.2"),
    # nettest's peer on a virtual switch: plays its gateway 10.0.2.2 and pings it back.
    Target("netpeer", ("cguest_boot.S", "netpeer.c"), linker_script="cguest.ld",
           depends=_CGUEST + ("ne2000.h", "ipv4.h"),
           description="nettest's peer on a switch: answers as 10.0.2.2 and pings back"),
    # The same work on the synthetic virtio devices (virtio-mmio slots at 0xD0000).
    Target("disktest-virtio", ("cguest_boot.S", "virtio_irq.S", "disktest_virtio.c"),
           linker_script="cguest.ld", depends=_VIRTIO + ("disktest_common.h",),
           description="disktest's work on virtio-blk (synthetic disk)"),
    Target("nettest-virtio", ("cguest_boot.S", "virtio_irq.S", "nettest_virtio.c"),
           linker_script="cguest.ld", depends=_VIRTIO + ("ipv4.h",),
           description="nettest's work on virtio-net (synthetic NIC)"),
    Target("balloontest", ("cguest_boot.S", "virtio_irq.S", "balloontest.c"),
           linker_script="cguest.ld", depends=_VIRTIO,
           description="virtio-balloon: gives 8 MiB back to the host"),
    # Device benchmarks (bench/test_devices.py): virtio-blk and virtio-net throughput.
    Target("blkbench", ("cguest_boot.S", "virtio_irq.S", "blkbench.c"),
           linker_script="cguest.ld", depends=_VIRTIO,
           description="virtio-blk throughput benchmark guest"),
    Target("netbench", ("cguest_boot.S", "virtio_irq.S", "netbench.c"),
           linker_script="cguest.ld", depends=_VIRTIO,
           description="virtio-net transmit benchmark guest"),
    # Protected-mode conformance (docs/pmtest.md): boot as a hard disk (IRQ 14 needs the drive).
    Target("pmtest", ("pmtest/boot.S", "pmtest/entry.S", "pmtest/user.S", "pmtest/pmtest.c"),
           linker_script="pmtest/pmtest.ld", c32=True,
           depends=("boot_sector.inc", "pmtest/pmtest.inc", "pmtest/pmtest.h"),
           description="protected mode, paging, ring 3, APICs, sysenter: PASS/FAIL vs QEMU"),
)

# Direct-boot kernels (``hv run --kernel``, hv/boot.py): 32-bit C and as, linked as an
# ELF32 executable at 1 MiB (``<name>.elf``, stripped) plus its flat image (``<name>.bin``).
KCC = ["gcc", "-m32"] + [f for f in CC if f != "-m16"][1:]


@dataclass(frozen=True)
class KernelTarget:
    """One direct-boot kernel: sources (.S via as, .c via gcc -m32), a linker script, -D flags."""

    name: str
    sources: tuple[str, ...]
    linker_script: str = "kernels/kernel.ld"
    defines: tuple[str, ...] = field(default=())
    depends: tuple[str, ...] = field(default=())
    description: str = ""


_HELLO = ("kernels/entry.S", "kernels/hellokernel.c")
KERNEL_TARGETS: tuple[KernelTarget, ...] = (
    KernelTarget("hellokernel", _HELLO, depends=("kernels/hvboot.h",),
                 description="direct-boot kernel: prints its boot information, powers off"),
    # The same kernel ending in cli; hlt instead of the power-off hypercall.
    KernelTarget("haltkernel", _HELLO, defines=("END_WITH_HLT",), depends=("kernels/hvboot.h",),
                 description="hellokernel ending in cli; hlt instead of the power-off call"),
    # The utility-VM kernel (hv container run --isolation vm): one Linux program at ring 3.
    KernelTarget("uvmkernel", ("uvm/entry.S", "uvm/uvm.c"), depends=("kernels/hvboot.h",),
                 description="utility-VM kernel: a Linux i386 program, files over 9P"),
)

# The full/enlightened VM's boot files (docs/vm-flavors.md): the utility-VM kernel built with
# -DUVM_FULL, behind a one-sector real-mode loader, is ``uvmfull.sys`` (the host writes it to the
# FAT16 volume's reserved area from LBA 1); ``fatboot.bin`` is the volume's boot sector.
FULL_KERNEL = KernelTarget("uvmfull", ("uvm/entry.S", "uvm/uvm.c"), defines=("UVM_FULL",),
                           depends=("kernels/hvboot.h", "uvm/blk.c", "uvm/fat.c", "uvm/p9local.c",
                                    "uvm/hive.c", "uvm/full.c"),
                           description="full/enlightened VM kernel: boots from FAT16, serves every call")
FULL_LOADER, FULL_BOOT = "uvm/loader.S", "uvm/fatboot.S"


def _flat16(source: str, base: int, work: Path) -> bytes:
    """One real-mode source, linked at ``base``, as a flat binary."""
    obj = _compile((source,), CC, work)
    out = work / (Path(source).stem + ".flat")
    _run(LD + ["-Ttext", hex(base), "-e", "_start", "--oformat", "binary", "-o", str(out)] + obj, work)
    return out.read_bytes()


def _elf_end(elf: bytes) -> int:
    """The highest address an ELF32 image's loadable segments reach (.bss included)."""
    phoff, = struct.unpack_from("<I", elf, 28)
    phentsize, phnum = struct.unpack_from("<HH", elf, 42)
    end = 0
    for i in range(phnum):
        p_type, _, vaddr, _, _, memsz = struct.unpack_from("<IIIIII", elf, phoff + i * phentsize)
        if p_type == 1:
            end = max(end, vaddr + memsz)
    return end


def build_full(outdir: Path) -> list[Path]:
    """``uvmfull.sys`` (loader sector + flat kernel, whole sectors) and ``fatboot.bin``."""
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="uvmfull-") as td:
        work = Path(td)
        boot = _flat16(FULL_BOOT, LOAD_ADDRESS, work)
        loader = _flat16(FULL_LOADER, 0, work)
        elf, flat = build_kernel(FULL_KERNEL, work / "kernel")
        kernel = flat.read_bytes()
        image_end = _elf_end(elf.read_bytes())
    if len(boot) != SECTOR or boot[510:] != BOOT_SIGNATURE or len(loader) != SECTOR:
        raise RuntimeError("uvmfull: the boot sector and the loader must be one sector each")
    # The loader's two numbers (loader.S, offsets 4 and 8): the bytes to copy to 1 MiB, and the
    # RAM the kernel needs (its .bss end, plus 1 MiB for page tables and a program to start).
    loader = loader[:4] + struct.pack("<II", len(kernel), image_end + (1 << 20)) + loader[12:]
    sys_image = loader + kernel
    sys_image += bytes(-len(sys_image) % SECTOR)
    if len(sys_image) > 1143 * SECTOR:          # fatboot loads at most this (below 0x9F000)
        raise RuntimeError(f"uvmfull.sys is {len(sys_image)} bytes: more than fatboot loads")
    (outdir / "uvmfull.sys").write_bytes(sys_image)
    (outdir / "fatboot.bin").write_bytes(boot)
    return [outdir / "uvmfull.sys", outdir / "fatboot.bin"]


# Linux programs for process containers (hv/container): static i386 ELFs built with the
# system's gcc and glibc (gcc-multilib), into ``images/linux/<name>``. No build id, no debug
# info and source paths mapped away, so a rebuild with the same toolchain is byte-identical.
LINUX_DIR = "linux"
LINUX_CC = ["gcc", "-m32", "-static", "-O2", "-g0", "-Wall", "-Werror", "-Wl,--build-id=none",
            f"-ffile-prefix-map={SRC_DIR}=."]


@dataclass(frozen=True)
class LinuxTarget:
    """One static Linux i386 program: its C sources, extra compiler flags, libraries."""

    name: str
    sources: tuple[str, ...]
    flags: tuple[str, ...] = field(default=())
    libs: tuple[str, ...] = field(default=())
    description: str = ""


LINUX_TARGETS: tuple[LinuxTarget, ...] = (
    LinuxTarget("hello", ("linux/hello.c",), libs=("-lm",),
                description="printf formats and floating point"),
    LinuxTarget("args", ("linux/args.c",), description="argv, envp and auxv echo; exits with argc"),
    LinuxTarget("files", ("linux/files.c",), description="files and directories on relative paths"),
    LinuxTarget("errors", ("linux/errors.c",), description="failing calls and their errno"),
    LinuxTarget("memory", ("linux/memory.c",), description="brk, large malloc/free/reuse, mmap"),
    LinuxTarget("io", ("linux/io.c",), description="readv/writev, pipes, dup2, stdin to stdout"),
    LinuxTarget("exitcode", ("linux/exitcode.c",), description="exit codes, abort, kill, SIGSEGV"),
    LinuxTarget("sleep", ("linux/sleep.c",), description="nanosleep and the clocks"),
    LinuxTarget("cpuloop", ("linux/cpuloop.c",), description="CPU-bound loop (benchmarks)"),
    LinuxTarget("syscalls", ("linux/syscalls.c",), flags=("-I", str(GUESTS_DIR / "include")),
                description="system-call loops (benchmarks)"),
    # No C library: the registry's private calls through int $0x80 (guests/include/hvreg.h).
    LinuxTarget("regdemo", ("linux/regdemo.c",),
                flags=("-nostdlib", "-ffreestanding", "-fno-pic", "-no-pie", "-fno-stack-protector",
                       "-I", str(GUESTS_DIR / "include")),
                description="uses the container registry"),
    LinuxTarget("regops", ("linux/regops.c",),
                flags=("-nostdlib", "-ffreestanding", "-fno-pic", "-no-pie", "-fno-stack-protector",
                       "-I", str(GUESTS_DIR / "include")),
                description="registry calls from a script in argv (registry tests)"),
    LinuxTarget("service", ("linux/service.c",), flags=("-I", str(GUESTS_DIR / "include")),
                description="container workload: config, registry, log, listing, CRC-32"),
    LinuxTarget("hog", ("linux/hog.c",), description="a CPU or memory hog (container weak spots)"),
    LinuxTarget("leak", ("linux/leak.c",), flags=("-I", str(GUESTS_DIR / "include")),
                description="leaks data through hv's Global\\ named objects"),
    LinuxTarget("escape", ("linux/escape.c",), description="tries to reach files outside its container"),
    LinuxTarget("fsloop", ("linux/fsloop.c",), description="stat and open+read loops (benchmarks)"),
    LinuxTarget("probe", ("linux/probe.c",), description="isolation checks: files, memory (hv flavors)"),
)


def build_linux_program(target: LinuxTarget, outdir: Path) -> Path:
    """Compile and link one static Linux program into ``outdir/<name>``."""
    outdir.mkdir(parents=True, exist_ok=True)
    out = outdir / target.name
    with tempfile.TemporaryDirectory(prefix=f"linux-{target.name}-") as td:
        built = Path(td) / target.name
        _run(LINUX_CC + list(target.flags) + [str(SRC_DIR / s) for s in target.sources]
             + ["-o", str(built)] + list(target.libs), Path(td))
        out.write_bytes(built.read_bytes())
    out.chmod(0o755)
    return out


def build_linux_programs(outdir: Path) -> list[Path]:
    return [build_linux_program(t, outdir) for t in LINUX_TARGETS]


# Modules with ``build(outdir=None) -> list[Path]`` that build other firmware into their
# own package directories. Optional: they are written elsewhere and may not exist yet.
FIRMWARE_BUILDERS: tuple[str, ...] = (
    "hv.devices.bios_emulated.build",
    "hv.devices.bios_synthetic.build",
)


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")


def _compile(sources: tuple[str, ...], cc: list[str], work: Path) -> list[str]:
    """Each source to ``work/<stem>.o``: .c with ``cc``, anything else with ``as``."""
    objects = []
    for src in sources:
        obj = work / (Path(src).stem + ".o")
        path = SRC_DIR / src
        if path.suffix == ".c":
            _run(cc + ["-c", str(path), "-o", str(obj)], work)
        else:
            _run(AS + ["-o", str(obj), str(path)], work)
        objects.append(str(obj))
    return objects


def build_target(target: Target, outdir: Path) -> Path:
    """Assemble/compile/link one target into ``outdir/<name>.img`` and check it."""
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"guest-{target.name}-") as td:
        work = Path(td)
        objects = _compile(target.sources, KCC if target.c32 else CC, work)
        raw = work / f"{target.name}.bin"
        if target.linker_script:
            link = ["-T", str(SRC_DIR / target.linker_script)]
        else:
            link = ["-Ttext", hex(LOAD_ADDRESS), "-e", "_start", "--oformat", "binary"]
        _run(LD + link + ["-o", str(raw)] + objects, work)
        data = raw.read_bytes()
    if len(data) % SECTOR:
        data += bytes(SECTOR - len(data) % SECTOR)
    if len(data) < SECTOR or data[510:512] != BOOT_SIGNATURE:
        raise RuntimeError(f"{target.name}: sector 0 has no 0x55AA boot signature")
    out = outdir / f"{target.name}.img"
    out.write_bytes(data)
    return out


def build_kernel(target: KernelTarget, outdir: Path) -> list[Path]:
    """Compile/assemble/link one kernel into ``outdir/<name>.elf`` and ``<name>.bin``."""
    outdir.mkdir(parents=True, exist_ok=True)
    elf, flat = outdir / f"{target.name}.elf", outdir / f"{target.name}.bin"
    with tempfile.TemporaryDirectory(prefix=f"kernel-{target.name}-") as td:
        work = Path(td)
        objects = _compile(target.sources, KCC + [f"-D{d}" for d in target.defines], work)
        linked = work / "kernel.elf"
        # -s: no symbol table, so no build paths reach the image.
        _run(LD + ["-s", "-T", str(SRC_DIR / target.linker_script), "-o", str(linked)] + objects, work)
        _run(["objcopy", "-O", "binary", str(linked), str(work / "kernel.bin")], work)
        elf.write_bytes(linked.read_bytes())
        flat.write_bytes((work / "kernel.bin").read_bytes())
    return [elf, flat]


def build_guests(outdir: Path = IMAGES_DIR) -> list[Path]:
    missing = [tool for tool in ("as", "ld", "gcc", "objcopy") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"missing build tools: {', '.join(missing)}")
    return ([build_target(t, Path(outdir)) for t in TARGETS]
            + [p for k in KERNEL_TARGETS for p in build_kernel(k, Path(outdir))]
            + build_full(Path(outdir))
            + build_linux_programs(Path(outdir) / LINUX_DIR))


def build_firmware(outdir: Path | None = None) -> list[Path]:
    """Call each optional firmware builder that exists: ``build()`` puts its output in its
    own package; with ``outdir`` (tests) it gets ``build(outdir)`` instead."""
    built: list[Path] = []
    for modname in FIRMWARE_BUILDERS:
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            # Only "this builder isn't written yet" is tolerated, not a broken import inside it.
            if exc.name and modname.startswith(exc.name):
                continue
            raise
        result = module.build() if outdir is None else module.build(Path(outdir))
        built.extend(Path(p) for p in (result or []))
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hv.guests.build", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="write every image here instead")
    args = parser.parse_args(argv)
    paths = build_guests(args.out or IMAGES_DIR) + build_firmware(args.out)
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
