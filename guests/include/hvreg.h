/* hvreg.h: the hv container registry, seen from a Linux i386 guest program.
 *
 * A process container's program reaches its registry with private system calls: `int $0x80`,
 * EAX = a number from HVREG_NR_OPEN_KEY up, arguments in EBX, ECX, EDX, ESI, EDI, EBP, the result
 * in EAX. The calls follow the Windows registry API (RegOpenKeyEx, RegCreateKeyEx, RegCloseKey,
 * RegSetValueEx, RegQueryValueEx, RegDeleteValue, RegDeleteKey/RegDeleteTree, RegEnumKeyEx,
 * RegEnumValue) with UTF-8 strings, as its ANSI ("A") functions do under the UTF-8 code page.
 *
 * A result >= 0 is success (0, or a key handle); a result < 0 is minus a Linux errno, listed
 * below with the Windows status each one stands for. Strings are NUL-terminated UTF-8, at most
 * 65536 bytes with the NUL; a NULL name or path is "" (the default value; the key itself).
 * The full description is docs/registry.md in the hv repository.
 *
 * Header-only, freestanding (needs only <stdint.h>), for gcc -m32.
 */
#ifndef HVREG_H
#define HVREG_H

#include <stdint.h>

#if !defined(__i386__)
#error "hvreg.h: the registry calls are Linux i386 system calls (build with -m32)"
#endif

/* Call numbers (EAX). 0x1009..0x10FF are reserved. */
#define HVREG_NR_OPEN_KEY     0x1000   /* parent, path                         -> handle */
#define HVREG_NR_CREATE_KEY   0x1001   /* parent, path, &disposition or NULL   -> handle */
#define HVREG_NR_CLOSE_KEY    0x1002   /* handle */
#define HVREG_NR_SET_VALUE    0x1003   /* handle, name, type, data, size */
#define HVREG_NR_QUERY_VALUE  0x1004   /* handle, name, &type, data, &size (in: buffer bytes) */
#define HVREG_NR_DELETE_VALUE 0x1005   /* handle, name */
#define HVREG_NR_DELETE_KEY   0x1006   /* handle, path, flags */
#define HVREG_NR_ENUM_KEY     0x1007   /* handle, index, name, &length (in: buffer bytes) */
#define HVREG_NR_ENUM_VALUE   0x1008   /* handle, index, name, &length, &type, &size */

typedef uint32_t hvreg_key;

/* Predefined handles, as in winreg.h; always open, closing them does nothing. */
#define HVREG_HKEY_CURRENT_USER  ((hvreg_key)0x80000001u)
#define HVREG_HKEY_LOCAL_MACHINE ((hvreg_key)0x80000002u)

/* Value types, numbered as in winnt.h. Any other 32-bit type is kept as bytes. */
#define HVREG_NONE       0
#define HVREG_SZ         1    /* UTF-8 text with its NUL */
#define HVREG_EXPAND_SZ  2    /* the same, holding %VARIABLES% */
#define HVREG_BINARY     3
#define HVREG_DWORD      4    /* 4 bytes, little-endian */
#define HVREG_MULTI_SZ   7    /* "a\0b\0\0" */
#define HVREG_QWORD      11   /* 8 bytes, little-endian */

/* CREATE_KEY's disposition, as REG_CREATED_NEW_KEY / REG_OPENED_EXISTING_KEY. */
#define HVREG_CREATED_NEW_KEY     1
#define HVREG_OPENED_EXISTING_KEY 2

/* DELETE_KEY flag: RegDeleteTree (the key and everything below it; with path "" everything
 * below the handle's key, which stays). Without it, RegDeleteKey: the key must have no subkeys. */
#define HVREG_DELETE_TREE 0x1

/* Limits. */
#define HVREG_MAX_KEY_NAME   255        /* characters in one key name */
#define HVREG_MAX_VALUE_NAME 16383      /* characters in a value name */
#define HVREG_MAX_DEPTH      512        /* key levels below a root */
#define HVREG_MAX_DATA       (1 << 20)  /* bytes of stored data (strings are stored as UTF-16) */
#define HVREG_MAX_HANDLES    1024       /* open keys per container */
#define HVREG_MAX_STRING     65536      /* bytes of a string argument with its NUL */

/* Failures: the result is minus one of these (Linux errno values). */
#define HVREG_ENOENT       2     /* ERROR_FILE_NOT_FOUND: no such key or value */
#define HVREG_EIO          5     /* ERROR_REGISTRY_IO_FAILED: the host's storage failed */
#define HVREG_E2BIG        7     /* ERROR_INVALID_PARAMETER: data over HVREG_MAX_DATA */
#define HVREG_EBADF        9     /* ERROR_INVALID_HANDLE */
#define HVREG_EACCES       13    /* ERROR_ACCESS_DENIED: a root key, a read-only registry */
#define HVREG_EFAULT       14    /* ERROR_NOACCESS: a pointer the program cannot access */
#define HVREG_EINVAL       22    /* ERROR_INVALID_PARAMETER: bad name, flags, type or UTF-8 */
#define HVREG_EMFILE       24    /* ERROR_TOO_MANY_OPEN_FILES: HVREG_MAX_HANDLES keys open */
#define HVREG_ENAMETOOLONG 36    /* ERROR_INVALID_PARAMETER: a name, path or depth over its limit */
#define HVREG_ENOSYS       38    /* no registry here (e.g. run outside hv) */
#define HVREG_ENOTEMPTY    39    /* ERROR_ACCESS_DENIED: RegDeleteKey on a key with subkeys */
#define HVREG_ENODATA      61    /* ERROR_NO_MORE_ITEMS: enumeration index past the end */
#define HVREG_EOVERFLOW    75    /* ERROR_MORE_DATA: the buffer is too small; *size says how big */
#define HVREG_ESTALE       116   /* ERROR_KEY_DELETED: the handle's key was deleted */
#define HVREG_EDQUOT       122   /* ERROR_NOT_ENOUGH_QUOTA: the container's registry is full */

/* --- the system calls ------------------------------------------------------------------- */

static inline long hvreg_call3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ __volatile__("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return ret;
}

static inline long hvreg_call5(long nr, long a, long b, long c, long d, long e)
{
    long ret;
    __asm__ __volatile__("int $0x80" : "=a"(ret)
                         : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e) : "memory");
    return ret;
}

/* The sixth argument goes in EBP, which may be the frame pointer: it is pushed, loaded from
 * the stack and restored around the call (musl's __syscall6 does the same). */
static inline long hvreg_call6(long nr, long a, long b, long c, long d, long e, long f)
{
    long ret;
    __asm__ __volatile__("pushl %7\n\t"
                         "push %%ebp\n\t"
                         "mov 4(%%esp), %%ebp\n\t"
                         "int $0x80\n\t"
                         "pop %%ebp\n\t"
                         "add $4, %%esp"
                         : "=a"(ret)
                         : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e), "g"(f) : "memory");
    return ret;
}

/* RegOpenKeyEx: a handle (> 0) to the existing key `path` below `parent`. */
static inline long hvreg_open_key(hvreg_key parent, const char *path)
{
    return hvreg_call3(HVREG_NR_OPEN_KEY, (long)parent, (long)path, 0);
}

/* RegCreateKeyEx: a handle to `path` below `parent`, made with its missing parents if need be;
 * *disposition (if not NULL) says HVREG_CREATED_NEW_KEY or HVREG_OPENED_EXISTING_KEY. */
static inline long hvreg_create_key(hvreg_key parent, const char *path, uint32_t *disposition)
{
    return hvreg_call3(HVREG_NR_CREATE_KEY, (long)parent, (long)path, (long)disposition);
}

static inline long hvreg_close_key(hvreg_key key)
{
    return hvreg_call3(HVREG_NR_CLOSE_KEY, (long)key, 0, 0);
}

/* RegSetValueEx: `size` bytes at `data` as the value `name` ("" or NULL: the default value). */
static inline long hvreg_set_value(hvreg_key key, const char *name, uint32_t type,
                                   const void *data, uint32_t size)
{
    return hvreg_call5(HVREG_NR_SET_VALUE, (long)key, (long)name, (long)type, (long)data, (long)size);
}

/* RegQueryValueEx: *size is in: the buffer's bytes, out: the data's bytes. With data == NULL
 * only *type and *size are filled in. A buffer too small gives -HVREG_EOVERFLOW with *size set. */
static inline long hvreg_query_value(hvreg_key key, const char *name, uint32_t *type,
                                     void *data, uint32_t *size)
{
    return hvreg_call5(HVREG_NR_QUERY_VALUE, (long)key, (long)name, (long)type, (long)data, (long)size);
}

static inline long hvreg_delete_value(hvreg_key key, const char *name)
{
    return hvreg_call3(HVREG_NR_DELETE_VALUE, (long)key, (long)name, 0);
}

/* RegDeleteKey (flags 0) or RegDeleteTree (HVREG_DELETE_TREE) of `path` below `key`. */
static inline long hvreg_delete_key(hvreg_key key, const char *path, uint32_t flags)
{
    return hvreg_call3(HVREG_NR_DELETE_KEY, (long)key, (long)path, (long)flags);
}

/* RegEnumKeyEx: the index-th subkey's name (sorted case-insensitively). *length is in: the
 * buffer's bytes, NUL included; out: the name's bytes, NUL excluded (also on -HVREG_EOVERFLOW).
 * -HVREG_ENODATA past the last one. */
static inline long hvreg_enum_key(hvreg_key key, uint32_t index, char *name, uint32_t *length)
{
    return hvreg_call5(HVREG_NR_ENUM_KEY, (long)key, (long)index, (long)name, (long)length, 0);
}

/* RegEnumValue: the index-th value's name as hvreg_enum_key, and (if not NULL) its type and
 * the size hvreg_query_value would give; read its data with hvreg_query_value. */
static inline long hvreg_enum_value(hvreg_key key, uint32_t index, char *name, uint32_t *length,
                                    uint32_t *type, uint32_t *size)
{
    return hvreg_call6(HVREG_NR_ENUM_VALUE, (long)key, (long)index, (long)name, (long)length,
                       (long)type, (long)size);
}

#endif /* HVREG_H */
