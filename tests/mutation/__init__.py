"""Mutation testing of the device models against their unit tests (``python -m tests.mutation``).

Not part of the test suite: a run takes tens of minutes. See ``docs/mutation.md``.
"""
