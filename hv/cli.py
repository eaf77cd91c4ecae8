"""The hv command.

    hv run IMAGE|NAME [options]   boot a disk image or a built-in guest
    hv list                       the built-in guests
    hv build                      rebuild guest images and firmware from source
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hv.devices.disk_store import FLOPPY_MAX, ImageError, check_image, is_writable
from hv import __version__
from hv.machine import BIOS_STYLES, DEFAULT_BIOS, DriveSpec, Machine, MachineConfig
from hv.memory import parse_size
from hv.net import parse_mac

DEFAULT_MAC = bytes.fromhex("525400123456")   # QEMU's default NIC address

QUIT_KEY = b"\x1d"   # Ctrl-] leaves the live display, as in telnet


DRIVE_SLOTS = ("fda", "fdb", "hda", "hdb", "hdc", "hdd")

# What a built-in guest needs attached when run by name with no other option.
GUEST_DEFAULTS = {
    "disktest": {"scratch_disk": "hda"},
    "disktest-virtio": {"scratch_disk": "vda"},
    "nettest": {"net": "user"},
    "nettest-virtio": {"virtio_net": "user"},
    "balloontest": {"balloon": "8M"},
}


class UsageError(Exception):
    """Bad user input: reported on one line, exit status 2."""


def _scratch_disk() -> str:
    """A fresh 4 MiB scratch disk with the documented pattern (guests.scratch_disk)."""
    import tempfile
    from hv import guests
    fd, path = tempfile.mkstemp(prefix="hv-scratch-", suffix=".img")
    os.close(fd)
    guests.scratch_disk(path)
    return path


def mem_size_guess(args) -> int:
    try:
        return parse_size(args.mem)
    except ValueError as e:
        raise UsageError(f"--mem: {e}") from None


def _nic(text: str) -> dict:
    model, *opts = text.split(",")
    if model != "ne2000":
        raise UsageError(f"--nic: unknown model {model!r} (ne2000)")
    out = {"iobase": 0x300, "irq": 9, "mac": DEFAULT_MAC}
    for opt in opts:
        key, _, value = opt.partition("=")
        if key not in out:
            raise UsageError(f"--nic: unknown setting {key!r} (iobase, irq, mac)")
        if key == "mac":
            try:
                out["mac"] = parse_mac(value)
            except ValueError:
                raise UsageError(f"--nic: mac={value!r} is not a MAC address") from None
            continue
        try:
            out[key] = int(value, 0)
        except ValueError:
            raise UsageError(f"--nic: {key}={value!r} is not a number") from None
    if not 0 < out["iobase"] <= 0xFFE0 or out["irq"] not in (3, 4, 5, 7, 9, 10, 11, 12, 15):
        raise UsageError("--nic: iobase must be an I/O port and irq one of 3 4 5 7 9 10 11 12 15")
    return out


def _drive(text: str) -> DriveSpec:
    path, *flags = text.split(",")
    spec = DriveSpec(path)
    for f in flags:
        if f == "ro":
            spec.readonly = True
        elif f == "snapshot":
            spec.snapshot = True
        else:
            raise UsageError(f"unknown drive flag {f!r} in {text!r} (ro, snapshot)")
    return spec


def _resolve_image(name: str) -> Path:
    p = Path(name)
    if p.exists():
        return p
    from hv.guests import image_path, names
    if name in names():
        return image_path(name)
    raise UsageError(f"{name}: no such image file or built-in guest (see 'hv list')")


def _resolve_kernel(name: str) -> Path:
    """A kernel file, or the name of a built-in kernel (``hv list``)."""
    p = Path(name)
    if p.exists() or os.sep in name:
        return p
    from hv.guests import kernel_names, kernel_path
    if name in kernel_names():
        return kernel_path(name)
    return p          # opening it reports the missing file


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hv", description="A toy hypervisor and PC emulator you can read.")
    ap.add_argument("--version", action="version", version=f"hv {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="boot a disk image or a built-in guest",
                         description="Boot IMAGE (a file; floppy-sized images boot as floppy A, "
                                     "larger ones as the first hard disk) or a built-in guest NAME.")
    run.add_argument("image", nargs="?", metavar="IMAGE|NAME")
    run.add_argument("--fda", metavar="FILE[,ro][,snapshot]", help="floppy drive A")
    run.add_argument("--fdb", metavar="FILE[,ro][,snapshot]", help="floppy drive B")
    run.add_argument("--hda", metavar="FILE[,ro][,snapshot]", help="IDE primary master (BIOS 0x80)")
    run.add_argument("--hdb", metavar="FILE[,ro][,snapshot]", help="IDE primary slave")
    run.add_argument("--hdc", metavar="FILE[,ro][,snapshot]", help="IDE secondary master")
    run.add_argument("--hdd", metavar="FILE[,ro][,snapshot]", help="IDE secondary slave")
    run.add_argument("--snapshot", action="store_true",
                     help="discard every disk write when the guest stops (as QEMU's -snapshot)")
    run.add_argument("--net", default=None, metavar="none|user|switch:NAME",
                     help="the NE2000's network: none, the built-in host stack (user: "
                          "gateway 10.0.2.2), or a switch shared by machines in this process")
    run.add_argument("--nic", default="ne2000", metavar="ne2000[,iobase=ADDR][,irq=N][,mac=M]",
                     help="network card settings (default ne2000,iobase=0x300,irq=9,"
                          "mac=52:54:00:12:34:56)")
    run.add_argument("--pcap", metavar="FILE", help="write every frame the NIC sends or receives")
    run.add_argument("--vda", metavar="FILE[,ro][,snapshot]",
                     help="synthetic disk (virtio-blk, slot 0 at 0xD0000, IRQ 10)")
    run.add_argument("--virtio-net", metavar="none|user|switch:NAME", default=None,
                     help="synthetic network card (virtio-net, slot 1 at 0xD1000, IRQ 11)")
    run.add_argument("--virtio-console", metavar="stdio|none|FILE", default="stdio",
                     help="where the synthetic console (virtio-console, slot 2) writes (default stdio)")
    run.add_argument("--balloon", metavar="SIZE", default=None,
                     help="memory the host asks back through virtio-balloon (slot 3), e.g. 8M")
    run.add_argument("--kernel", metavar="FILE",
                     help="boot a 32-bit kernel (ELF or flat) directly, with no BIOS (docs/direct-boot.md)")
    run.add_argument("--append", metavar="CMDLINE", default="",
                     help="the kernel command line (with --kernel)")
    run.add_argument("--mem", default="16M", help="guest RAM: 640K, 16M, 256M, 1G (default 16M)")
    run.add_argument("--bios", choices=BIOS_STYLES, default=DEFAULT_BIOS,
                     help=f"firmware style (default {DEFAULT_BIOS}: fastest boot, fewest exits)")
    run.add_argument("--serial", default="stdio", metavar="stdio|none|FILE",
                     help="where COM1 output goes (default stdio)")
    run.add_argument("--debugcon", default="none", metavar="stdio|none|FILE",
                     help="where port 0xE9 output goes (default none)")
    run.add_argument("--screen", action="store_true",
                     help="print the final text screen (CP437 as UTF-8) when the guest stops")
    run.add_argument("--screenshot", metavar="FILE.png", help="save the final display as PNG")
    run.add_argument("--input", metavar="TEXT",
                     help=r"type TEXT on the keyboard (\r Enter, {esc}, {up}, {f1}, {ctrl-c}...)")
    run.add_argument("--input-file", metavar="FILE", help="type the contents of FILE")
    run.add_argument("--until", metavar="REGEX",
                     help="stop with exit 0 when serial output or screen text matches")
    run.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="stop after SECONDS, say so, exit 2")
    run.add_argument("--stats", action="store_true", help="print the exit table when the guest stops")
    run.add_argument("--trace", action="store_true",
                     help="print every exit with the guest instruction (to stderr)")
    run.add_argument("--dispatch", choices=("auto", "c", "python"), default="auto",
                     help="exit fast path: C (built at install) or Python (default auto)")
    run.add_argument("--no-live", action="store_true",
                     help="never take over the terminal, even when stdout is one")

    disk = sub.add_parser("disk", help="disk image tools: create an overlay, commit, info",
                          add_help=False)
    disk.add_argument("disk_args", nargs=argparse.REMAINDER)
    bench = sub.add_parser("bench", help="run the benchmark matrix; write bench-report.md, "
                           "PNG plots and JSON (hv bench --quick, --json FILE, --out DIR)",
                           add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    sub.add_parser("list", help="list the built-in guests and kernels")
    build = sub.add_parser("build", help="rebuild guest images, kernels and firmware ROMs from source",
                           description="Rebuild every guest image, kernel and both BIOS ROMs from "
                                       "their sources with GNU binutils and gcc.")
    build.add_argument("--out", metavar="DIR",
                       help="write everything into DIR (default: the package's own folders)")
    return ap


def _open_sink(spec: str, what: str):
    if spec == "none":
        return None, None
    if spec == "stdio":
        out = sys.stdout.buffer

        def sink(data: bytes) -> None:
            out.write(data)
            out.flush()
        return sink, None
    try:
        f = open(spec, "ab")
    except OSError as e:
        raise UsageError(f"--{what} {spec}: {e.strerror}") from None

    def fsink(data: bytes) -> None:
        f.write(data)
        f.flush()
    return fsink, f


def _input_events(args) -> list[bytes]:
    from hv.devices.keymap import parse_input
    text = ""
    if args.input_file:
        try:
            text += Path(args.input_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--input-file {args.input_file}: {getattr(e, 'strerror', e)}") from None
    if args.input:
        text += args.input.encode().decode("unicode_escape") if "\\" in args.input else args.input
    try:
        keys = parse_input(text)
    except ValueError as e:
        raise UsageError(f"--input: {e}") from None
    return [ev for k in keys for ev in k.events]


def cmd_run(args) -> int:
    drives = {k: getattr(args, k) for k in DRIVE_SLOTS}
    specs = {k: _drive(v) for k, v in drives.items() if v}
    defaults = GUEST_DEFAULTS.get(args.image, {}) if args.image and not Path(args.image).exists() else {}
    if args.image:
        path = _resolve_image(args.image)
        writable = is_writable(path)
        size = check_image(path, writable=writable)
        slot = "fda" if size <= FLOPPY_MAX else "hda"
        if slot in specs:
            raise UsageError(f"{args.image}: --{slot} is already given")
        specs[slot] = DriveSpec(str(path), readonly=not writable)
    if args.vda:
        specs["vda"] = _drive(args.vda)
    if not specs and not args.kernel:
        raise UsageError("nothing to boot: give IMAGE|NAME, --fda/--hda or --kernel")
    if args.kernel:
        args.kernel = str(_resolve_kernel(args.kernel))
        try:
            with open(args.kernel, "rb"):
                pass
        except OSError as e:
            raise UsageError(f"--kernel {args.kernel}: {e.strerror}") from None
    elif args.append:
        raise UsageError("--append needs --kernel")
    if args.snapshot:
        for spec in specs.values():
            spec.snapshot = True
    for spec in specs.values():
        check_image(spec.path, writable=not (spec.readonly or spec.snapshot))
    scratch = None
    scratch_slot = defaults.get("scratch_disk")
    if scratch_slot and scratch_slot not in specs:
        scratch = _scratch_disk()
        specs[scratch_slot] = DriveSpec(scratch)
    net = args.net or defaults.get("net", "none")
    virtio_net = args.virtio_net or defaults.get("virtio_net", "none")
    balloon = args.balloon or defaults.get("balloon")
    try:
        balloon_bytes = parse_size(balloon) if balloon else 0
    except ValueError as e:
        raise UsageError(f"--balloon: {e}") from None
    if balloon_bytes >= mem_size_guess(args):
        raise UsageError("--balloon must be smaller than --mem")
    nic = _nic(args.nic)
    try:
        mem = parse_size(args.mem)
    except ValueError as e:
        raise UsageError(f"--mem: {e}") from None
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.until:
        import re
        try:
            re.compile(args.until)
        except re.error as e:
            raise UsageError(f"--until: bad regular expression: {e}") from None
    if args.screenshot and not args.screenshot.lower().endswith(".png"):
        raise UsageError("--screenshot: the file name must end in .png")
    events = _input_events(args)
    live = (sys.stdout.isatty() and sys.stdin.isatty() and not args.until and not args.no_live
            and not args.trace)
    serial_spec = args.serial
    if live and serial_spec == "stdio":
        serial_spec = "none"   # the live screen owns the terminal; serial is shown afterwards
    serial, serial_file = _open_sink(serial_spec, "serial")
    debugcon, debug_file = _open_sink(args.debugcon, "debugcon")
    vcons, vcons_file = _open_sink(args.virtio_console, "virtio-console")
    trace = (lambda line: print(line, file=sys.stderr)) if args.trace else None
    config = MachineConfig(mem_size=mem, bios=args.bios, serial=serial, debugcon=debugcon,
                           dispatch=args.dispatch, trace=trace, input_keys=events,
                           until=args.until, timeout=args.timeout, net=net, pcap=args.pcap,
                           virtio_net=virtio_net, virtio_console=vcons,
                           balloon_target=balloon_bytes, kernel=args.kernel, cmdline=args.append,
                           nic_base=nic["iobase"], nic_irq=nic["irq"], nic_mac=nic["mac"],
                           **specs)
    try:
        machine = Machine(config)
    except (RuntimeError, ValueError) as e:
        if scratch:
            os.unlink(scratch)
        raise UsageError(str(e)) from None
    except OSError as e:
        if scratch:
            os.unlink(scratch)
        raise UsageError(f"{e.filename or ''}: {e.strerror}") from None
    try:
        if live:
            from hv.console import LiveConsole
            result = LiveConsole(machine, QUIT_KEY).run()
            # The alternate screen is gone: leave the final screen and serial output behind.
            if not args.screen:
                sys.stdout.write(machine.screen_text().rstrip("\n") + "\n")
            if args.serial == "stdio" and machine.serial_log:
                sys.stdout.write(machine.serial_text())
        else:
            result = machine.run()
        if args.screen:
            sys.stdout.write(machine.screen_text().rstrip("\n") + "\n")
            sys.stdout.flush()
        if args.screenshot:
            machine.vga.screenshot_png(args.screenshot)
        print(f"hv: {result.reason}", file=sys.stderr)
        if args.stats:
            firmware = "direct" if args.kernel else args.bios
            print(f"dispatch: {machine.vcpu.fast.kind}   firmware: {firmware}", file=sys.stderr)
            print(machine.stats.table(), file=sys.stderr)
        return result.exit_code
    finally:
        machine.close()
        for f in (serial_file, debug_file, vcons_file):
            if f:
                f.close()
        if scratch:
            os.unlink(scratch)


def cmd_list(args) -> int:
    from hv.guests import descriptions
    rows = descriptions()
    width = max(len(n) for n in rows)
    print(f"{'NAME':<{width}}  {'KIND':<6}  DESCRIPTION")
    for name, (kind, text) in rows.items():
        print(f"{name:<{width}}  {kind:<6}  {text}")
    print("\nhv run NAME boots a disk guest; hv run --kernel NAME boots a kernel.")
    return 0


def cmd_bench(args) -> int:
    from hv.bench.report import main as bench_main
    return bench_main(args.bench_args)


def cmd_disk(args) -> int:
    from hv.disk_tool import main_disk
    return main_disk(args.disk_args)


def cmd_build(args) -> int:
    from hv.guests import build
    return build.main(["--out", args.out] if args.out else [])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `hv bench` and `hv disk` parse their own options (argparse's REMAINDER
    # would refuse an option in first place).
    if argv[:1] == ["bench"]:
        return cmd_bench(argparse.Namespace(bench_args=argv[1:]))
    if argv[:1] == ["disk"]:
        try:
            return cmd_disk(argparse.Namespace(disk_args=argv[1:]))
        except (UsageError, ImageError) as e:
            print(f"hv: error: {e}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    try:
        return {"run": cmd_run, "list": cmd_list, "build": cmd_build,
                "disk": cmd_disk, "bench": cmd_bench}[args.command](args)
    except (UsageError, ImageError) as e:
        print(f"hv: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
