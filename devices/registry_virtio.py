"""hv's registry device: a container's registry reached from a utility VM over virtio.

Not a device of the virtio specification, which assigns IDs one by one and keeps no range
for vendors. hv uses device ID 0xB0 (176): far above the IDs the specification has assigned,
and the ID that virtio-pci's rule (PCI device ID = 0x1040 + virtio ID) maps to 1af4:10f0, the
first of the IDs QEMU's ``docs/specs/pci-ids`` leaves "for experimental usage without
registration". Should hv ever ship it on PCI, it needs an assigned ID.

Feature bits: VIRTIO_REGISTRY_F_MESSAGES_V1 (bit 0) -- requests and responses are the
messages of ``docs/registry.md`` ("The message format"), version 1. It is the only format,
so a driver that does not accept it is refused (FEATURES_OK stays clear).

One request queue. A chain is one request message in its device-readable buffers, then room
for the response in its device-writable buffers; one doorbell serves every available chain
and the batch completes with one used-buffer notification. The used length is the response's.

Config space (read-only):

    le32 max_request     the longest request taken (registry_calls.MAX_REQUEST)
    le32 min_response    the smallest writable part a chain may have (16 bytes)

Hostile chains:

* fewer than ``min_response`` writable bytes is a ring that breaks the device's rules:
  DEVICE_NEEDS_RESET with the reason. Every response that changes state (a new handle: 12 or
  16 bytes) therefore always fits;
* a request longer than ``max_request`` is not read: its response is -E2BIG (op and tag
  echoed from its first 8 bytes);
* a response longer than the writable part (only QUERY_VALUE, ENUM_KEY and ENUM_VALUE, which
  change nothing) is replaced by its 12-byte header with result -EMSGSIZE.

Handles belong to the connection: the device owns its ``RegistryCalls``, and a driver reset
starts a fresh one (every handle the old driver held is closed).
"""
from __future__ import annotations

import errno
import struct
from collections import Counter
from typing import TYPE_CHECKING

from hv.container.registry_calls import (MAX_HANDLES, MAX_REQUEST, ROOT_HANDLES, Op,
                                        RegistryCalls, _fold_path, _Handle)
from hv.devices import state as st
from hv.virtio import VirtioDevice, VirtqueueError

if TYPE_CHECKING:
    from hv.container.registry import LayeredRegistry
    from hv.virtio.queue import Chain

VIRTIO_ID_HV_REGISTRY = 0xB0
VIRTIO_REGISTRY_F_MESSAGES_V1 = 0
QUEUE_SIZE = 64
MIN_RESPONSE = 16                   # u32 op, u32 tag, i32 result, u32 disposition
CONFIG = struct.Struct("<II")       # max_request, min_response
_REQUEST_HEADER = struct.Struct("<II")
_RESPONSE_HEADER = struct.Struct("<IIi")


class VirtioRegistry(VirtioDevice):
    """``VirtioRegistry(registry, max_handles=1024)``: ``registry`` a LayeredRegistry.

    Counters: ``calls`` (a Counter by operation name, "invalid" for what is not one),
    ``errors`` (responses with a negative result), ``bytes_in``, ``bytes_out``."""

    name = "registry"
    device_id = VIRTIO_ID_HV_REGISTRY
    features = 1 << VIRTIO_REGISTRY_F_MESSAGES_V1
    num_queues = 1
    queue_max = QUEUE_SIZE

    def __init__(self, registry: "LayeredRegistry", *, max_handles: int = MAX_HANDLES) -> None:
        super().__init__()
        self.registry = registry
        self.max_handles = max_handles
        self.config = bytearray(CONFIG.pack(MAX_REQUEST, MIN_RESPONSE))
        self.session = RegistryCalls(registry, max_handles=max_handles)
        self.calls: Counter[str] = Counter()
        self.errors = 0
        self.bytes_in = 0
        self.bytes_out = 0

    # ---- virtio ops --------------------------------------------------------------------------------

    def ack_features(self, features: int) -> bool:
        return bool(features >> VIRTIO_REGISTRY_F_MESSAGES_V1 & 1)

    def notify(self, queue_index: int) -> None:
        if queue_index == 0 and self.queues:
            self.drain(self.queues[0], self._request)

    def reset(self) -> None:
        super().reset()
        self.session = RegistryCalls(self.registry, max_handles=self.max_handles)

    def counters(self) -> dict[str, int]:
        """For ``--stats``: registry calls by operation, and the failed ones."""
        out = {f"registry {name}": n for name, n in sorted(self.calls.items())}
        out["registry errors"] = self.errors
        return out

    # ---- snapshots ---------------------------------------------------------------------------------

    def state(self) -> dict:
        """The session's handles, each as the key path it was opened on (and whether the key
        was deleted through it), and the counters. Enumeration cursors are a cache and are
        not kept. The registry's contents are the container's (the host's), not saved."""
        handles = [[number, list(h.parts), h.stale]
                   for number, h in sorted(self.session._handles.items())]
        return st.versioned(handles=handles, calls=dict(self.calls), errors=self.errors,
                            bytes_in=self.bytes_in, bytes_out=self.bytes_out)

    def load_state(self, state: dict) -> None:
        """A fresh session with the saved handles reopened on their key paths. A handle
        whose key no longer exists answers as a deleted key's (ESTALE) when used."""
        who = "virtio-registry"
        st.check_version(state, who)
        saved = st.field(state, "handles", who)
        if not isinstance(saved, list) or len(saved) > self.max_handles:
            raise ValueError(f"{who}: saved handles are not a handle table")
        handles = {}
        for entry in saved:
            if not isinstance(entry, list) or len(entry) != 3 or type(entry[0]) is not int \
                    or not 1 <= entry[0] <= self.max_handles + 1 or entry[0] in handles \
                    or not isinstance(entry[1], list) or not entry[1] \
                    or entry[1][0] not in ROOT_HANDLES.values() \
                    or not all(isinstance(p, str) and p for p in entry[1]) \
                    or type(entry[2]) is not bool:
                raise ValueError(f"{who}: saved handle {entry!r} is not (number, key path, stale)")
            parts = tuple(entry[1])
            handles[entry[0]] = _Handle(parts, _fold_path(parts), stale=entry[2])
        calls = st.field(state, "calls", who)
        if not isinstance(calls, dict) or any(type(v) is not int for v in calls.values()):
            raise ValueError(f"{who}: saved calls are not counters")
        numbers = {n: st.integer(state, n, who) for n in ("errors", "bytes_in", "bytes_out")}
        self.session = RegistryCalls(self.registry, max_handles=self.max_handles)
        self.session._handles.update(handles)
        self.calls = Counter(calls)
        self.errors, self.bytes_in, self.bytes_out = (
            numbers["errors"], numbers["bytes_in"], numbers["bytes_out"])

    # ---- one request ----------------------------------------------------------------------------------

    def _request(self, chain: "Chain") -> int:
        rlen, wlen = chain.readable_len, chain.writable_len
        if wlen < MIN_RESPONSE:
            raise VirtqueueError(f"virtio-registry: chain {chain.head} has {wlen} writable bytes, "
                                 f"responses need {MIN_RESPONSE}")
        if rlen > MAX_REQUEST:
            head = chain.read(0, _REQUEST_HEADER.size)
            op, tag = _REQUEST_HEADER.unpack(head)
            response = _RESPONSE_HEADER.pack(op, tag, -errno.E2BIG)
        else:
            request = chain.read(0, rlen)
            self.bytes_in += rlen
            op = _REQUEST_HEADER.unpack_from(request)[0] if rlen >= 4 else None
            response = self.session.handle_request(request)
        self.calls[Op(op).name if op in Op._value2member_map_ else "invalid"] += 1
        if len(response) > wlen:
            op, tag, _ = _RESPONSE_HEADER.unpack_from(response)
            response = _RESPONSE_HEADER.pack(op, tag, -errno.EMSGSIZE)
        if _RESPONSE_HEADER.unpack_from(response)[2] < 0:
            self.errors += 1
        chain.write(response)
        self.bytes_out += len(response)
        return len(response)


__all__ = ["VirtioRegistry", "VIRTIO_ID_HV_REGISTRY", "VIRTIO_REGISTRY_F_MESSAGES_V1",
           "QUEUE_SIZE", "MIN_RESPONSE", "CONFIG"]
