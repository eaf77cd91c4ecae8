/* regops: registry calls from a script in argv, one result line each (hv's registry tests).
 *
 *   regops OP ARGS... [OP ARGS...]...
 *     c H PATH            create_key      -> "c <result> <disposition>"
 *     o H PATH            open_key        -> "o <result>"
 *     x H                 close_key       -> "x <result>"
 *     s H NAME TYPE TEXT  set_value: TEXT as the data (with its NUL for types 1, 2, 7)
 *     q H NAME CAP        query_value with a CAP-byte buffer -> "q <result> <type> <size> <data>"
 *     d H NAME            delete_value
 *     k H PATH FLAGS      delete_key
 *     e H I               enum_key        -> "e <result> <name>"
 *     v H I               enum_value      -> "v <result> <name> <type> <size>"
 * H is L (HKLM), U (HKCU), a number, or $N: the handle the N-th create/open returned.
 * A name or path "-" is NULL, "." is "". Data is printed as text up to its first NUL.
 * No C library, like regdemo: only write and exit_group. Exit status 0 (the lines are the output).
 */
#include "hvreg.h"

static char out[1 << 16];
static long used;

static void put(const char *s) { while (*s && used < (long)sizeof out) out[used++] = *s++; }
static void flush(void) { hvreg_call3(4, 1, (long)out, used); used = 0; }

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

static long num(const char *s)
{
    long v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (*s++ - '0');
    return v;
}

static long handles[256];
static int nhandles;

static hvreg_key handle(const char *s)
{
    if (s[0] == 'L') return HVREG_HKEY_LOCAL_MACHINE;
    if (s[0] == 'U') return HVREG_HKEY_CURRENT_USER;
    if (s[0] == '$') { long i = num(s + 1); return i < nhandles ? (hvreg_key)handles[i] : 0xDEAD; }
    return (hvreg_key)num(s);
}

static const char *str(const char *s) { return s[0] == '-' && !s[1] ? 0 : s[0] == '.' && !s[1] ? "" : s; }

static void keep(long r) { if (nhandles < 256) handles[nhandles++] = r; }

int main(int argc, char **argv)
{
    static char data[1 << 16];
    for (int i = 1; i < argc; ) {
        const char *op = argv[i++];
        int need = op[0] == 'x' ? 1 : op[0] == 's' ? 4 : op[0] == 'q' || op[0] == 'k' ? 3 : 2;
        if (i + need > argc) break;
        char **a = argv + i;
        i += need;
        long r;
        put(op);
        put(" ");
        switch (op[0]) {
        case 'c': {
            uint32_t disp = 0;
            r = hvreg_create_key(handle(a[0]), str(a[1]), &disp);
            keep(r);
            put_num(r); put(" "); put_num(disp);
            break;
        }
        case 'o': r = hvreg_open_key(handle(a[0]), str(a[1])); keep(r); put_num(r); break;
        case 'x': put_num(hvreg_close_key(handle(a[0]))); break;
        case 's': {
            uint32_t type = (uint32_t)num(a[2]);
            long n = 0;
            while (a[3][n]) n++;
            if (type == 1 || type == 2 || type == 7) n++;
            put_num(hvreg_set_value(handle(a[0]), str(a[1]), type, a[3], (uint32_t)n));
            break;
        }
        case 'q': {
            uint32_t type = 0, size = (uint32_t)num(a[2]);
            for (long k = 0; k < (long)sizeof data; k++) data[k] = 0;
            r = hvreg_call5(HVREG_NR_QUERY_VALUE, (long)handle(a[0]), (long)str(a[1]), (long)&type,
                            (long)data, (long)&size);
            put_num(r); put(" "); put_num(type); put(" "); put_num(size); put(" [");
            data[sizeof data - 1] = 0;
            put(data);
            put("]");
            break;
        }
        case 'd': put_num(hvreg_call3(HVREG_NR_DELETE_VALUE, (long)handle(a[0]), (long)str(a[1]), 0)); break;
        case 'k':
            put_num(hvreg_call3(HVREG_NR_DELETE_KEY, (long)handle(a[0]), (long)str(a[1]), num(a[2])));
            break;
        case 'e': case 'v': {
            char name[300];
            uint32_t len = sizeof name, type = 0, size = 0;
            name[0] = 0;
            if (op[0] == 'e')
                r = hvreg_call5(HVREG_NR_ENUM_KEY, (long)handle(a[0]), num(a[1]), (long)name, (long)&len, 0);
            else
                r = hvreg_call6(HVREG_NR_ENUM_VALUE, (long)handle(a[0]), num(a[1]), (long)name,
                                (long)&len, (long)&type, (long)&size);
            put_num(r); put(" ["); put(r == 0 ? name : ""); put("]");
            if (op[0] == 'v') { put(" "); put_num(type); put(" "); put_num(size); }
            break;
        }
        default:
            put("?");
        }
        put("\n");
        if (used > (long)sizeof out - 512) flush();
    }
    flush();
    return 0;
}

/* The entry point: argc and argv from the stack Linux builds, a 16-byte aligned call. */
__asm__(".globl _start\n"
        "_start:\n"
        "    xor %ebp, %ebp\n"
        "    mov (%esp), %eax\n"
        "    lea 4(%esp), %edx\n"
        "    and $-16, %esp\n"
        "    sub $8, %esp\n"
        "    push %edx\n"
        "    push %eax\n"
        "    call main\n"
        "    mov %eax, %ebx\n"
        "    mov $252, %eax\n"
        "    int $0x80\n");
