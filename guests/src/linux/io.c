/* readv/writev, pipes, dup/dup2 and stdin. */
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

int main(void) {
    struct iovec out[3] = {{"one ", 4}, {"two ", 4}, {"three\n", 6}};
    printf("writev=%zd\n", (fflush(stdout), writev(1, out, 3)));
    int p[2];
    if (pipe(p) < 0) { perror("pipe"); return 1; }
    printf("pipe fds %d %d\n", p[0], p[1]);
    write(p[1], "abcdefghij", 10);
    char a[3], b[4], c[8];
    struct iovec in[3] = {{a, 3}, {b, 4}, {c, 8}};
    ssize_t n = readv(p[0], in, 3);
    printf("readv=%zd [%.3s][%.3s][%.3s]\n", n, a, b, c);
    close(p[1]);
    printf("read at eof=%zd\n", read(p[0], c, 8));
    close(p[0]);

    int saved = dup(1);
    pipe(p);
    dup2(p[1], 1);
    printf("into the pipe\n");
    fflush(stdout);
    dup2(saved, 1);
    close(p[1]);
    char buf[64];
    n = read(p[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("from the pipe: %zd [%s]\n", n, strtok(buf, "\n"));
    close(p[0]);

    fcntl(p[0], F_GETFD);
    long lines = 0, bytes = 0;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        for (int i = 0; i < n; i++) { lines += buf[i] == '\n'; buf[i] = toupper((unsigned char)buf[i]); }
        bytes += n;
        write(1, buf, n);
    }
    printf("stdin: %ld bytes, %ld lines\n", bytes, lines);
    fprintf(stderr, "a line on stderr\n");
    return 0;
}
