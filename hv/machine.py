"""A machine: one vCPU, guest memory, two buses, a clock, and the devices its board
(``hv/boards/``: the PC, the microVM) wires to them.

``Machine`` is built from a ``MachineConfig``; ``run()`` boots it (from the reset vector,
or a kernel directly) and returns a ``RunResult`` (exit code and the reason the run ended).
"""
from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from hv import exits
from hv.boards import BOARD_NAMES, board_named
from hv.bus import MmioBus, PortBus
from hv.clock import VIRTUAL_NS_PER_BLOCK, Clock  # noqa: F401 (the rate, documented here)
from hv.devices.balloon_virtio import VirtioBalloon
from hv.devices.base import Device
from hv.devices.console_virtio import VirtioConsole
from hv.devices.disk_store import Disk, DiskStore
from hv.devices.disk_virtio import VirtioBlk
from hv.devices.nic_virtio import VirtioNet
from hv.hypercall import HypercallTable
from hv.memory import ROM_BASE, ROM_END, GuestMemory, MiB
from hv.net import make_network
from hv.virtio.mmio import VirtioMmio

# virtio-mmio slots: 4 KiB windows in the ISA hole below 1 MiB, so real-mode
# guests reach them with a segment (D000:0000); slot -> (base, ISA IRQ).
VIRTIO_BASE = 0xD0000
VIRTIO_SLOTS = {"blk": (0xD0000, 10), "net": (0xD1000, 11), "console": (0xD2000, 5),
                "balloon": (0xD3000, 12), "9p": (0xD4000, 3), "registry": (0xD5000, 7)}
PAGE_SIZE = 4096

HOUSEKEEPING_NS = 10_000_000     # the loop looks at input, --until and timeouts 100x/s
SCREEN_CHECK_NS = 50_000_000
SERIAL_KEEP = 64 * 1024
BDA_KBD_HEAD, BDA_KBD_TAIL = 0x41A, 0x41C
BIOS_STYLES = ("emulated", "synthetic")
DEFAULT_BIOS = "synthetic"
TIMEOUT_EXIT = 124            # as timeout(1)
CLOCKS = ("wall", "virtual")
# Devices a board may leave out: None on a machine whose board has no such slot.
OPTIONAL_DEVICES = ("pic", "lapic", "ioapic", "imcr", "isa", "pit", "uart", "cmos", "kbd",
                    "port92", "vga", "debugcon", "post", "pm", "dma", "fdc", "nic", "ide0",
                    "ide1", "network", "netport", "vnet_network", "vnet_port", "vnet", "vdisk",
                    "vconsole", "balloon")


@dataclass
class DriveSpec:
    path: str
    readonly: bool = False
    snapshot: bool = False


@dataclass
class MachineConfig:
    mem_size: int = 16 * MiB
    bios: str = DEFAULT_BIOS
    fda: DriveSpec | None = None
    fdb: DriveSpec | None = None
    hda: DriveSpec | None = None
    hdb: DriveSpec | None = None
    hdc: DriveSpec | None = None
    hdd: DriveSpec | None = None
    net: str = "none"                  # none | user | switch:NAME
    pcap: str | None = None
    nic_base: int = 0x300
    nic_irq: int = 9
    nic_mac: bytes = bytes.fromhex("525400123456")
    # Synthetic (virtio-mmio) devices, in the slots of VIRTIO_SLOTS.
    vda: DriveSpec | None = None                  # virtio-blk
    virtio_net: str = "none"                      # none | user | switch:NAME
    virtio_console: Callable[[bytes], None] | None = None
    balloon_target: int = 0                       # bytes the host asks the guest to give back
    # More synthetic devices, by VIRTIO_SLOTS name (the 9P and registry channels of a
    # utility VM): name -> virtio device model.
    extra_virtio: dict | None = None
    serial: Callable[[bytes], None] | None = None     # None: output is only captured
    debugcon: Callable[[bytes], None] | None = None
    dispatch: str = "auto"
    clock: str = "wall"                # wall | virtual (time is guest work: runs repeat exactly)
    trace: Callable[[str], None] | None = None
    log: Callable[[str], None] | None = None      # warnings that do not end the run
    input_keys: list[bytes] = field(default_factory=list)   # make/break events, in order
    until: str | None = None
    timeout: float | None = None
    # Direct boot (hv/boot.py): with a kernel, no BIOS runs and ``bios`` is ignored.
    kernel: str | None = None
    kernel_format: str = "auto"            # auto (ELF or bzImage) | elf | flat | bzimage
    initrd: str | None = None              # with a bzImage: the initial RAM disk
    board: str = "pc"                      # pc | microvm (hv/boards/)
    cmdline: str = ""


@dataclass
class RunResult:
    exit_code: int
    reason: str


class Machine:
    def __init__(self, config: MachineConfig | None = None, restore: str | None = None) -> None:
        """``restore``: start from a snapshot file (hv/debug/snapshot.py) instead of power-on;
        its RAM is mapped copy-on-write, and ``config`` must describe the same hardware
        (``snapshot.config_from`` makes one)."""
        self.config = cfg = config or MachineConfig()
        snap = None
        if restore is not None:
            from hv.debug import snapshot
            snap, ram_off = snapshot.read(restore)
            snapshot.check(snap, cfg, restore)
        if cfg.bios not in BIOS_STYLES:
            raise ValueError(f"unknown BIOS style {cfg.bios!r} (emulated or synthetic)")
        self.stats = exits.ExitStats()
        if cfg.clock not in CLOCKS:
            raise ValueError(f"unknown clock {cfg.clock!r} ({' or '.join(CLOCKS)})")
        # The virtual clock reads the vCPU's work count; until the vCPU exists it reads 0,
        # so everything built before the first instruction sees time 0 in every run.
        self._fast_source = None
        self.clock = Clock(source=(lambda: self._fast_source() if self._fast_source else 0)
                           if cfg.clock == "virtual" else time.monotonic_ns)
        self.mem = GuestMemory(cfg.mem_size, backing=(str(restore), ram_off) if snap else None)
        self.ports = PortBus(self.stats)
        self.mmio = MmioBus(self.stats)
        self.hypercalls = HypercallTable()
        self.disks = DiskStore()
        self.stop_requested = False
        self.result: RunResult | None = None
        self.serial_log = bytearray()
        self._serial_dirty = False
        self._until = re.compile(cfg.until) if cfg.until else None
        self.until_matched = False
        self._input: deque[bytes] = deque(cfg.input_keys)
        self._wake = threading.Event()
        self._deadline_wall = None
        self._last_screen_check = 0
        self.devices: list[Device] = []
        self.bios_state: dict[str, object] = {}   # firmware scratch state kept on the host
        self.warnings: list[str] = []

        self.board = board_named(cfg.board)
        for name in OPTIONAL_DEVICES:
            setattr(self, name, None)
        self.virtio: dict[str, VirtioMmio] = {}
        try:
            self._attach_drives()
            self._build_devices()
            self._load_firmware()
            from hv.vcpu import Vcpu
            self.vcpu = Vcpu(self, cfg.dispatch, cfg.trace)
            if cfg.clock == "virtual":
                self._fast_source = self.vcpu.fast.clock_source
        except BaseException:
            self.disks.close()
            for net in (self.network, self.vnet_network):
                if net is not None:
                    net.close()
            raise
        if self.vcpu.fast.kind == "c":
            self._bind_fast_devices()
        # The CPU's interrupt input: the IMCR on a PC (8259 or local APIC), else the APIC.
        self.intr = self.imcr if self.imcr is not None else self.lapic
        self.intr.on_change = self._on_intr
        self.vcpu.on_apic_base = self._on_apic_base
        self.clock.on_origin_change = self._on_clock_origin
        self.debugger = None                       # hv.debug.control.Debugger, when attached
        self.vcpu_thread = None
        self.clock.on_deadline_change = self._on_deadline_change
        self._housekeeping_timer = self.clock.after(HOUSEKEEPING_NS, self._housekeeping)
        if snap is None:
            self.firmware.post_reset(self)
        else:
            from hv.debug import snapshot
            try:
                snapshot.apply(self, snap, ram_copied=False)
            except BaseException:
                self.close()
                raise

    # -- snapshots --------------------------------------------------------------------
    def save(self, path) -> None:
        """Save the whole machine to ``path`` (between slices; see hv/debug/snapshot.py)."""
        from hv.debug import snapshot
        snapshot.save(self, path)

    def restore(self, path) -> None:
        """Load a snapshot of this same machine (its RAM is copied in)."""
        from hv.debug import snapshot
        meta, ram_off = snapshot.read(path)
        snapshot.check(meta, self.config, path)
        import mmap
        with open(path, "rb") as f:
            image = mmap.mmap(f.fileno(), self.mem.span, prot=mmap.PROT_READ, offset=ram_off)
            try:
                self.mem.view[:] = image
            finally:
                image.close()
        if self.vcpu.started:           # (an engine not made yet has translated nothing)
            self.vcpu.uc.ctl_flush_tb()
        try:
            snapshot.apply(self, meta, ram_copied=True)
        except snapshot.SnapshotError as e:
            # Half loaded is no machine at all: the run ends (the file was checked first,
            # so only a damaged device state gets here).
            self.fail(f"loadvm {path}: {e}")
            raise

    def release_engine(self) -> None:
        """Between runs: free the vCPU's engine, keeping its state as data (a stopped clone
        then costs what an idle one does; the next run makes a new engine)."""
        self.vcpu.release_engine()

    def rearm_host_timers(self) -> None:
        """After the clock's timers were cleared (a restore): hv's own periodic work."""
        self._housekeeping_timer = self.clock.after(HOUSEKEEPING_NS, self._housekeeping)

    # -- construction ---------------------------------------------------------------
    def _attach_drives(self) -> None:
        """Open every image. Floppy A and B are BIOS drives 0x00 and 0x01; IDE disks
        (hda, hdb, hdc, hdd) present get 0x80, 0x81... in that order, as a BIOS
        numbers the disks it finds."""
        cfg = self.config
        self.slots: dict[str, Disk | None] = {}
        next_hd = 0x80
        for slot, kind in (("fda", "floppy"), ("fdb", "floppy"), ("hda", "hd"), ("hdb", "hd"),
                           ("hdc", "hd"), ("hdd", "hd")):
            spec = getattr(cfg, slot)
            disk = None
            if spec is not None:
                disk = Disk(spec.path, kind, spec.readonly, spec.snapshot)
                if kind == "floppy":
                    self.disks.attach(0x00 if slot == "fda" else 0x01, disk)
                else:
                    self.disks.attach(next_hd, disk)
                    next_hd += 1
            self.slots[slot] = disk

    def add(self, dev: Device) -> Device:
        for r in dev.ports:
            self.ports.register(r.base, r.length, dev, r.bias)
        for base, length in dev.mmio:
            self.mmio.register(base, length, dev)
        self.devices.append(dev)
        return dev

    def _build_devices(self) -> None:
        """The board's slots, in order: each device may use those before it."""
        for slot in self.board.slots:
            built = slot.build(self)
            setattr(self, slot.name, built)
            if isinstance(built, Device):
                self.add(built)

    def make_network(self, spec: str, pcap: str | None):
        network = make_network(spec, pcap)
        self._watch_pcap(network)
        return network

    def build_virtio(self, line) -> dict[str, VirtioMmio]:
        """The virtio-mmio slots the configuration fills (``line(irq)`` gives the board's
        interrupt wire); the console and the balloon are always there."""
        cfg, mem = self.config, self.mem

        def slot(name: str, device) -> VirtioMmio:
            base, irq = VIRTIO_SLOTS[name]
            self.virtio[name] = self.add(VirtioMmio(device, mem, line(irq), base))
            return self.virtio[name]
        if cfg.vda is not None:
            self.vdisk = Disk(cfg.vda.path, "hd", cfg.vda.readonly, cfg.vda.snapshot)
            if self.board.bios and not cfg.kernel and cfg.bios == "synthetic" \
                    and 0x80 not in self.disks.drives:
                # As SeaBIOS does: with no IDE hard disk the virtio disk is BIOS drive 0x80
                # (INT 13h, INT 19h). One Disk object, so INT 13h and the queue see one store.
                self.disks.attach(0x80, self.vdisk)
            else:
                self.disks.extra.append(self.vdisk)
            slot("blk", VirtioBlk(self.vdisk))
        self.vnet_network = self.make_network(cfg.virtio_net, cfg.pcap if cfg.net == "none"
                                              else None)
        self.vnet_port = self.vnet_network("vnet0")
        if self.vnet_port is not None:
            self.vnet_port.on_frame = self.on_frame
            self.vnet = VirtioNet(self.vnet_port, mac=cfg.nic_mac)
            slot("net", self.vnet)
        self.vconsole = VirtioConsole(sink=cfg.virtio_console)
        slot("console", self.vconsole)
        self.balloon = VirtioBalloon(mem)
        if cfg.balloon_target:
            self.balloon.set_target(cfg.balloon_target // PAGE_SIZE)
        slot("balloon", self.balloon)
        for name, device in (cfg.extra_virtio or {}).items():
            slot(name, device)
        return self.virtio

    def acpi_poweroff(self) -> None:
        self.finish(0, "guest powered off (ACPI S5)")

    def _watch_pcap(self, network) -> None:
        if network.pcap is not None:
            path = network.pcap.path
            network.pcap.on_error = lambda e: self.fail(f"--pcap {path}: {e.strerror or e}")

    def _load_firmware(self) -> None:
        from hv.firmware import firmware_for
        cfg = self.config
        if not cfg.kernel and not self.board.bios:
            raise ValueError(f"the {self.board.name} board has no BIOS: boot a kernel "
                             "directly (--kernel)")
        self.firmware = firmware_for(cfg)
        self.firmware.install(self)

    def _bind_fast_devices(self) -> None:
        """Give devices with a C side (``bind_fast``) their share of the fast path."""
        fast = self.vcpu.fast
        for dev in self.devices:
            bind = getattr(dev, "bind_fast", None)
            if bind is None:
                continue

            def port_of(offset: int, dev=dev) -> int:
                for r in dev.ports:
                    if r.bias <= offset < r.bias + r.length:
                        return r.base + offset - r.bias
                raise ValueError(f"{dev.name} has no port at offset {offset:#x}")
            bind(fast, port_of)

    # -- wiring ---------------------------------------------------------------------
    def _on_intr(self, level: bool) -> None:
        self.vcpu.fast.irq_pending = 1 if level else 0
        if level:
            self._wake.set()

    def _on_apic_base(self, value: int) -> int:
        """A guest wrote IA32_APIC_BASE (the C helper already refused reserved bits)."""
        self.lapic.set_apic_base(value)
        return self.lapic.apic_base()

    def _on_clock_origin(self, origin: int) -> None:
        """The clock paused or jumped: C code that reads the host clock follows."""
        fast = self.vcpu.fast
        if fast.kind == "c":
            fast.ctl.clock_origin_ns = origin
        if self.vcpu.started and self.vcpu.cpu.k is not None:
            self.vcpu.cpu.k.clock_origin_ns = origin

    def attach_debugger(self, start_stopped: bool = False):
        """The machine's Debugger (hv/debug/control.py), created on first use."""
        if self.debugger is None:
            from hv.debug.control import Debugger
            self.debugger = Debugger(self, start_stopped)
        return self.debugger

    def wake_vcpu(self) -> None:
        """Get the vCPU thread's attention: out of the guest at its next block, out of an
        idle wait at once (thread-safe)."""
        self.vcpu.kick()
        self._wake.set()

    def _on_deadline_change(self, deadline: int | None) -> None:
        fast = getattr(getattr(self, "vcpu", None), "fast", None)
        if fast is not None:
            fast.set_deadline(None if deadline is None else self.clock.host_time(deadline))

    def on_frame(self) -> None:
        # A frame is queued for the NIC: may run in another machine's thread.
        vcpu = getattr(self, "vcpu", None)
        if vcpu is not None:
            vcpu.kick()
        self._wake.set()

    def set_a20(self, enabled: bool) -> None:
        # Two gates drive one A20 line (the 8042 output port, port 0x92): the last
        # change wins, as in QEMU, the reference the conformance tests compare with.
        vcpu = getattr(self, "vcpu", None)
        if vcpu is not None:
            vcpu.set_a20(enabled)

    def request_reset(self) -> None:
        self._reset_requested = True
        self.stop_requested = True

    def serial_out(self, data: bytes) -> None:
        if self.config.serial is not None:
            self.config.serial(data)
        self.serial_log += data
        if len(self.serial_log) > 2 * SERIAL_KEEP:
            del self.serial_log[:-SERIAL_KEEP]
        if self._until is not None and b"\n" in data:
            self._serial_dirty = True
            self.vcpu.kick()

    def uart_write(self, text: str) -> None:
        """Firmware output to COM1 through the UART's transmit register."""
        for b in text.encode("latin-1", "replace"):
            self.uart.write(0, 1, b)

    def _housekeeping(self, now: int) -> None:
        self._housekeeping_timer = self.clock.at(now + HOUSEKEEPING_NS, self._housekeeping)

    # -- the run -------------------------------------------------------------------------
    def finish(self, code: int, reason: str) -> None:
        """End the run (the first reason given wins). Safe from hooks, other threads and
        signal handlers: the vCPU leaves the guest at its next block."""
        if self.result is None:
            self.result = RunResult(code, reason)
        self.stop_requested = True
        self._wake.set()
        vcpu = getattr(self, "vcpu", None)
        if vcpu is not None:
            vcpu.kick()

    def fail(self, reason: str) -> None:
        self.finish(1, reason)

    def warn(self, text: str) -> None:
        """Something the user should hear about that does not end the run."""
        self.warnings.append(text)
        if self.config.log is not None:
            self.config.log(text)

    def halt_with_interrupts_disabled(self, where: str) -> None:
        pc = self.vcpu.pc()
        if ROM_BASE <= pc < ROM_END:
            self.finish(1, f"the firmware halted with interrupts disabled at {where}")
        else:
            self.finish(0, f"guest halted with interrupts disabled at {where}")

    def serial_text(self) -> str:
        return self.serial_log.decode("latin-1")

    def screen_text(self) -> str:
        if self.vga is None or self.vga.is_graphics():
            return ""
        return "\n".join(r.rstrip() for r in self.vga.text_rows()).rstrip("\n")

    def _check_until(self, force_screen: bool = False) -> None:
        if self._until is None:
            return
        if self._serial_dirty or force_screen:
            self._serial_dirty = False
            if self._until.search(self.serial_text()):
                self.until_matched = True
                self.finish(0, f"matched --until {self._until.pattern!r} on serial")
                return
        now = self.clock.now()
        if force_screen or now - self._last_screen_check >= SCREEN_CHECK_NS:
            self._last_screen_check = now
            if self._until.search(self.screen_text()):
                self.until_matched = True
                self.finish(0, f"matched --until {self._until.pattern!r} on screen")

    def _feed_input(self) -> None:
        if not self._input or self.kbd is None:
            return
        kbd, mem = self.kbd, self.mem
        # Keys typed before anyone listens are lost on a real PC; wait until the
        # firmware has initialised the PIC and unmasked IRQ 1 with IRQs enabled
        # in the 8042, then pace keys by the guest's reads.
        master = self.pic.master
        if not (master.ready and not master.imr & 0x02 and kbd.command_byte & 0x01):
            return
        if kbd.pending_keys() or not kbd.output_empty():
            return
        if mem.u16(BDA_KBD_HEAD) != mem.u16(BDA_KBD_TAIL):
            return   # the BIOS buffer still holds a key the guest has not read
        kbd.press(self._input.popleft())

    def type_keys(self, events: list[bytes]) -> None:
        """Queue keystrokes (make/break byte strings); thread-safe enough for one producer."""
        self._input.extend(events)
        self._wake.set()

    def service(self) -> None:
        """Everything the host does when it has the CPU back."""
        if self.debugger is not None:
            self.debugger.service()
        self.vcpu.fast.service()
        self.clock.run_due()
        if self.netport is not None and self.netport.pending:
            self.netport.poll(self.nic.receive, ready=self.nic.can_receive)
        if self.vnet_port is not None and self.vnet_port.pending:
            with self.virtio["net"].guarded():
                self.vnet_port.poll(self.vnet.receive, ready=self.vnet.can_receive)
        self._feed_input()
        self._check_until()
        if self._deadline_wall is not None and time.monotonic() >= self._deadline_wall:
            self._check_until(force_screen=True)
            self.finish(TIMEOUT_EXIT, f"timeout after {self.config.timeout:g} s")

    def idle(self) -> None:
        """HLT with interrupts on: sleep until the next deadline or an event. Under the
        virtual clock idle time costs nothing: it jumps to the next deadline."""
        d = self.clock.next_deadline()
        if self.config.clock == "virtual":
            if d is not None and not self.intr.has_interrupt():
                self.vcpu.fast.skip(max(0, d - self.clock.now()))
            self._wake.clear()
            return
        wait = HOUSEKEEPING_NS / 1e9 if d is None else max(0.0, (d - self.clock.now()) / 1e9)
        if wait > 0 and not self.intr.has_interrupt() and not self._frames_waiting():
            self._wake.wait(wait)
        self._wake.clear()

    def _frames_waiting(self) -> bool:
        return any(p is not None and p.pending for p in (self.netport, self.vnet_port))

    def run(self) -> RunResult:
        if self.config.timeout is not None:
            self._deadline_wall = time.monotonic() + self.config.timeout
        self._reset_requested = False
        self.vcpu_thread = threading.current_thread()
        while True:
            self.stop_requested = False
            self.vcpu.run()
            self.vcpu.fast.flush_tx()
            if getattr(self, "_reset_requested", False) and self.result is None:
                self._reset_requested = False
                self.reset()
                continue
            break
        self._check_until(force_screen=True)     # output of the last slice counts too
        result = self.result or RunResult(1, "stopped")
        if self._until is not None and result.exit_code == 0 and not self.until_matched:
            result = self.result = RunResult(1, f"guest halted before --until matched "
                                                f"({result.reason})")
        return result

    def reset(self) -> None:
        for dev in self.devices:
            dev.reset()
        self.vcpu.reset()
        self.firmware.post_reset(self)

    def close(self) -> None:
        self.vcpu.close()
        self.disks.close()
        for network in (self.network, self.vnet_network):
            if network is not None:
                network.close()
