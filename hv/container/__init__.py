"""Process containers: hv as the shared host kernel of static Linux i386 programs.

Modules:

* ``layers``  -- the layered root a container sees: read-only OCI layers under a writable
  upper layer, with copy-up, whiteouts, opaque directories and volumes, every path confined
  to the container (``openat2(RESOLVE_IN_ROOT)`` semantics);
* ``images``  -- the image store under ``$HV_HOME``: OCI and ``docker save`` import, build
  from a folder, commit of a container's upper layer, ``hv image``.

See ``docs/images.md``.
"""
