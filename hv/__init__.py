"""hv: a toy hypervisor and PC emulator you can read, on the Unicorn CPU engine.

One import namespace: ``hv`` is the machine, ``hv.devices`` the device models,
``hv.guests`` the guest programs and their built images, ``hv.bench`` the benchmarks.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("hv")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0+unknown"
