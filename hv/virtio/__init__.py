"""virtio 1.x: the device-facing interface of hv's paravirtual devices.

Layering (as rust-vmm / Firecracker):

* ``hv.virtio.mmio.VirtioMmio`` is the transport: the register window the guest
  sees (virtio-mmio version 2). It owns status, feature negotiation, queue
  setup, interrupt status and the IRQ line, and checks every status transition.
* ``hv.virtio.queue.Virtqueue`` is one split virtqueue in guest memory:
  ``pop()`` chains, ``push()`` used entries, notification suppression.
* A device model subclasses ``VirtioDevice`` below and fills in the ops: its
  id, features and config space, ``activate(queues)`` and ``notify(i)``.

A device never touches the registers. Its life:

    transport = VirtioMmio(MyDevice(), mem, irq_line, base)   # sets device.transport
    ...driver negotiates; on DRIVER_OK: device.activate(queues)
    ...doorbell: device.notify(i) -> pop chains, push used, transport.signal_used(q)
    ...host-side event (rx data): ``with self.transport.guarded(): ...`` then signal_used
    ...config changed: transport.config_changed()
    ...driver writes 0 to Status: device.reset()

Any ``VirtqueueError`` (or ``GuestMemoryError``) a device raises inside
``notify``/``activate``/``guarded()`` puts it into DEVICE_NEEDS_RESET; the host
keeps running.
"""
from __future__ import annotations

from enum import IntFlag
from hv.virtio.queue import Chain, VirtioStats, Virtqueue, VirtqueueError

# Device IDs (§5).
VIRTIO_ID_NET = 1
VIRTIO_ID_BLOCK = 2
VIRTIO_ID_CONSOLE = 3
VIRTIO_ID_RNG = 4
VIRTIO_ID_BALLOON = 5

# Reserved (transport/ring) feature bits (§6).
VIRTIO_F_INDIRECT_DESC = 28
VIRTIO_F_EVENT_IDX = 29
VIRTIO_F_VERSION_1 = 32
VIRTIO_F_ACCESS_PLATFORM = 33
VIRTIO_F_RING_PACKED = 34

# What the transport and queues implement; offered on top of a device's own bits.
TRANSPORT_FEATURES = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_EVENT_IDX) | (1 << VIRTIO_F_INDIRECT_DESC)


class Status(IntFlag):
    """Device status field (§2.1)."""

    ACKNOWLEDGE = 1
    DRIVER = 2
    DRIVER_OK = 4
    FEATURES_OK = 8
    DEVICE_NEEDS_RESET = 64
    FAILED = 128


class VirtioDevice:
    """What a device model provides to the transport (the 'ops').

    Class attributes: ``name``, ``device_id``, ``features`` (device-specific
    feature bits; the transport adds VERSION_1, EVENT_IDX and INDIRECT_DESC),
    ``num_queues``, ``queue_max`` (QueueNumMax for every queue).

    The default config space is ``self.config`` (a bytearray, little-endian
    fields as the spec lays them out), read-only to the driver; override
    ``config_read``/``config_write`` for writable fields.
    """

    name = "virtio"
    device_id = 0
    features = 0
    num_queues = 1
    queue_max = 256

    def __init__(self) -> None:
        self.transport: "VirtioMmio | None" = None   # set by the transport
        self.queues: list[Virtqueue] = []
        self.driver_features = 0
        self.config = bytearray()

    # ---- feature negotiation -----------------------------------------------

    def ack_features(self, features: int) -> bool:
        """Called when the driver sets FEATURES_OK with the bits it accepted
        (already a subset of what was offered, VERSION_1 included). Return
        False to refuse a combination (FEATURES_OK then stays clear)."""
        return True

    def has_feature(self, bit: int) -> bool:
        return bool(self.driver_features >> bit & 1)

    # ---- config space --------------------------------------------------------

    def config_read(self, offset: int, size: int) -> int:
        if offset < 0 or offset + size > len(self.config):
            return 0
        return int.from_bytes(self.config[offset:offset + size], "little")

    def config_write(self, offset: int, size: int, value: int) -> None:
        """Read-only config by default: writes are ignored."""

    # ---- lifecycle -------------------------------------------------------------

    def activate(self, queues: list[Virtqueue]) -> None:
        """DRIVER_OK: the queues (all ``num_queues`` of them; check ``.ready``)
        are live. Raise VirtqueueError to refuse (-> DEVICE_NEEDS_RESET)."""
        self.queues = queues

    def notify(self, queue_index: int) -> None:
        """The driver's doorbell for queue ``queue_index`` (always a ready queue).
        Pop chains, push used entries, then ``self.signal_used(queue)``."""
        raise NotImplementedError

    def reset(self) -> None:
        """The driver wrote 0 to Status: forget queues and in-flight work."""
        self.queues = []
        self.driver_features = 0

    # ---- helpers ---------------------------------------------------------------

    def signal_used(self, queue: Virtqueue) -> bool:
        """Interrupt the driver if the queue's suppression rules want it."""
        return self.transport.signal_used(queue) if self.transport else False

    def drain(self, queue: Virtqueue, handle) -> int:
        """The standard doorbell loop: pop every chain, ``handle(chain) -> written
        length`` (None = ``chain.written``), push it, re-enable notifications and
        go round again if chains arrived meanwhile; then signal. Returns chains done."""
        done = 0
        while True:
            queue.disable_notification()
            while (chain := queue.pop()) is not None:
                queue.push(chain, handle(chain))
                done += 1
            if not queue.enable_notification():
                break
        if done:
            self.signal_used(queue)
        return done


from hv.virtio.mmio import VirtioMmio  # noqa: E402  (needs the names above)

__all__ = [
    "Chain", "Status", "VirtioDevice", "VirtioMmio", "VirtioStats", "Virtqueue", "VirtqueueError",
    "TRANSPORT_FEATURES", "VIRTIO_F_EVENT_IDX", "VIRTIO_F_INDIRECT_DESC", "VIRTIO_F_VERSION_1",
    "VIRTIO_F_ACCESS_PLATFORM", "VIRTIO_F_RING_PACKED",
    "VIRTIO_ID_NET", "VIRTIO_ID_BLOCK", "VIRTIO_ID_CONSOLE", "VIRTIO_ID_RNG", "VIRTIO_ID_BALLOON",
]
