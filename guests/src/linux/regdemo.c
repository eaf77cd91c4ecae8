/* regdemo: a static Linux i386 program that uses the container registry (guests/include/hvreg.h).
 *
 * It opens HKCU\Software\hv\regdemo (made on first use), counts its runs in the REG_DWORD "runs",
 * keeps a greeting in a REG_SZ, reads it back first into a buffer too small for it, and lists the
 * key's values. Inside a container the count goes up from run to run, because the container's
 * registry layer keeps it; outside hv (e.g. under qemu-i386) the calls answer ENOSYS and it says so.
 * Exit status: 0 done, 3 no registry here, 1 a call failed.
 *
 * No C library: only write and exit_group, so it runs on any system-call layer.
 *   gcc -m32 -static -nostdlib -ffreestanding -fno-pic -no-pie -fno-stack-protector -O2 \
 *       -I guests/include guests/src/linux/regdemo.c -o regdemo
 */
#include "hvreg.h"

static void put(const char *s)
{
    long n = 0;
    while (s[n])
        n++;
    hvreg_call3(4 /* write */, 1, (long)s, n);
}

static void put_num(long v)
{
    char buf[12], *p = buf + sizeof buf - 1;
    unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;
    *p = 0;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    put(p);
}

static int failed(const char *what, long r)
{
    put("regdemo: ");
    put(what);
    put(" failed: ");
    put_num(r);
    put("\n");
    return 1;
}

static int regdemo(void)
{
    static const char greeting[] = "hello from a container";
    uint32_t disposition, type, size, runs = 0;
    char name[64], text[64];
    long key, r;

    key = hvreg_create_key(HVREG_HKEY_CURRENT_USER, "Software\\hv\\regdemo", &disposition);
    if (key == -HVREG_ENOSYS) {
        put("regdemo: no registry here (ENOSYS)\n");
        return 3;
    }
    if (key < 0)
        return failed("create_key", key);
    put(disposition == HVREG_CREATED_NEW_KEY ? "regdemo: key created\n" : "regdemo: key opened\n");

    size = sizeof runs;
    r = hvreg_query_value(key, "runs", &type, &runs, &size);
    if (r == -HVREG_ENOENT)
        runs = 0;
    else if (r < 0 || type != HVREG_DWORD)
        return failed("query runs", r);
    runs++;
    if ((r = hvreg_set_value(key, "runs", HVREG_DWORD, &runs, sizeof runs)) < 0)
        return failed("set runs", r);
    put("regdemo: runs = ");
    put_num(runs);
    put("\n");

    if ((r = hvreg_set_value(key, "greeting", HVREG_SZ, greeting, sizeof greeting)) < 0)
        return failed("set greeting", r);
    size = 8;                                   /* too small: the call says how much it needs */
    r = hvreg_query_value(key, "greeting", &type, text, &size);
    if (r != -HVREG_EOVERFLOW)
        return failed("query greeting into 8 bytes", r);
    put("regdemo: greeting needs ");
    put_num(size);
    put(" bytes\n");
    size = sizeof text;
    if ((r = hvreg_query_value(key, "greeting", &type, text, &size)) < 0)
        return failed("query greeting", r);
    put("regdemo: greeting = ");
    put(text);
    put("\n");

    for (uint32_t i = 0;; i++) {
        uint32_t length = sizeof name;
        r = hvreg_enum_value(key, i, name, &length, &type, &size);
        if (r == -HVREG_ENODATA)
            break;
        if (r < 0)
            return failed("enum_value", r);
        put("regdemo: value ");
        put(name);
        put(" type ");
        put_num(type);
        put(" size ");
        put_num(size);
        put("\n");
    }
    if ((r = hvreg_close_key(key)) < 0)
        return failed("close_key", r);
    return 0;
}

/* The entry point: a 16-byte aligned stack, then exit_group(regdemo()). */
__attribute__((used)) static void start_c(void)
{
    hvreg_call3(252 /* exit_group */, regdemo(), 0, 0);
}

__asm__(".globl _start\n"
        "_start:\n"
        "    xor %ebp, %ebp\n"
        "    and $-16, %esp\n"
        "    call start_c\n"
        "    hlt\n");
