"""Looking inside a running machine: stop/step/breakpoints (``control``), the GDB remote
protocol (``gdbstub``), the QEMU-style monitor (``monitor``) and snapshots (``snapshot``)."""
