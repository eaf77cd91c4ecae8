"""Process containers: hv as the shared host kernel of static Linux i386 programs.

Modules, from the program up:

* ``loader``, ``guest_memory`` -- a static i386 ELF, its initial stack and its address space;
* ``linux_abi``, ``fdtable`` -- the Linux system calls the program makes, and its files;
* ``process``, ``engine`` -- one program on a vCPU (a Unicorn engine) at ring 3;
* ``kernel`` -- one shared kernel: a scheduler of many processes over a pool of engines,
  CPU quotas and memory limits;
* ``objects`` -- named shared-memory sections and pipes (``Global\\`` and ``Local\\``),
  the namespace that is *not* layered;
* ``layers`` -- the layered root a container sees: read-only OCI layers under a writable
  upper layer, with copy-up, whiteouts, opaque directories and volumes, every path confined
  to the container (``openat2(RESOLVE_IN_ROOT)`` semantics);
* ``registry``, ``registry_calls`` -- the layered registry (SQLite layers) and its calls;
* ``images`` -- the image store under ``$HV_HOME``: OCI and ``docker save`` import, build
  from a folder, commit, ``hv image``;
* ``container`` -- containers under ``$HV_HOME`` and ``hv container``;
* ``p9`` -- a 9P2000.L server of a layered root, for the utility VM.

See ``docs/containers.md``, ``docs/linux-abi.md``, ``docs/images.md``, ``docs/registry.md``.
"""
