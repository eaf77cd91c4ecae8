"""The benchmarks run against the installed hv (as the tests do): the checkout's folder is
not put on sys.path, where its ``hv/`` would shadow the installed package. Only the
checkout's ``tests`` package is made importable, by path, for the fixtures the Linux boot
benchmark shares with the tests (``tests/linux_fixture.py``)."""
import importlib.util
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent / "tests"
if "tests" not in sys.modules and (_TESTS / "__init__.py").is_file():
    _spec = importlib.util.spec_from_file_location("tests", _TESTS / "__init__.py",
                                                   submodule_search_locations=[str(_TESTS)])
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["tests"] = _module
    _spec.loader.exec_module(_module)
