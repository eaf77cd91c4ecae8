/* probe: the isolation checks of `hv flavors` (one instance tries to reach its neighbour's data).
 *
 *   probe put PATH TEXT      write TEXT to the file PATH (created or truncated): "put PATH"
 *   probe get PATH           print the file's contents ("get: TEXT") or its error ("get: ENOENT")
 *   probe hold TEXT MS       put TEXT in private memory at the fixed address PROBE_ADDR, say
 *                            "holding", and keep it there MS milliseconds
 *   probe peek               what this instance sees at PROBE_ADDR: "peek: TEXT" when it finds
 *                            something there, "peek: nothing" otherwise (unmapped: it maps a page
 *                            of its own there first, which the kernel gives zeroed)
 *
 * Both instances run the same binary, so a kernel that mixed up address spaces would show the
 * holder's TEXT to the peeker at the same address. Exit status: 0 done, 1 a call failed, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PROBE_ADDR ((void *)0x50000000)
#define PAGE 4096

static const char *errname(int e)
{
    switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EROFS: return "EROFS";
    case ENOSYS: return "ENOSYS";
    default: return strerror(e);
    }
}

static char *map_probe_page(void)
{
    void *p = mmap(PROBE_ADDR, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "put")) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, argv[3], strlen(argv[3])) < 0) {
            printf("put: %s\n", errname(errno));
            return 1;
        }
        close(fd);
        printf("put %s\n", argv[2]);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "get")) {
        char buf[256];
        int fd = open(argv[2], O_RDONLY);
        long n;
        if (fd < 0) {
            printf("get: %s\n", errname(errno));
            return 0;
        }
        n = read(fd, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        close(fd);
        printf("get: %s\n", buf);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "hold")) {
        char *p = map_probe_page();
        struct timespec ts;
        long ms = atol(argv[3]);
        if (!p) {
            printf("hold: %s\n", errname(errno));
            return 1;
        }
        strncpy(p, argv[2], PAGE - 1);
        printf("holding\n");
        fflush(stdout);
        ts.tv_sec = ms / 1000;
        ts.tv_nsec = ms % 1000 * 1000000L;
        nanosleep(&ts, 0);
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "peek")) {
        char *p = map_probe_page();
        if (!p) {
            printf("peek: %s\n", errname(errno));
            return 1;
        }
        if (p[0])
            printf("peek: %.*s\n", PAGE - 1, p);
        else
            printf("peek: nothing\n");
        return 0;
    }
    fprintf(stderr, "usage: probe put PATH TEXT | get PATH | hold TEXT MS | peek\n");
    return 2;
}
