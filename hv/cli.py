"""The hv command.

    hv run IMAGE|NAME [options]   boot a disk image or a built-in guest
    hv list                       the built-in guests
    hv build                      rebuild guest images and firmware from source
    hv disk|bench|image|container|flavors|registry   tools that parse their own options (hv CMD --help)
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from hv.devices.disk_store import FLOPPY_MAX, ImageError, check_image, is_writable
from hv import __version__
from hv.machine import BIOS_STYLES, DEFAULT_BIOS, DriveSpec, Machine, MachineConfig
from hv.boards import BOARD_NAMES
from hv.boot import KERNEL_FORMATS
from hv.memory import parse_size
from hv.net import parse_mac

DEFAULT_MAC = bytes.fromhex("525400123456")   # QEMU's default NIC address

QUIT_KEY = b"\x1d"   # Ctrl-] leaves the live display, as in telnet


DRIVE_SLOTS = ("fda", "fdb", "hda", "hdb", "hdc", "hdd")
DISPATCH_CHOICES = ("auto", "c", "python")

# What a built-in guest needs attached when run by name with no other option.
GUEST_DEFAULTS = {
    "disktest": {"scratch_disk": "hda"},
    "disktest-virtio": {"scratch_disk": "vda"},
    "nettest": {"net": "user"},
    "nettest-virtio": {"virtio_net": "user"},
    "balloontest": {"balloon": "8M"},
    "pmtest": {"boot_drive": "hda"},        # IRQ 14 checks need the ATA drive it boots from
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
                     help="synthetic disk (virtio-blk, slot 0 at 0xD0000, IRQ 10; with --bios "
                          "synthetic and no IDE disk, BIOS drive 0x80: it boots)")
    run.add_argument("--virtio-net", metavar="none|user|switch:NAME", default=None,
                     help="synthetic network card (virtio-net, slot 1 at 0xD1000, IRQ 11)")
    run.add_argument("--virtio-console", metavar="stdio|none|FILE", default="stdio",
                     help="where the synthetic console (virtio-console, slot 2) writes (default stdio)")
    run.add_argument("--balloon", metavar="SIZE", default=None,
                     help="memory the host asks back through virtio-balloon (slot 3), e.g. 8M")
    run.add_argument("--kernel", metavar="FILE",
                     help="boot a 32-bit kernel (ELF or flat) directly, with no BIOS (docs/direct-boot.md)")
    run.add_argument("--initrd", metavar="FILE",
                     help="the initial RAM disk for a Linux bzImage given with --kernel")
    run.add_argument("--machine", choices=BOARD_NAMES, default="pc",
                     help="the board: pc (default: legacy devices, BIOS or direct boot) or "
                          "microvm (UART, APICs, virtio slots; direct boot only)")
    run.add_argument("--kernel-format", choices=KERNEL_FORMATS, default="auto",
                     help="how to read --kernel: auto (ELF or bzImage, by their headers), elf, "
                          "bzimage, or flat (raw code loaded and entered at 1 MiB)")
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
                     help="stop after SECONDS, say so, exit 124 (as timeout(1))")
    run.add_argument("--stats", action="store_true", help="print the exit table when the guest stops")
    run.add_argument("--trace", action="store_true",
                     help="print every exit with the guest instruction (to stderr)")
    run.add_argument("--clock", choices=("wall", "virtual"), default="wall",
                     help="wall: guest time follows the host's clock (default); virtual: it "
                          "advances by guest work (10 ns per translated block) and skips idle "
                          "time, so a run repeats exactly (docs/debugging.md)")
    run.add_argument("--dispatch", choices=DISPATCH_CHOICES, default="auto",
                     help="exit fast path: C (built at install) or Python (default auto)")
    run.add_argument("--no-live", action="store_true",
                     help="never take over the terminal, even when stdout is one")
    run.add_argument("--gdb", metavar="tcp::PORT",
                     help="let gdb attach on localhost:PORT (target remote :PORT; docs/debugging.md)")
    run.add_argument("-s", dest="gdb", action="store_const", const="tcp::1234",
                     help="shorthand for --gdb tcp::1234")
    run.add_argument("-S", dest="start_stopped", action="store_true",
                     help="start stopped at the reset vector; gdb's continue or the monitor's cont "
                          "starts the CPU")
    run.add_argument("--restore", metavar="FILE",
                     help="start from a machine snapshot (the monitor's savevm), on the "
                          "hardware it was taken on (docs/snapshots.md)")
    run.add_argument("--monitor", metavar="stdio|unix:PATH",
                     help="the monitor (QEMU-style commands: info registers, x, stop, cont...) "
                          "on the terminal or on a unix socket")

    for name, (_, _, text) in OWN_PARSERS.items():      # listed here, parsed by themselves
        own = sub.add_parser(name, help=text, add_help=False)
        own.add_argument("rest", nargs=argparse.REMAINDER)
    sub.add_parser("list", help="list the built-in guests and kernels")
    build = sub.add_parser("build", help="rebuild guest images, kernels and firmware ROMs from source",
                           description="Rebuild every guest image, kernel and both BIOS ROMs from "
                                       "their sources with GNU binutils and gcc.")
    build.add_argument("--out", metavar="DIR",
                       help="write everything into DIR (default: the package's own folders)")
    return ap


class HostSink:
    """Guest output on the host: stdout or a file. A write that fails mid-run (a full
    disk, EFBIG, EIO, a reader that closed the pipe) ends the run with one line through
    ``on_error`` (the machine's ``fail``, set once it exists); later output is dropped.
    Whatever was written before the failure stays written (each write is flushed)."""

    def __init__(self, spec: str, what: str) -> None:
        self.spec, self.what = spec, what
        self.on_error = None
        self.failed: str | None = None
        self.last_byte = b"\n"
        if spec == "stdio":
            self.stream, self.file = sys.stdout.buffer, None
        else:
            try:
                self.file = self.stream = open(spec, "ab")
            except OSError as e:
                raise UsageError(f"--{what} {spec}: {e.strerror}") from None

    def __call__(self, data: bytes) -> None:
        if self.failed is not None or not data:
            return
        try:
            self.stream.write(data)
            self.stream.flush()
            self.last_byte = data[-1:]
        except BrokenPipeError:
            self.failed = f"--{self.what}: the reader closed the pipe"
            _silence_stdout()
        except OSError as e:
            self.failed = f"--{self.what} {self.spec}: {e.strerror or e}"
        if self.failed is not None and self.on_error is not None:
            self.on_error(self.failed)

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass


def _open_sink(spec: str, what: str) -> HostSink | None:
    return None if spec == "none" else HostSink(spec, what)


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush
    does not fail again with a traceback-like message."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:
        pass


def _input_events(args) -> list[bytes]:
    from hv.devices.keymap import parse_input
    text = ""
    if args.input_file:
        try:
            text += Path(args.input_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--input-file {args.input_file}: {getattr(e, 'strerror', e)}") from None
    if args.input:
        # Escapes such as \r are decoded; any other character passes through as typed.
        text += (args.input.encode("latin-1", "backslashreplace").decode("unicode_escape")
                 if "\\" in args.input else args.input)
    try:
        keys = parse_input(text)
    except ValueError as e:
        raise UsageError(f"--input: {e}") from None
    return [ev for k in keys for ev in k.events]


def cmd_run(args) -> int:
    if args.restore:
        from hv.debug.snapshot import restore_args
        try:
            restore_args(args)            # the snapshot's hardware, as the options that make it
        except ValueError as e:
            raise UsageError(str(e)) from None
    drives = {k: getattr(args, k) for k in DRIVE_SLOTS}
    specs = {k: _drive(v) for k, v in drives.items() if v}
    defaults = GUEST_DEFAULTS.get(args.image, {}) if args.image and not Path(args.image).exists() else {}
    if args.image:
        path = _resolve_image(args.image)
        builtin = not Path(args.image).exists()
        writable = is_writable(path) and not builtin
        size = check_image(path, writable=writable)
        slot = defaults.get("boot_drive") or ("fda" if size <= FLOPPY_MAX else "hda")
        if slot in specs:
            raise UsageError(f"{args.image}: --{slot} is already given")
        # A built-in guest's image belongs to the package: its writes go to a throw-away
        # overlay (and many runs can share the image).
        specs[slot] = DriveSpec(str(path), readonly=not writable and not builtin,
                                snapshot=builtin)
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
    elif args.append or args.initrd:
        raise UsageError("--append and --initrd need --kernel")
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
    env_dispatch = os.environ.get("HV_DISPATCH")
    if env_dispatch is not None and env_dispatch not in DISPATCH_CHOICES:
        raise UsageError(f"HV_DISPATCH={env_dispatch!r}: expected one of {', '.join(DISPATCH_CHOICES)}")
    dispatch = args.dispatch
    if args.trace:
        if dispatch == "c" or (dispatch == "auto" and env_dispatch == "c"):
            print("hv: --trace uses the Python dispatcher: every exit passes through Python "
                  "to be traced", file=sys.stderr)
        dispatch = "python"
    _check_debug_options(args)
    live = (sys.stdout.isatty() and sys.stdin.isatty() and not args.until and not args.no_live
            and not args.trace and args.monitor != "stdio")
    if live:
        from hv.console import terminal_size, too_small
        why = too_small(*terminal_size(sys.stdout.fileno()))
        if why:
            print(f"hv: {why}", file=sys.stderr)
            live = False
    if args.start_stopped and not (args.gdb or args.monitor or live):
        raise UsageError("-S: nothing could start the CPU; add -s, --gdb tcp::PORT or --monitor")
    serial_spec = args.serial
    if live and serial_spec == "stdio":
        serial_spec = "none"   # the live screen owns the terminal; serial is shown afterwards
    serial = _open_sink(serial_spec, "serial")
    debugcon = _open_sink(args.debugcon, "debugcon")
    vcons = _open_sink(args.virtio_console, "virtio-console")
    sinks = [x for x in (serial, debugcon, vcons) if x is not None]
    trace = (lambda line: print(line, file=sys.stderr)) if args.trace else None
    config = MachineConfig(mem_size=mem, bios=args.bios, serial=serial, debugcon=debugcon,
                           dispatch=dispatch, clock=args.clock, trace=trace, input_keys=events,
                           until=args.until, timeout=args.timeout, net=net, pcap=args.pcap,
                           virtio_net=virtio_net, virtio_console=vcons,
                           balloon_target=balloon_bytes, kernel=args.kernel,
                           kernel_format=args.kernel_format, cmdline=args.append,
                           initrd=args.initrd, board=args.machine,
                           nic_base=nic["iobase"], nic_irq=nic["irq"], nic_mac=nic["mac"],
                           **specs)
    try:
        machine = Machine(config, restore=args.restore)
    except (RuntimeError, ValueError) as e:
        _close_all(sinks, scratch)
        raise UsageError(str(e)) from None
    except OSError as e:
        _close_all(sinks, scratch)
        raise UsageError(f"{e.filename or ''}: {e.strerror}") from None
    for sink in sinks:
        sink.on_error = machine.fail
    code = 1
    try:
        debug_servers = _start_debugging(machine, args)
    except UsageError:
        machine.close()
        _close_all(sinks, scratch)
        raise
    try:
        if live:
            from hv.console import LiveConsole
            result = LiveConsole(machine, QUIT_KEY).run()
            # The alternate screen is gone: leave the final screen and serial output behind.
            if not args.screen:
                _write_stdout(machine.screen_text().rstrip("\n") + "\n")
            if args.serial == "stdio" and machine.serial_log:
                _write_stdout(machine.serial_text())
        else:
            result = machine.run()
        for server in debug_servers:        # gdb hears how the run ended (W packet)
            server.close(result)
        debug_servers = []
        if args.screen:
            _write_stdout(machine.screen_text().rstrip("\n") + "\n")
        if args.screenshot:
            try:
                machine.vga.screenshot_png(args.screenshot)
            except OSError as e:
                result = type(result)(1, f"--screenshot {args.screenshot}: {e.strerror}")
        _end_line(serial if args.serial == "stdio" else None)
        print(f"hv: {result.reason}", file=sys.stderr)
        if args.stats:
            firmware = "direct" if args.kernel else args.bios
            print(f"dispatch: {machine.vcpu.fast.kind}   firmware: {firmware}", file=sys.stderr)
            print(machine.stats.table(), file=sys.stderr)
        code = result.exit_code
    finally:
        for server in debug_servers:
            server.close()
        try:
            machine.close()
        except Exception as e:          # a back end failing to close: say so, fail the run
            print("hv: error while closing the machine: " + "".join(
                traceback.format_exception_only(type(e), e)).strip(), file=sys.stderr)
            code = code or 1
        _close_all(sinks, scratch)
    return code


def _check_debug_options(args) -> None:
    from hv.debug import gdbstub, monitor
    try:
        if args.gdb:
            gdbstub.parse_spec(args.gdb)
        if args.monitor:
            monitor.parse_spec(args.monitor)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _start_debugging(machine, args) -> list:
    """The gdb stub and the monitor asked for (-s/--gdb, --monitor, -S)."""
    from hv.debug import gdbstub, monitor
    servers = []
    if args.start_stopped or args.gdb or args.monitor:
        machine.attach_debugger(args.start_stopped)
    try:
        if args.gdb:
            server = gdbstub.attach(machine, args.gdb, args.start_stopped)
            servers.append(server)
            print(f"hv: {server.describe()}", file=sys.stderr, flush=True)
        if args.monitor:
            server = monitor.attach(machine, args.monitor, args.start_stopped)
            if server is not None:
                servers.append(server)
    except (ValueError, OSError) as e:
        for server in servers:
            server.close()
        what = f"--gdb {args.gdb}" if not servers and args.gdb else f"--monitor {args.monitor}"
        raise UsageError(str(e) if isinstance(e, ValueError) else f"{what}: {e.strerror}") from None
    return servers


def _close_all(sinks, scratch: str | None) -> None:
    for sink in sinks:
        sink.close()
    if scratch:
        os.unlink(scratch)


def _write_stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()


def _end_line(stdout_sink) -> None:
    """Guest output that stopped mid-line and hv's closing message must not share a
    line when both reach the same terminal."""
    if (stdout_sink is not None and stdout_sink.last_byte not in (b"\n", b"") and
            stdout_sink.failed is None and sys.stdout.isatty() and sys.stderr.isatty()):
        _write_stdout("\n")


def cmd_list(args) -> int:
    from hv.guests import descriptions
    rows = descriptions()
    width = max(len(n) for n in rows)
    print(f"{'NAME':<{width}}  {'KIND':<6}  DESCRIPTION")
    for name, (kind, text) in rows.items():
        print(f"{name:<{width}}  {kind:<6}  {text}")
    print("\nhv run NAME boots a disk guest; hv run --kernel NAME boots a kernel.")
    return 0


def cmd_build(args) -> int:
    from hv.guests import build
    try:
        return build.main(["--out", args.out] if args.out else [])
    except RuntimeError as e:       # a missing toolchain or a failed step: its first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else "the build failed"
        print(f"hv: build failed: {first}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"hv: build failed: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return 1


def _main_registry(argv: list[str]) -> int:
    """``hv registry``, with ``--image NAME`` served from the image store: the image's
    registry layers merged, read-only."""
    from hv.cliargs import UsageError
    from hv.container.images import ImageError, ImageStore
    from hv.container.registry import LayeredRegistry, main_registry

    def open_image(name: str) -> LayeredRegistry:
        try:
            image = ImageStore().get(name)
        except ImageError as e:
            raise UsageError(str(e)) from None
        return LayeredRegistry([db for _, db in image.layers if db is not None], None)
    return main_registry(argv, open_image=open_image)


# Commands that parse their own options (argparse's REMAINDER would refuse an option in
# first place): name -> (module, function(argv) -> exit status, help).
OWN_PARSERS = {
    "disk": ("hv.disk_tool", "main_disk", "disk image tools: create a blank disk or an overlay, "
                                          "commit, info"),
    "bench": ("hv.bench.report", "main", "run the benchmark matrix; write bench-report.md, PNG "
                                         "plots and JSON (hv bench --quick, --json FILE, --out DIR)"),
    "image": ("hv.container.images", "main_image", "container images: import an OCI or docker-save "
                                                   "archive, build from a folder, to-disk, ls, rm"),
    "container": ("hv.container.container", "main_container", "containers (process, utility VM, "
                                                             "enlightened or full VM): run, ls, diff, "
                                                             "commit, logs, rm"),
    "flavors": ("hv.bench.flavors", "main", "run one workload as a process container, utility VM, "
                                           "enlightened VM and full VM; report costs and isolation"),
    "registry": ("hv.cli", "_main_registry", "export or import container registry keys as .reg "
                                             "files"),
}


def _run_own_parser(name: str, argv: list[str]) -> int:
    import importlib
    module, function, _ = OWN_PARSERS[name]
    try:
        return getattr(importlib.import_module(module), function)(argv)
    except (UsageError, ImageError) as e:
        print(f"hv: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hv: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in OWN_PARSERS:
        return _run_own_parser(argv[0], argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:   # report it with the subcommand's usage, not the top-level one
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command in OWN_PARSERS:             # e.g. `hv --x disk ...`: not reached normally
            return _run_own_parser(args.command, args.rest)
        return {"run": cmd_run, "list": cmd_list, "build": cmd_build}[args.command](args)
    except (UsageError, ImageError) as e:
        print(f"hv: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
