/* System-call loops for the benchmarks: "getpid N", "devnull N" (N writes to /dev/null), or
 * "regquery N" (N queries of HKLM\Software\hv\service "Mode" in the container registry). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hvreg.h"

static inline int sys1(int nr, int a) {
    int ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a) : "memory");
    return ret;
}

static inline int sys3(int nr, int a, const void *b, int c) {
    int ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return ret;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "getpid";
    long n = argc > 2 ? atol(argv[2]) : 1000;
    long acc = 0;
    if (!strcmp(mode, "getpid")) {
        for (long i = 0; i < n; i++) acc += sys1(20, 0);
    } else if (!strcmp(mode, "devnull")) {
        int fd = open("/dev/null", O_WRONLY);
        for (long i = 0; i < n; i++) acc += sys3(4, fd, "x", 1);
    } else if (!strcmp(mode, "regquery")) {
        long key = hvreg_open_key(HVREG_HKEY_LOCAL_MACHINE, "Software\\hv\\service");
        char text[64];
        uint32_t type, size;
        for (long i = 0; i < n && key >= 0; i++) {
            size = sizeof text;
            acc += hvreg_query_value(key, "Mode", &type, text, &size);
        }
        if (key < 0)
            acc = key;
    } else if (!strcmp(mode, "unknown")) {
        for (long i = 0; i < n; i++) acc += sys1(0x1ff, 0);
    }
    printf("%s x %ld: %ld\n", mode, n, acc);
    return 0;
}
