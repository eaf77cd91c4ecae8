/* hvobj.h: hv's named objects, seen from a Linux i386 guest program in a process container.
 *
 * The files and registry keys a container writes go to layers of its own; these objects do not.
 * They live in the host kernel (hv), in one of two namespaces, chosen by the name's prefix:
 *
 *   "Global\name"   one namespace for every container of the hv process: what one container
 *                   creates there, any other can open (Windows' Global\ namespace);
 *   "Local\name"    (or a name without a prefix) the container's own namespace: another
 *                   container using the same name reaches a different object.
 *
 * Two kinds of object:
 *
 *   section  shared memory. hvobj_map_section() maps a view of it into the caller's address
 *            space (read/write, never executable); munmap() removes the view. The section
 *            lives while any view of it is mapped, in any container.
 *   pipe     a byte pipe of 64 KiB. hvobj_open_pipe() gives a file descriptor for its read or
 *            write end; use read(), write() and close() on it. A read waits while the pipe is
 *            empty and a writer is connected (or none has connected yet); it returns 0 (end of
 *            file) once every writer that connected has closed. A write with no reader
 *            connected yet stays in the pipe; after every reader has closed it fails with
 *            EPIPE. The pipe lives while an end is open or it holds unread data.
 *
 * The calls are private system calls: `int $0x80`, EAX = the number, arguments in EBX, ECX, EDX;
 * a result >= 0 is success, a result in -4095..-1 is minus a Linux errno. Under another kernel
 * (qemu-i386, Linux) they answer -ENOSYS. docs/containers.md in the hv repository describes them.
 *
 * Header-only, freestanding (needs only <stdint.h>), for gcc -m32.
 */
#ifndef HVOBJ_H
#define HVOBJ_H

#include <stdint.h>

#if !defined(__i386__)
#error "hvobj.h: the named-object calls are Linux i386 system calls (build with -m32)"
#endif

/* Call numbers (EAX). 0x1102..0x11FF are reserved (-ENOSYS). */
#define HVOBJ_NR_MAP_SECTION 0x1100   /* name, size, flags -> address of the view */
#define HVOBJ_NR_OPEN_PIPE   0x1101   /* name, flags       -> file descriptor */

/* Flags. */
#define HVOBJ_CREATE 0x1   /* create the object when the name is free */
#define HVOBJ_EXCL   0x2   /* with HVOBJ_CREATE: fail with -HVOBJ_EEXIST if it exists */
#define HVOBJ_WRITE  0x4   /* pipes: the write end (without it, the read end) */

/* Limits. */
#define HVOBJ_MAX_NAME          255        /* bytes after the Global\ or Local\ prefix */
#define HVOBJ_MAX_SECTION       (64 << 20) /* bytes of one section */
#define HVOBJ_PIPE_CAPACITY     65536      /* bytes a pipe holds */
#define HVOBJ_MAX_PER_CONTAINER 256        /* objects one container may have created and alive */
#define HVOBJ_MAX_OBJECTS       4096       /* objects alive in one hv process */

/* Failures: the result is minus one of these (Linux errno values). */
#define HVOBJ_ENOENT       2     /* no such object (and no HVOBJ_CREATE) */
#define HVOBJ_EBADF        9
#define HVOBJ_ENOMEM       12    /* no room for the view: the memory limit or the host budget */
#define HVOBJ_EFAULT       14    /* the name pointer is not readable */
#define HVOBJ_EEXIST       17    /* HVOBJ_CREATE|HVOBJ_EXCL and the object exists */
#define HVOBJ_EINVAL       22    /* bad flags, a size of 0 for a new section, a size larger than the
                                    section, a bad name (control characters, '\' after the prefix) */
#define HVOBJ_EMFILE       24    /* no free file descriptor */
#define HVOBJ_ENOSPC       28    /* HVOBJ_MAX_PER_CONTAINER or HVOBJ_MAX_OBJECTS reached */
#define HVOBJ_ENAMETOOLONG 36
#define HVOBJ_ENOSYS       38    /* not in an hv container */
#define HVOBJ_EFBIG        27    /* a section larger than HVOBJ_MAX_SECTION */
#define HVOBJ_EPROTOTYPE   91    /* the name belongs to an object of the other kind */

static inline long hvobj_call3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ __volatile__("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return ret;
}

/* Map a view of section `name`: the first `size` bytes (0: all of an existing section). With
 * HVOBJ_CREATE a missing section is made, `size` bytes of zeros. Returns the view's address, or
 * a negative errno (test with hvobj_failed). */
static inline long hvobj_map_section(const char *name, uint32_t size, uint32_t flags)
{
    return hvobj_call3(HVOBJ_NR_MAP_SECTION, (long)name, (long)size, (long)flags);
}

/* Open an end of pipe `name`: the write end with HVOBJ_WRITE, else the read end. Returns a file
 * descriptor, or a negative errno. */
static inline long hvobj_open_pipe(const char *name, uint32_t flags)
{
    return hvobj_call3(HVOBJ_NR_OPEN_PIPE, (long)name, (long)flags, 0);
}

/* A result is an error when it lies in -4095..-1 (addresses of views are above that). */
static inline int hvobj_failed(long result)
{
    return (unsigned long)result > (unsigned long)-4096L;
}

#endif /* HVOBJ_H */
