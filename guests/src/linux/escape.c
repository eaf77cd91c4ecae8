/* escape: tries to reach files outside its container (hv's escape tests).
 *
 *   escape OP... where each OP is one of
 *     r PATH        open PATH for reading, print its first line (or the error)
 *     w PATH        open PATH for writing (created, truncated), write "escaped\n"
 *     l OLD NEW     hard link OLD as NEW
 *     s TARGET NEW  symlink NEW -> TARGET
 *     u PATH        unlink PATH
 *
 * One line per OP: "OP ARGS: result". Always exits 0 (the results are the output).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void report(const char *op, const char *a, const char *b, int r)
{
    printf("%s %s%s%s: %s\n", op, a, b ? " " : "", b ? b : "", r < 0 ? strerror(errno) : "ok");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *op = argv[i];
        if (!strcmp(op, "r") && i + 1 < argc) {
            char buf[256];
            int fd = open(argv[++i], O_RDONLY);
            long n;
            if (fd < 0) {
                report("r", argv[i], 0, -1);
                continue;
            }
            n = read(fd, buf, sizeof buf - 1);
            close(fd);
            buf[n > 0 ? n : 0] = 0;
            buf[strcspn(buf, "\n")] = 0;
            printf("r %s: read \"%s\"\n", argv[i], buf);
        } else if (!strcmp(op, "w") && i + 1 < argc) {
            int fd = open(argv[++i], O_WRONLY | O_CREAT | O_TRUNC, 0644);
            int r = fd < 0 ? -1 : (int)write(fd, "escaped\n", 8);
            if (fd >= 0)
                close(fd);
            report("w", argv[i], 0, r);
        } else if (!strcmp(op, "l") && i + 2 < argc) {
            report("l", argv[i + 1], argv[i + 2], link(argv[i + 1], argv[i + 2]));
            i += 2;
        } else if (!strcmp(op, "u") && i + 1 < argc) {
            i++;
            report("u", argv[i], 0, unlink(argv[i]));
        } else if (!strcmp(op, "s") && i + 2 < argc) {
            report("s", argv[i + 1], argv[i + 2], symlink(argv[i + 1], argv[i + 2]));
            i += 2;
        } else {
            fprintf(stderr, "usage: escape {r PATH | w PATH | l OLD NEW | s TARGET NEW | u PATH}...\n");
            return 2;
        }
    }
    return 0;
}
