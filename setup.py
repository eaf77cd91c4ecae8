"""Packaging that pyproject.toml cannot say: the package map and the optional C fast path.

One import namespace, ``hv``. The repository keeps its top-level folders, mapped:

    hv/       -> hv            devices/ -> hv.devices
    guests/   -> hv.guests     bench/   -> hv.bench

Packages are discovered under each folder (any directory, so data-only folders such as
``guests/images`` are packages too and carry their files), so a new subpackage can never
be left out of the wheel.

The cffi extension is marked optional: without a C compiler the install still succeeds
and hv runs on its pure-Python dispatch (``hv run --stats`` says which). The build script
is loaded by path so the build needs only cffi, not the package's runtime dependencies.
"""
import importlib.util
from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).resolve().parent

PACKAGE_DIRS = {"hv": "hv", "hv.devices": "devices", "hv.guests": "guests", "hv.bench": "bench"}
NOT_PACKAGES = ["__pycache__", "*.__pycache__", "*.egg-info", "build", "build.*"]

# Everything a guest build, a run or the docs' examples read, wherever it sits.
DATA = ["*.img", "*.elf", "*.bin", "*.S", "*.s", "*.c", "*.h", "*.cdef", "*.inc", "*.ld", "*.json",
        "*.md", "*.reg", "*.txt", "*.conf", "*.tar", "Makefile"]


def packages() -> list[str]:
    found = []
    for name, folder in PACKAGE_DIRS.items():
        found.append(name)
        found += [f"{name}.{p}" for p in find_namespace_packages(str(HERE / folder),
                                                                  exclude=NOT_PACKAGES)]
    return sorted(found)


def fastpath_extension() -> list:
    try:
        spec = importlib.util.spec_from_file_location(
            "build_fastpath", HERE / "hv" / "fastpath" / "build_fastpath.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        ext = module.ffibuilder.distutils_extension()
        ext.optional = True
        return [ext]
    except Exception as exc:  # cffi missing in the build environment
        print(f"hv: building without the C fast path ({exc})")
        return []


setup(
    package_dir=PACKAGE_DIRS,
    packages=packages(),
    # Linux programs for process containers are static ELF files without an extension.
    package_data={"": DATA, "hv.guests.images.linux": ["*"]},
    ext_modules=fastpath_extension(),
)
