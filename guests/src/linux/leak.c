/* leak: one container's data reaching another through hv's named objects (guests/include/hvobj.h).
 *
 *   leak write NAME SECRET   map section NAME (created, 4 KiB), put SECRET in it; also write SECRET
 *                            to the file /secret.txt (the container's own layer). Then wait, at most
 *                            5 s, until a reader has marked the section as read, and exit.
 *   leak read NAME           map section NAME (waiting at most 2 s for it to appear), print what it
 *                            holds and mark it read; then try the file /secret.txt.
 *   leak send NAME SECRET    write SECRET into pipe NAME and close it
 *   leak recv NAME           read pipe NAME to its end and print what came
 *
 * NAME is "Global\x" (every container of the hv process) or "Local\x" (this container only).
 * Exit status: 0 done, 1 a call failed (the error is printed), 2 bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hvobj.h"

#define SECTION_SIZE 4096
#define READ_FLAG 2048          /* offset of the reader's "I have read it" byte */

static void nap_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, 0);
}

static int usage(void)
{
    fprintf(stderr, "usage: leak write NAME SECRET | read NAME | send NAME SECRET | recv NAME\n");
    return 2;
}

static int failed(const char *what, long r)
{
    printf("%s: %s\n", what, strerror((int)-r));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "write")) {
        long r = hvobj_map_section(argv[2], SECTION_SIZE, HVOBJ_CREATE);
        volatile char *view;
        int fd;
        if (hvobj_failed(r))
            return failed("section", r);
        view = (volatile char *)r;
        strncpy((char *)view, argv[3], READ_FLAG - 1);
        fd = open("/secret.txt", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write(fd, argv[3], strlen(argv[3])) < 0)
            return failed("file", -errno);
        close(fd);
        printf("wrote %s\n", argv[2]);
        fflush(stdout);
        for (int i = 0; i < 1000 && !view[READ_FLAG]; i++)
            nap_ms(5);
        printf("reader %s\n", view[READ_FLAG] ? "came" : "did not come");
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "read")) {
        long r = -HVOBJ_ENOENT;
        char buf[256];
        int fd;
        for (int i = 0; i < 400 && r == -HVOBJ_ENOENT; i++) {
            r = hvobj_map_section(argv[2], 0, 0);
            if (r == -HVOBJ_ENOENT)
                nap_ms(5);
        }
        if (hvobj_failed(r)) {
            failed("section", r);
        } else {
            volatile char *view = (volatile char *)r;
            printf("section: %.*s\n", READ_FLAG - 1, (const char *)view);
            view[READ_FLAG] = 1;
        }
        fd = open("/secret.txt", O_RDONLY);
        if (fd < 0) {
            printf("file: %s\n", strerror(errno));
        } else {
            long n = read(fd, buf, sizeof buf - 1);
            buf[n > 0 ? n : 0] = 0;
            printf("file: %s\n", buf);
            close(fd);
        }
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "send")) {
        long fd = hvobj_open_pipe(argv[2], HVOBJ_CREATE | HVOBJ_WRITE);
        if (hvobj_failed(fd))
            return failed("pipe", fd);
        if (write((int)fd, argv[3], strlen(argv[3])) < 0)
            return failed("write", -errno);
        close((int)fd);
        printf("sent\n");
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "recv")) {
        char buf[4096];
        size_t got = 0;
        long n, fd = hvobj_open_pipe(argv[2], HVOBJ_CREATE);
        if (hvobj_failed(fd))
            return failed("pipe", fd);
        while (got < sizeof buf - 1 && (n = read((int)fd, buf + got, sizeof buf - 1 - got)) > 0)
            got += n;
        buf[got] = 0;
        printf("received: %s\n", buf);
        return 0;
    }
    return usage();
}
