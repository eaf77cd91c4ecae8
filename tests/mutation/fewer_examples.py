"""pytest plugin for mutation runs only: caps every Hypothesis test at ``CAP`` examples.

One failing example kills a mutant, and the example database replays the examples that
killed earlier mutants first; the full counts would make a run of a few thousand mutants
take most of a day. Survivors are listed, so a property test that needed more examples
shows up as a survivor, never as a false kill.
"""
from __future__ import annotations

import hypothesis

CAP = 60
_init = hypothesis.settings.__init__


def _capped(self, parent=None, **kwargs):
    if kwargs.get("max_examples", 0) > CAP:
        kwargs["max_examples"] = CAP
    _init(self, parent, **kwargs)


hypothesis.settings.__init__ = _capped
