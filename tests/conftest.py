import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def boot(tmp_path):
    """Boot a boot-sector program (assembly source) and return the finished machine."""
    from hv.machine import DriveSpec, Machine, MachineConfig
    from tests.asm import assemble, write_image
    from tests.guest_run import expect_finished
    machines = []

    def run(source: str, *extra_sectors: bytes, bios: str = "synthetic", timeout: float = 10,
            dispatch: str = "auto", mem: int = 16 << 20, **kw):
        img = write_image(tmp_path / f"boot{len(machines)}.img", assemble(source), *extra_sectors)
        m = Machine(MachineConfig(fda=DriveSpec(str(img)), bios=bios, timeout=timeout,
                                  dispatch=dispatch, mem_size=mem, **kw))
        machines.append(m)
        m.result_ = expect_finished(m, m.run())
        return m
    yield run
    for m in machines:
        m.close()


needs_binutils = pytest.mark.skipif(shutil.which("as") is None,
                                    reason="GNU binutils (as, ld) are needed to assemble test guests")


HD_IMAGE_BYTES = 4 * 1024 * 1024   # as tests/qemu_util.py pads hard disks for QEMU


def disk_copy(src, dst, drive: str):
    """Copy a guest image for a test run; hard disks are padded to 4 MiB, as the QEMU
    runs pad them, so both emulators see the same geometry (8 cylinders x 16 x 63)."""
    data = Path(src).read_bytes()
    if drive.startswith("hd"):
        data = data.ljust(HD_IMAGE_BYTES, b"\0")
    Path(dst).write_bytes(data)
    return Path(dst)


def pytest_report_header(config):
    import hv
    where = Path(hv.__file__).resolve().parent
    inside = ROOT in where.parents or where == ROOT / "hv"
    return f"hv under test: {hv.__version__} at {where}" + (" (the checkout)" if inside else "")


def pytest_sessionstart(session):
    # CI proves the installed package, not the source tree (HV_TEST_INSTALLED=1).
    import os
    import hv
    where = Path(hv.__file__).resolve().parent
    if os.environ.get("HV_TEST_INSTALLED") == "1" and (ROOT in where.parents or where == ROOT / "hv"):
        raise pytest.UsageError(f"HV_TEST_INSTALLED=1 but hv is imported from the checkout ({where})")
