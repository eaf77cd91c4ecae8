/* argv, envp and the auxiliary vector as a program sees them; exits with argc. */
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

extern char **environ;
extern void _start(void);

int main(int argc, char **argv) {
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    int n = 0;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "HV_", 3) == 0)
            printf("env %s\n", *e), n++;
    printf("HV_ variables: %d\n", n);
    printf("AT_PAGESZ=%lu\n", getauxval(AT_PAGESZ));
    printf("AT_PHENT=%lu\n", getauxval(AT_PHENT));
    printf("AT_ENTRY is _start: %d\n", getauxval(AT_ENTRY) == (unsigned long)_start);
    printf("AT_PHDR set: %d\n", getauxval(AT_PHDR) != 0);
    printf("AT_RANDOM set: %d\n", getauxval(AT_RANDOM) != 0);
    printf("AT_SECURE=%lu\n", getauxval(AT_SECURE));
    printf("AT_CLKTCK=%lu\n", getauxval(AT_CLKTCK));
    printf("AT_PLATFORM=%s\n", (const char *)getauxval(AT_PLATFORM));
    printf("AT_UID=%lu AT_GID=%lu\n", getauxval(AT_UID), getauxval(AT_GID));
    printf("uid=%d euid=%d gid=%d egid=%d\n", (int)getuid(), (int)geteuid(), (int)getgid(), (int)getegid());
    printf("stack 16-byte aligned at main: %d\n", ((unsigned long)__builtin_frame_address(0) & 3) == 0);
    return argc;
}
