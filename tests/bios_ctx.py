"""Direct calls of synthetic BIOS services: registers by name, flags, no guest code."""
from __future__ import annotations

from hv.hypercall import CF, ZF


class FakeRegs:
    """Registers by name with the x86 aliasing (eax/ax/ah/al ...), for direct calls."""

    _GPR = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp")

    def __init__(self, **values) -> None:
        object.__setattr__(self, "_r", {n: 0 for n in self._GPR + ("cs", "ds", "es", "ss")})
        for k, v in values.items():
            setattr(self, k, v)

    def _split(self, name):
        r = self._r
        if name in r:
            return name, 0, 0xFFFFFFFF
        if len(name) == 2 and name[1] in "hl" and name[0] in "abcd":
            return "e" + name[0] + "x", 8 if name[1] == "h" else 0, 0xFF
        if "e" + name in r:
            return "e" + name, 0, 0xFFFF
        raise AttributeError(name)

    def __getattr__(self, name):
        full, shift, mask = self._split(name)
        return (self._r[full] >> shift) & mask

    def __setattr__(self, name, value):
        full, shift, mask = self._split(name)
        self._r[full] = (self._r[full] & ~(mask << shift)) | ((value & mask) << shift)


class FakeCtx:
    def __init__(self, machine, **regs) -> None:
        self.machine = machine
        self.mem = machine.mem
        self.regs = FakeRegs(**regs)
        self.flags = 0x0202
        self.number = 0

    def set_cf(self, on):
        self.flags = (self.flags | CF) if on else (self.flags & ~CF)

    def set_zf(self, on):
        self.flags = (self.flags | ZF) if on else (self.flags & ~ZF)

    @property
    def cf(self):
        return bool(self.flags & CF)

    @property
    def zf(self):
        return bool(self.flags & ZF)


def call(m, service, **regs) -> FakeCtx:
    ctx = FakeCtx(m, **regs)
    ctx.result = service(ctx)
    return ctx
