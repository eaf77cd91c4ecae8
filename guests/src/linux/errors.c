/* Error paths: each failing call and the errno Linux gives for it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define TRY(expr) printf("%-40s -> %ld %s\n", #expr, (long)(expr), errno ? strerrorname_np(errno) : "-"), errno = 0

int main(void) {
    char buf[16];
    errno = 0;
    mkdir("d", 0755);
    close(open("d/f", O_CREAT | O_WRONLY, 0644));
    TRY(open("missing.txt", O_RDONLY));
    TRY(open("d", O_WRONLY));
    TRY(open("d/f/x", O_RDONLY));
    TRY(open("d/f", O_CREAT | O_EXCL | O_WRONLY, 0644));
    TRY(close(99));
    TRY(close(-1));
    TRY(read(99, buf, 1));
    TRY(write(0, buf, 0) >= 0 ? 0 : -1);
    TRY(mkdir("d", 0755));
    TRY(rmdir("d"));
    TRY(rmdir("d/f"));
    TRY(unlink("d"));
    TRY(unlink("missing.txt"));
    TRY(rename("missing.txt", "x"));
    TRY(chdir("d/f"));
    TRY(readlink("d/f", buf, sizeof buf));
    TRY(lseek(99, 0, SEEK_SET));
    TRY(dup2(99, 5));
    TRY(dup(1000));
    TRY(fcntl(99, F_GETFD));
    TRY(getcwd(buf, 1) == NULL ? -1 : 0);
    int p[2];
    pipe(p);
    TRY(lseek(p[0], 0, SEEK_CUR));
    TRY(write(p[0], "x", 1));
    TRY(read(p[1], buf, 1));
    TRY(access("missing.txt", F_OK));
    struct stat st;
    TRY(stat("missing.txt", &st));
    TRY(stat("d/f/x", &st));
    struct iovec iov[1] = {{buf, 1}};
    volatile int bad_count = -1;
    TRY(readv(p[0], iov, bad_count));
    TRY(munmap((void *)0x1001, 4096));
    TRY(mprotect((void *)0x1001, 4096, PROT_READ));
    int fd = open("d/f", O_RDONLY);
    TRY(write(fd, "x", 1));
    TRY(ftruncate(fd, 0));
    close(fd);
    TRY(unlink("d/f"));
    TRY(rmdir("d"));
    return 0;
}
