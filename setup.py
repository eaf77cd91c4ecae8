"""Builds the optional C fast path; everything else is in pyproject.toml.

The cffi extension is marked optional: without a C compiler the install still
succeeds and hv runs on its pure-Python dispatch (``hv run --stats`` says which).
"""
from setuptools import setup

try:
    from hv.fastpath.build_fastpath import ffibuilder
    ext = ffibuilder.distutils_extension()
    ext.optional = True
    ext_modules = [ext]
except Exception as exc:  # cffi missing in the build environment
    print(f"hv: building without the C fast path ({exc})")
    ext_modules = []

setup(ext_modules=ext_modules)
