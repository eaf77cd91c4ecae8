/* File-call loops for the utility-VM benchmarks: "stat N PATH" (N stat calls) or
 * "openread N PATH" (N times open, read up to 4 KiB, close). Prints the last result. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: fsloop stat|openread N PATH\n"); return 2; }
    long n = atol(argv[2]), last = 0;
    char buf[4096];
    for (long i = 0; i < n; i++) {
        if (!strcmp(argv[1], "stat")) {
            struct stat st;
            last = stat(argv[3], &st) == 0 ? (long)st.st_size : -1;
        } else {
            int fd = open(argv[3], O_RDONLY);
            last = fd < 0 ? -1 : read(fd, buf, sizeof buf);
            close(fd);
        }
    }
    printf("%s x %ld: %ld\n", argv[1], n, last);
    return 0;
}
