"""Builds the optional C fast path; everything else is in pyproject.toml.

The cffi extension is marked optional: without a C compiler the install still
succeeds and hv runs on its pure-Python dispatch (``hv run --stats`` says which).
The build script is loaded by path so the build needs only cffi, not the
package's runtime dependencies.
"""
import importlib.util
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent

try:
    spec = importlib.util.spec_from_file_location(
        "build_fastpath", HERE / "hv" / "fastpath" / "build_fastpath.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ext = module.ffibuilder.distutils_extension()
    ext.optional = True
    ext_modules = [ext]
except Exception as exc:  # cffi missing in the build environment
    print(f"hv: building without the C fast path ({exc})")
    ext_modules = []

setup(ext_modules=ext_modules)
