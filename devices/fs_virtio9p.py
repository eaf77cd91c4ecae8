"""virtio-9p (virtio 1.2 §5.11, device ID 9): a container's root served as 9P2000.L.

The transport QEMU's ``-virtfs`` and Linux's ``9pnet_virtio`` use: one request queue; each
chain is one T-message in its device-readable buffers followed by the room for the R-message
in its device-writable buffers. One doorbell serves every chain the driver made available
(``VirtioDevice.drain``), and the batch completes with one used-buffer notification.

Config space (§5.11.4): ``le16 tag_len; u8 tag[tag_len]`` -- the mount tag
(``mount -t 9p -o trans=virtio TAG /mnt``), offered with VIRTIO_9P_MOUNT_TAG.

What the guest controls is hostile. Per chain:

* fewer than 7 readable bytes (no header) or fewer than 7 writable bytes (no room for any
  answer) is a ring that breaks the transport's rules: DEVICE_NEEDS_RESET with the reason, as
  QEMU's ``virtio_error``;
* the message is the readable bytes up to its size field; at most msize bytes are ever read
  (a larger size field is answered Rlerror(EMSGSIZE) from the header alone, a shorter chain
  Rlerror(EPROTO));
* Rread and Rreaddir are cut to the writable room; any other reply that does not fit
  (a buffer smaller than Rgetattr's 160 bytes, say) is NEEDS_RESET, as QEMU's "reply needs N
  bytes, buffer has M".

The 9P server (``hv.container.p9.P9Server``) is the connection: a driver reset clunks every
fid and forgets the negotiated msize.
"""
from __future__ import annotations

import fcntl
import os
import stat
import struct
from collections import Counter
from typing import TYPE_CHECKING

from hv.container.p9 import HEADER, MAX_MSIZE, MIN_MSIZE, NAMES, RLERROR, P9Server, _Fid
from hv.devices import state as st
from hv.virtio import VirtioDevice, VirtqueueError

if TYPE_CHECKING:
    from hv.container.layers import LayeredRoot
    from hv.virtio.queue import Chain

VIRTIO_ID_9P = 9
VIRTIO_9P_MOUNT_TAG = 0              # feature bit: the config space holds a mount tag
QUEUE_SIZE = 128                     # as QEMU (MAX_REQ) and Linux (VIRTQUEUE_NUM)
MAX_TAG_LEN = 255                    # hv's bound; the tag is host configuration


class Virtio9p(VirtioDevice):
    """``Virtio9p(root, tag="hvroot", max_msize=MAX_MSIZE)``: ``root`` a LayeredRoot.

    ``server`` is the P9Server (its ``counts`` are the 9P messages by name). Counters here:
    ``requests``, ``bytes_in`` (T-message bytes), ``bytes_out`` (R-message bytes);
    doorbells and interrupts are in the transport's ``VirtioStats``."""

    name = "9p"
    device_id = VIRTIO_ID_9P
    features = 1 << VIRTIO_9P_MOUNT_TAG
    num_queues = 1
    queue_max = QUEUE_SIZE

    def __init__(self, root: "LayeredRoot", tag: str | bytes = "hvroot", *,
                 max_msize: int = MAX_MSIZE, **limits) -> None:
        super().__init__()
        raw = tag.encode("utf-8") if isinstance(tag, str) else bytes(tag)
        if not 0 < len(raw) <= MAX_TAG_LEN or b"\0" in raw:
            raise ValueError(f"mount tag must be 1..{MAX_TAG_LEN} bytes without NUL")
        self.tag = raw
        self.config = bytearray(struct.pack("<H", len(raw)) + raw)
        self.server = P9Server(root, max_msize=max_msize, **limits)
        self.requests = 0
        self.bytes_in = 0
        self.bytes_out = 0

    # ---- virtio ops ------------------------------------------------------------------------------

    def notify(self, queue_index: int) -> None:
        if queue_index == 0 and self.queues:
            self.drain(self.queues[0], self._request)

    def reset(self) -> None:
        super().reset()
        self.server.reset()              # a new driver is a new 9P connection

    def counters(self) -> dict[str, int]:
        """For ``--stats``: 9P messages by name, then the transport-level totals."""
        out = self.server.counters()
        out["9p requests"] = self.requests
        return out

    # ---- snapshots ---------------------------------------------------------------------------------

    # What an open fid's host descriptor remembers of how it was opened (F_GETFL), and what
    # a reopen may ask for again: access mode and the status flags that change I/O.
    _REOPEN_FLAGS = os.O_ACCMODE | os.O_APPEND | os.O_NONBLOCK | os.O_DSYNC | os.O_SYNC

    def state(self) -> dict:
        """The 9P session: negotiated msize, and every fid as the canonical guest path it
        names (with how it was opened, and a directory's listing in progress). Host
        descriptors cannot be saved: a restored session reopens each open fid by its path
        with the same access mode and status flags. A fid whose file is gone by then (or
        cannot be opened again) stays, unopened: reads and writes on it answer EBADF, and
        clunk frees it. The files are the container root's (the host's), not saved."""
        server = self.server
        fids = []
        for number, f in sorted(server.fids.items()):
            opened = None
            if f.fd is not None:
                opened = {"flags": fcntl.fcntl(f.fd, fcntl.F_GETFL) & self._REOPEN_FLAGS,
                          "writable": f.writable, "is_dir": f.is_dir}
            entries = None if f.entries is None else [list(e) for e in f.entries]
            fids.append({"fid": number, "path": list(f.path), "uname": f.uname,
                         "open": opened, "entries": entries})
        return st.versioned(
            msize=server.msize, versioned=server.versioned, fids=fids,
            counts=dict(server.counts), lerrors=sorted(server.lerrors.items()),
            internal_errors=server.internal_errors, requests=self.requests,
            bytes_in=self.bytes_in, bytes_out=self.bytes_out)

    def load_state(self, state: dict) -> None:
        who = "virtio-9p"
        st.check_version(state, who)
        server = self.server
        msize = st.integer(state, "msize", who, MIN_MSIZE, server.max_msize)
        versioned = st.flag(state, "versioned", who)
        saved = st.field(state, "fids", who)
        if not isinstance(saved, list) or len(saved) > server.max_fids or \
                not all(isinstance(f, dict) for f in saved):
            raise ValueError(f"{who}: saved fids are not a fid table")
        fids, listed = [], 0
        for f in saved:
            number = st.integer(f, "fid", who, 0, 0xFFFFFFFE)
            path = st.field(f, "path", who)
            if not isinstance(path, list) or any(
                    not isinstance(n, str) or n in ("", ".", "..") or "/" in n or "\0" in n
                    for n in path):
                raise ValueError(f"{who}: saved fid {number} does not name a canonical path")
            uname = st.integer(f, "uname", who, 0, 0xFFFFFFFF)
            opened = st.field(f, "open", who)
            if opened is not None:
                if not isinstance(opened, dict):
                    raise ValueError(f"{who}: saved fid {number}'s open state is not a record")
                opened = (st.integer(opened, "flags", who) & self._REOPEN_FLAGS,
                          st.flag(opened, "writable", who), st.flag(opened, "is_dir", who))
            entries = st.field(f, "entries", who)
            if entries is not None:
                if not isinstance(entries, list) or any(
                        not isinstance(e, list) or len(e) != 4 or not isinstance(e[0], bytes)
                        or any(type(v) is not int for v in e[1:]) for e in entries):
                    raise ValueError(f"{who}: saved fid {number}'s listing is not entries")
                entries = [(bytes(e[0]), e[1], e[2], e[3]) for e in entries]
                listed += len(entries)
            fids.append((number, tuple(path), uname, opened, entries))
        if len({f[0] for f in fids}) != len(fids) or listed > server.snapshot_budget or \
                sum(1 for f in fids if f[3] is not None) > server.max_open:
            raise ValueError(f"{who}: saved fid table breaks the connection's limits")
        counts = st.field(state, "counts", who)
        lerrors = st.field(state, "lerrors", who)
        if not isinstance(counts, dict) or any(type(v) is not int for v in counts.values()) or \
                not isinstance(lerrors, list) or any(
                    not isinstance(e, list) or len(e) != 2 or any(type(v) is not int for v in e)
                    for e in lerrors):
            raise ValueError(f"{who}: saved message counters are damaged")
        numbers = {n: st.integer(state, n, who)
                   for n in ("internal_errors", "requests", "bytes_in", "bytes_out")}
        server.reset()                      # closes whatever this connection had open
        server.msize, server.versioned = msize, versioned
        for number, path, uname, opened, entries in fids:
            f = server.fids[number] = _Fid(path, uname)
            f.entries = entries
            if opened is not None:
                self._reopen(f, *opened)
        server._snapshot_entries = listed
        server.counts, server.lerrors = Counter(counts), Counter({e: n for e, n in lerrors})
        server.internal_errors = numbers["internal_errors"]
        self.requests, self.bytes_in, self.bytes_out = (
            numbers["requests"], numbers["bytes_in"], numbers["bytes_out"])

    def _reopen(self, f: "_Fid", flags: int, writable: bool, is_dir: bool) -> None:
        """Open a restored fid's file again by its path (never through a symlink)."""
        guest = "/" + "/".join(f.path)
        flags |= os.O_NOFOLLOW | (os.O_DIRECTORY if is_dir else 0)
        try:
            fd = self.server.root.open(guest, flags)
        except (OSError, ValueError):
            return                          # gone or changed: the fid stays, unopened
        f.fd, f.writable, f.is_dir = fd, writable, stat.S_ISDIR(os.fstat(fd).st_mode)
        self.server._open += 1

    # ---- one request -------------------------------------------------------------------------------

    def _request(self, chain: "Chain") -> int:
        rlen, wlen = chain.readable_len, chain.writable_len
        if rlen < HEADER.size:
            raise VirtqueueError(f"virtio-9p: chain {chain.head} has {rlen} readable bytes, "
                                 f"a 9P header needs {HEADER.size}")
        if wlen < HEADER.size:
            raise VirtqueueError(f"virtio-9p: chain {chain.head} has {wlen} writable bytes, "
                                 f"no room for a reply")
        # Never more than msize bytes: a size field past it is answered from the header alone.
        message = chain.read(0, min(rlen, self.server.msize))
        (size,) = struct.unpack_from("<I", message)
        if size <= len(message):
            message = message[:size]
        elif size > self.server.msize:
            message = message[:HEADER.size]
        self.requests += 1
        self.bytes_in += len(message)
        reply = self.server.handle(message, max_response=wlen)
        if len(reply) > wlen:
            raise VirtqueueError(
                f"virtio-9p: chain {chain.head}: {_reply_name(reply[4])} needs "
                f"{len(reply)} bytes, the buffer has {wlen}")
        chain.write(reply)
        self.bytes_out += len(reply)
        return len(reply)


def _reply_name(rtype: int) -> str:
    if rtype == RLERROR:
        return "Rlerror"
    name = NAMES.get(rtype - 1)
    return "R" + name[1:] if name else f"reply type {rtype}"


__all__ = ["Virtio9p", "VIRTIO_ID_9P", "VIRTIO_9P_MOUNT_TAG", "QUEUE_SIZE", "MAX_TAG_LEN"]
