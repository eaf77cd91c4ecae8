"""Virtio over MMIO, version 2 (virtio 1.2 §4.2): the transport.

One 0x200-byte window: 32-bit registers below 0x100, the device's config space
from 0x100. The spec requires drivers to use 32-bit accesses on the registers,
so any other size (or an unaligned offset) there reads 0 and writes nothing;
config space takes 1-, 2- and 4-byte accesses.

Status transitions are checked against a table (as Firecracker does). A write
that is not in the table is ignored (the status keeps its value, the reason is
kept in ``last_rejected``), except:
  * 0 always resets the device;
  * FAILED may be set at any time (the driver gave up); the device then stops;
  * after DEVICE_NEEDS_RESET or FAILED only a reset is accepted.
FEATURES_OK is refused (the bit stays clear, which the driver reads back, §3.1.1)
if the driver did not accept VIRTIO_F_VERSION_1, accepted a bit we did not offer,
or the device's ``ack_features`` refuses. Feature and queue registers are only
writable in the phase the spec puts them in; writes outside it are ignored.

When the driver breaks the ring rules the device is put in DEVICE_NEEDS_RESET
(with a configuration-change interrupt once DRIVER_OK was set, §2.1.2) and no
doorbell reaches it again until a reset.

The IRQ line follows (InterruptStatus != 0). The PC's PIC is edge-triggered, so a
new notification while the line is already high drops and raises it again: every
notification is an edge.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

from dataclasses import asdict, fields

from hv.devices import state as st
from hv.devices.base import Device, IrqLine, NullIrq
from hv.memory import GuestMemoryError
from hv.virtio import TRANSPORT_FEATURES, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, \
    VIRTIO_F_VERSION_1, Status
from hv.virtio.queue import VirtioStats, Virtqueue, VirtqueueError

if TYPE_CHECKING:
    from hv.memory import GuestMemory
    from hv.virtio import VirtioDevice

log = logging.getLogger(__name__)

WINDOW = 0x200
MAGIC = 0x74726976          # "virt"
VERSION = 2                 # virtio 1.x register layout (1 = legacy)
VENDOR_ID = 0x00007668      # "hv"; drivers don't interpret it

# Register offsets (§4.2.2).
MagicValue = 0x000
Version = 0x004
DeviceID = 0x008
VendorID = 0x00C
DeviceFeatures = 0x010
DeviceFeaturesSel = 0x014
DriverFeatures = 0x020
DriverFeaturesSel = 0x024
QueueSel = 0x030
QueueNumMax = 0x034
QueueNum = 0x038
QueueReady = 0x044
QueueNotify = 0x050
InterruptStatus = 0x060
InterruptACK = 0x064
StatusReg = 0x070
QueueDescLow = 0x080
QueueDescHigh = 0x084
QueueDriverLow = 0x090
QueueDriverHigh = 0x094
QueueDeviceLow = 0x0A0
QueueDeviceHigh = 0x0A4
SHMSel = 0x0AC
SHMLenLow = 0x0B0
SHMLenHigh = 0x0B4
SHMBaseLow = 0x0B8
SHMBaseHigh = 0x0BC
QueueReset = 0x0C0
ConfigGeneration = 0x0FC
Config = 0x100

# InterruptStatus bits.
VIRTIO_MMIO_INT_VRING = 1    # used buffer notification
VIRTIO_MMIO_INT_CONFIG = 2   # configuration change notification

S = Status
ACK, DRV, FOK, DOK = S.ACKNOWLEDGE, S.DRIVER, S.FEATURES_OK, S.DRIVER_OK
SETUP_PHASE = ACK | DRV | FOK          # queues are configured in this state only
LIVE = ACK | DRV | FOK | DOK


class VirtioMmio(Device):
    """``VirtioMmio(device, mem, irq, base)``: ``device`` a VirtioDevice, ``mem``
    the GuestMemory, ``irq`` an IrqLine (``set_level``), ``base`` the window's
    physical address."""

    def __init__(self, device: "VirtioDevice", mem: "GuestMemory", irq: IrqLine | None = None,
                 base: int = 0xD0000000) -> None:
        self.device = device
        self.mem = mem
        self.irq_line: IrqLine = irq if irq is not None else NullIrq()
        self.irq = getattr(irq, "irq", None)       # the ISA number, as Device.irq means it
        self.base = base
        self.mmio = ((base, WINDOW),)
        self.name = f"virtio-{device.name}"
        self.stats = VirtioStats()
        self.queues = [Virtqueue(mem, device.queue_max, i, self.stats)
                       for i in range(device.num_queues)]
        self.offered = (TRANSPORT_FEATURES | device.features) & ((1 << 64) - 1)
        self.config_generation = 0
        self.last_error: str | None = None         # why the device needs reset
        self.last_rejected: str | None = None      # the last driver write that was ignored
        self.errors: list[str] = []                # every reason, oldest first (bounded)
        device.transport = self
        # Transition table: (status now, status written) -> check that may refuse it.
        self._transitions: dict[tuple[int, int], Callable[[], bool]] = {
            (0, ACK): lambda: True,
            (ACK, ACK | DRV): lambda: True,
            (ACK | DRV, ACK | DRV | FOK): self._features_ok,
            (SETUP_PHASE, LIVE): self._driver_ok,
        }
        self._reads: dict[int, Callable[[], int]] = {
            MagicValue: lambda: MAGIC,
            Version: lambda: VERSION,
            DeviceID: lambda: self.device.device_id,
            VendorID: lambda: VENDOR_ID,
            DeviceFeatures: self._read_device_features,
            DeviceFeaturesSel: lambda: self.device_features_sel,
            DriverFeatures: self._read_driver_features,
            DriverFeaturesSel: lambda: self.driver_features_sel,
            QueueSel: lambda: self.queue_sel,
            QueueNumMax: lambda: self.device.queue_max if self._queue() else 0,
            QueueNum: lambda: q.num if (q := self._queue()) else 0,
            QueueReady: lambda: int(q.ready) if (q := self._queue()) else 0,
            InterruptStatus: lambda: self.interrupt_status,
            StatusReg: lambda: self.status,
            QueueDescLow: lambda: self._qaddr("desc", 0),
            QueueDescHigh: lambda: self._qaddr("desc", 1),
            QueueDriverLow: lambda: self._qaddr("driver", 0),
            QueueDriverHigh: lambda: self._qaddr("driver", 1),
            QueueDeviceLow: lambda: self._qaddr("device", 0),
            QueueDeviceHigh: lambda: self._qaddr("device", 1),
            SHMSel: lambda: self.shm_sel,
            # No shared memory regions: a non-existent region's length/base read all ones (§4.2.2).
            SHMLenLow: lambda: 0xFFFFFFFF,
            SHMLenHigh: lambda: 0xFFFFFFFF,
            SHMBaseLow: lambda: 0xFFFFFFFF,
            SHMBaseHigh: lambda: 0xFFFFFFFF,
            QueueReset: lambda: 0,                 # VIRTIO_F_RING_RESET not offered
            ConfigGeneration: lambda: self.config_generation,
        }
        self._writes: dict[int, Callable[[int], None]] = {
            DeviceFeaturesSel: lambda v: setattr(self, "device_features_sel", v),
            DriverFeatures: self._write_driver_features,
            DriverFeaturesSel: lambda v: setattr(self, "driver_features_sel", v),
            QueueSel: lambda v: setattr(self, "queue_sel", v),
            QueueNum: lambda v: self._queue_setup("num", v),
            QueueReady: self._write_queue_ready,
            QueueNotify: self._write_queue_notify,
            InterruptACK: self._write_interrupt_ack,
            StatusReg: self._write_status,
            QueueDescLow: lambda v: self._queue_addr("desc", 0, v),
            QueueDescHigh: lambda v: self._queue_addr("desc", 1, v),
            QueueDriverLow: lambda v: self._queue_addr("driver", 0, v),
            QueueDriverHigh: lambda v: self._queue_addr("driver", 1, v),
            QueueDeviceLow: lambda v: self._queue_addr("device", 0, v),
            QueueDeviceHigh: lambda v: self._queue_addr("device", 1, v),
            SHMSel: lambda v: setattr(self, "shm_sel", v),
        }
        self._reset_registers()

    # ---- Device interface ----------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if offset >= Config:
            if size not in (1, 2, 4) or offset + size > WINDOW:
                return 0
            try:
                return self.device.config_read(offset - Config, size) & ((1 << (8 * size)) - 1)
            except (VirtqueueError, GuestMemoryError) as e:
                self.fail(f"config read: {e}")
                return 0
        if size != 4 or offset & 3:
            return 0
        handler = self._reads.get(offset)
        return int(handler()) & 0xFFFFFFFF if handler else 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset >= Config:
            if size in (1, 2, 4) and offset + size <= WINDOW:
                with self.guarded():
                    self.device.config_write(offset - Config, size, value & ((1 << (8 * size)) - 1))
            return
        if size != 4 or offset & 3:
            return
        handler = self._writes.get(offset)
        if handler:
            handler(value & 0xFFFFFFFF)

    def reset(self) -> None:
        """Machine reset: same as the driver writing 0 to Status."""
        self._reset_device()

    # ---- snapshots -------------------------------------------------------------------

    def state(self) -> dict:
        """The transport (status, feature words and selectors, queue selector, interrupt
        status, config generation, why the device needs reset, the counters), every queue,
        the IRQ level, and the device: its negotiated features, whether it was activated,
        its config space and what its own ``state()`` returns."""
        device = self.device
        own = getattr(device, "state", None)
        if own is None:
            raise ValueError(f"the {self.name} device cannot be saved yet (no state())")
        return st.versioned(
            status=self.status, interrupt_status=self.interrupt_status,
            device_features_sel=self.device_features_sel,
            driver_features_sel=self.driver_features_sel, driver_features=self._driver_features,
            queue_sel=self.queue_sel, shm_sel=self.shm_sel,
            config_generation=self.config_generation, last_error=self.last_error,
            last_rejected=self.last_rejected, errors=list(self.errors), stats=asdict(self.stats),
            queues=[q.state() for q in self.queues], irq=st.line_level(self.irq_line),
            device={"driver_features": device.driver_features, "activated": bool(device.queues),
                    "config": bytes(device.config), "own": own()})

    def load_state(self, state: dict) -> None:
        """Everything as saved; the device is not activated again (its queues are handed
        back as they were) and gets its own part through ``load_state``."""
        who = self.name
        st.check_version(state, who)
        regs = {n: st.integer(state, n, who, 0, 0xFFFFFFFF)
                for n in ("device_features_sel", "driver_features_sel", "queue_sel", "shm_sel",
                          "config_generation", "interrupt_status")}
        status = st.integer(state, "status", who, 0, 0xFF)
        driver_features = st.integer(state, "driver_features", who)
        if driver_features & ~self.offered:
            raise ValueError(f"{who}: saved features {driver_features:#x} were not offered")
        texts = {n: st.field(state, n, who) for n in ("last_error", "last_rejected")}
        errors = st.field(state, "errors", who)
        if any(t is not None and not isinstance(t, str) for t in texts.values()) or \
                not isinstance(errors, list) or len(errors) > 16 or \
                not all(isinstance(e, str) for e in errors):
            raise ValueError(f"{who}: saved error texts are not text")
        stats = st.field(state, "stats", who)
        names = [f.name for f in fields(self.stats)]
        if not isinstance(stats, dict) or set(stats) != set(names):
            raise ValueError(f"{who}: saved stats are not the transport's counters")
        counters = {n: st.integer(stats, n, who) for n in names}
        queues = st.field(state, "queues", who)
        if not isinstance(queues, list) or len(queues) != len(self.queues) or \
                not all(isinstance(q, dict) for q in queues):
            raise ValueError(f"{who}: saved queues are not this device's {len(self.queues)}")
        dev = st.field(state, "device", who)
        if not isinstance(dev, dict):
            raise ValueError(f"{who}: saved device state is not a record")
        dev_features = st.integer(dev, "driver_features", who)
        activated = st.flag(dev, "activated", who)
        config = st.blob(dev, "config", who, len(self.device.config))
        irq = st.flag(state, "irq", who)
        for q, saved in zip(self.queues, queues):
            q.load_state(saved)
        for name, value in regs.items():
            setattr(self, name, value)
        self.status, self._driver_features = status, driver_features
        self.last_error, self.last_rejected = texts["last_error"], texts["last_rejected"]
        self.errors = list(errors)
        for name, value in counters.items():
            setattr(self.stats, name, value)
        device = self.device
        device.driver_features = dev_features
        device.queues = list(self.queues) if activated else []
        device.config[:] = config
        own = getattr(device, "load_state", None)
        if own is None:
            raise ValueError(f"the {self.name} device cannot be restored (no load_state())")
        own(st.field(dev, "own", who))
        st.restore_level(self.irq_line, irq)

    # ---- device-facing API -------------------------------------------------------

    @property
    def live(self) -> bool:
        """DRIVER_OK and not failed: the device may process queues."""
        return self.status & (DOK | S.DEVICE_NEEDS_RESET | S.FAILED) == DOK

    @property
    def driver_features(self) -> int:
        return self._driver_features

    def signal_used(self, queue: Virtqueue) -> bool:
        """After pushing used entries: interrupt the driver if the queue's
        suppression state (NO_INTERRUPT / used_event) asks for it."""
        try:
            wanted = self.live and queue.needs_notification()
        except (VirtqueueError, GuestMemoryError) as e:
            self.fail(str(e))
            return False
        if wanted:
            self._raise(VIRTIO_MMIO_INT_VRING)
        else:
            self.stats.suppressed += 1
        return wanted

    def config_changed(self, notify: bool = True) -> None:
        """The device changed its config space: bump ConfigGeneration and, once
        the driver is live, send a configuration change notification."""
        self.config_generation = (self.config_generation + 1) & 0xFFFFFFFF
        self.stats.config_changes += 1
        if notify and self.status & DOK:
            self._raise(VIRTIO_MMIO_INT_CONFIG)

    def fail(self, reason: str) -> None:
        """Put the device in DEVICE_NEEDS_RESET: it processes nothing more until
        the driver resets it."""
        self.last_error = reason
        self.errors = (self.errors + [reason])[-16:]
        self.stats.errors += 1
        log.warning("%s: needs reset: %s", self.name, reason)
        if self.status & S.DEVICE_NEEDS_RESET:
            return
        self.status |= S.DEVICE_NEEDS_RESET
        if self.status & DOK:
            self._raise(VIRTIO_MMIO_INT_CONFIG)

    @contextmanager
    def guarded(self) -> Iterator[None]:
        """Run device code on behalf of the guest: a ring violation puts the
        device in NEEDS_RESET instead of escaping into the host."""
        try:
            yield
        except (VirtqueueError, GuestMemoryError) as e:
            self.fail(str(e))

    # ---- registers -------------------------------------------------------------------

    def _reset_registers(self) -> None:
        self.status = 0
        self.interrupt_status = 0
        self.device_features_sel = 0
        self.driver_features_sel = 0
        self._driver_features = 0
        self.queue_sel = 0
        self.shm_sel = 0
        for q in self.queues:
            q.reset()
        self.irq_line.set_level(False)

    def _reset_device(self) -> None:
        self._reset_registers()
        self.device.reset()

    def _queue(self) -> Virtqueue | None:
        return self.queues[self.queue_sel] if self.queue_sel < len(self.queues) else None

    def _qaddr(self, field: str, half: int) -> int:
        q = self._queue()
        return (getattr(q, field) >> (32 * half)) & 0xFFFFFFFF if q else 0

    def _reject(self, why: str) -> None:
        """A driver write the spec does not allow here: ignored, remembered."""
        self.last_rejected = why
        log.info("%s: ignored: %s", self.name, why)

    def _read_device_features(self) -> int:
        sel = self.device_features_sel
        return (self.offered >> (32 * sel)) & 0xFFFFFFFF if sel < 2 else 0

    def _read_driver_features(self) -> int:
        sel = self.driver_features_sel
        return (self._driver_features >> (32 * sel)) & 0xFFFFFFFF if sel < 2 else 0

    def _write_driver_features(self, value: int) -> None:
        if self.status != ACK | DRV:
            return self._reject(f"DriverFeatures written in status {self.status:#x}")
        sel = self.driver_features_sel
        if sel >= 2:
            if value:
                self._reject(f"DriverFeatures word {sel} = {value:#x}: no such features")
            return
        shift = 32 * sel
        self._driver_features = (self._driver_features & ~(0xFFFFFFFF << shift)) | (value << shift)

    def _queue_setup(self, field: str, value: int) -> None:
        q = self._queue()
        if q is None:
            return self._reject(f"queue setup on non-existent queue {self.queue_sel}")
        if self.status != SETUP_PHASE:
            return self._reject(f"queue {q.index} setup in status {self.status:#x}")
        if q.ready:
            return self._reject(f"queue {q.index} setup while QueueReady")
        setattr(q, field, value)

    def _queue_addr(self, field: str, half: int, value: int) -> None:
        q = self._queue()
        if q is None:
            return self._reject(f"queue setup on non-existent queue {self.queue_sel}")
        shift = 32 * half
        self._queue_setup(field, (getattr(q, field) & ~(0xFFFFFFFF << shift)) | (value << shift))

    def _write_queue_ready(self, value: int) -> None:
        q = self._queue()
        if q is None:
            return self._reject(f"QueueReady on non-existent queue {self.queue_sel}")
        if self.status != SETUP_PHASE:
            return self._reject(f"QueueReady written in status {self.status:#x}")
        if not value & 1:
            q.ready = False
            return
        if q.ready:
            return
        try:
            q.validate()
        except VirtqueueError as e:
            return self.fail(e.reason)
        q.event_idx = bool(self._driver_features >> VIRTIO_F_EVENT_IDX & 1)
        q.indirect = bool(self._driver_features >> VIRTIO_F_INDIRECT_DESC & 1)
        q.ready = True

    # The C dispatch records QueueNotify writes and calls doorbell() from the
    # host loop (like KVM's ioeventfd): the guest's write costs no Python.
    doorbell_offset = QueueNotify

    def doorbell(self, queue: int) -> None:
        self._write_queue_notify(queue)

    def _write_queue_notify(self, value: int) -> None:
        if not self.live or value >= len(self.queues) or not self.queues[value].ready:
            self.stats.ignored_doorbells += 1
            return
        self.stats.doorbells += 1
        with self.guarded():
            self.device.notify(value)

    def _write_interrupt_ack(self, value: int) -> None:
        self.interrupt_status &= ~value
        if not self.interrupt_status:
            self.irq_line.set_level(False)

    def _raise(self, bit: int) -> None:
        self.interrupt_status |= bit
        self.stats.interrupts += 1
        if getattr(self.irq_line, "level", False):
            self.irq_line.set_level(False)          # make a fresh edge for the PIC
        self.irq_line.set_level(True)

    # ---- status ----------------------------------------------------------------------

    def _write_status(self, value: int) -> None:
        value &= 0xFF
        if value == 0:
            return self._reset_device()
        new = value & ~S.DEVICE_NEEDS_RESET        # that bit belongs to the device
        if new & S.FAILED:
            self.status |= S.FAILED
            return
        cur = self.status
        if cur & (S.DEVICE_NEEDS_RESET | S.FAILED):
            return self._reject(f"status {value:#x} written to a device that needs reset")
        if new == cur:
            return
        check = self._transitions.get((cur, new))
        if check is None:
            return self._reject(f"status transition {cur:#x} -> {new:#x} not allowed")
        if check():
            self.status = new

    def _features_ok(self) -> bool:
        f = self._driver_features
        if not f >> VIRTIO_F_VERSION_1 & 1:
            self._reject("driver did not accept VIRTIO_F_VERSION_1 (legacy drivers unsupported)")
            return False
        if f & ~self.offered:
            self._reject(f"driver accepted features {f & ~self.offered:#x} that were not offered")
            return False
        self.device.driver_features = f
        if not self.device.ack_features(f):
            self._reject(f"device refused features {f:#x}")
            return False
        return True

    def _driver_ok(self) -> bool:
        self.status = LIVE            # activate() may already signal
        with self.guarded():
            self.device.activate(list(self.queues))
        return not self.status & S.DEVICE_NEEDS_RESET
