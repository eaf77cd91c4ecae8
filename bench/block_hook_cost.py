"""What the block hook costs, by guest memory accesses per block.

Runs a loop whose translated block holds N one-byte loads and 20 register adds, on
bare Unicorn with no hooks and with hv's C block hook registered (nothing else), and
prints the extra nanoseconds per block. Run: python -m hv.bench.block_hook_cost
"""
from __future__ import annotations

import time

from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
from unicorn import x86_const as X

from hv.guests.asm import assemble
from hv import fastpath

ITERATIONS = 5_000_000


def kernel(loads: int) -> bytes:
    body = "addb 0x8000(%ebx), %al\n" * loads + "add %eax, %edx\n" * 20
    return assemble(f"""
        mov ${ITERATIONS}, %ecx
        xor %ebx, %ebx
1:      {body}
        inc %bl
        dec %ecx
        jnz 1b
        hlt
""", boot_sector=False)


def run(code: bytes, hook: bool) -> float:
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 1 << 20)
    uc.reg_write(X.UC_X86_REG_CR0, uc.reg_read(X.UC_X86_REG_CR0) & ~1)
    for r in (X.UC_X86_REG_CS, X.UC_X86_REG_DS, X.UC_X86_REG_SS):
        uc.reg_write(r, 0)
    uc.mem_write(0x7C00, code)
    fast = fastpath.load(uc, "c") if hook else None
    t = time.perf_counter()
    uc.emu_start(0x7C00, 1 << 48)
    elapsed = time.perf_counter() - t
    if fast is not None:
        fast.close()
    return elapsed


def main() -> None:
    if not fastpath.c_available():
        raise SystemExit("the C fast path is not built")
    print("loads/block  bare (ms)  hooked (ms)  ns/block  ratio")
    for loads in (0, 1, 4, 8):
        code = kernel(loads)
        bare = min(run(code, False) for _ in range(3))
        hooked = min(run(code, True) for _ in range(3))
        print(f"{loads:>11}  {bare * 1e3:9.1f}  {hooked * 1e3:11.1f}  "
              f"{(hooked - bare) / ITERATIONS * 1e9:8.2f}  {bare / hooked:5.3f}")


if __name__ == "__main__":
    main()
