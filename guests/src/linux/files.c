/* Files and directories through relative paths; every result is printed, errors with errno. */
#define _FILE_OFFSET_BITS 64
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(expr) do { if ((expr) < 0) printf("%s: %s\n", #expr, strerror(errno)); } while (0)

static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }

static void list(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) { printf("opendir %s: %s\n", dir, strerror(errno)); return; }
    char *names[64]; int n = 0; struct dirent *e;
    while ((e = readdir(d)) && n < 64) {
        char type = e->d_type == DT_DIR ? 'd' : e->d_type == DT_REG ? 'f' : e->d_type == DT_LNK ? 'l' : '?';
        names[n] = malloc(strlen(e->d_name) + 3);
        sprintf(names[n++], "%c %s", type, e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp);
    printf("%s:", dir);
    for (int i = 0; i < n; i++) { printf(" [%s]", names[i]); free(names[i]); }
    printf("\n");
}

static void show(const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0) { printf("lstat %s: %s\n", path, strerror(errno)); return; }
    printf("%s: %s size=%lld nlink=%d mode=%o\n", path,
           S_ISDIR(st.st_mode) ? "dir" : S_ISREG(st.st_mode) ? "file" : S_ISLNK(st.st_mode) ? "link" : "other",
           (long long)st.st_size, (int)st.st_nlink, (unsigned)(st.st_mode & 07777));
}

int main(void) {
    umask(022);
    FILE *f = fopen("input.txt", "r");
    if (!f) { perror("input.txt"); return 1; }
    char line[128]; int lines = 0;
    while (fgets(line, sizeof line, f)) printf("line %d: %s", ++lines, line);
    fclose(f);

    CHECK(mkdir("work", 0755));
    CHECK(mkdir("work/sub", 0700));
    int fd = open("work/a.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd);
    char buf[256];
    for (int i = 0; i < 10; i++) {
        int n = snprintf(buf, sizeof buf, "record %d\n", i);
        CHECK(write(fd, buf, n));
    }
    CHECK(close(fd));
    show("work/a.txt");
    fd = open("work/a.txt", O_RDWR);
    printf("lseek end=%ld\n", (long)lseek(fd, 0, SEEK_END));
    printf("lseek 9=%ld\n", (long)lseek(fd, 9, SEEK_SET));
    int n = read(fd, buf, 9); buf[n > 0 ? n : 0] = 0;
    printf("read after seek: %d [%s]\n", n, buf);
    CHECK(ftruncate(fd, 18));
    struct stat st; fstat(fd, &st);
    printf("after ftruncate size=%lld\n", (long long)st.st_size);
    printf("F_GETFL accmode=%d F_GETFD=%d\n", fcntl(fd, F_GETFL) & O_ACCMODE, fcntl(fd, F_GETFD));
    CHECK(fcntl(fd, F_SETFD, FD_CLOEXEC));
    printf("F_GETFD after set=%d\n", fcntl(fd, F_GETFD));
    int fd2 = fcntl(fd, F_DUPFD, 10);
    printf("F_DUPFD 10 -> %d\n", fd2);
    lseek(fd2, 0, SEEK_SET);
    n = read(fd, buf, 6); buf[n > 0 ? n : 0] = 0;
    printf("shared offset read: [%s]\n", buf);
    close(fd2);
    close(fd);

    CHECK(symlink("a.txt", "work/link"));
    n = readlink("work/link", buf, sizeof buf - 1); buf[n > 0 ? n : 0] = 0;
    printf("readlink: %d [%s]\n", n, buf);
    show("work/link");
    CHECK(link("work/a.txt", "work/hard"));
    show("work/a.txt");
    CHECK(rename("work/hard", "work/sub/moved"));
    printf("access a.txt R_OK=%d W_OK=%d X_OK=%d missing=%d\n", access("work/a.txt", R_OK),
           access("work/a.txt", W_OK), access("work/a.txt", X_OK), access("work/nope", F_OK));
    list("work");
    list("work/sub");
    CHECK(chdir("work"));
    char cwd[512];
    if (getcwd(cwd, sizeof cwd)) printf("cwd ends with /work: %d\n", strcmp(strrchr(cwd, '/'), "/work") == 0);
    show("sub/moved");
    CHECK(chdir(".."));
    CHECK(unlink("work/sub/moved"));
    CHECK(unlink("work/link"));
    CHECK(rmdir("work/sub"));
    fd = openat(AT_FDCWD, "work", O_RDONLY | O_DIRECTORY);
    int fd3 = openat(fd, "b.txt", O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd3);
    dprintf(fd3, "via openat\n");
    close(fd3);
    close(fd);
    show("work/b.txt");
    list("work");
    FILE *out = fopen("output.txt", "w");
    fprintf(out, "lines=%d\n", lines);
    fclose(out);
    return 0;
}
