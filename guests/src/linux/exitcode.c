/* Ends as argv says: "exit N", "abort", "kill SIG", "segv" (NULL dereference), "ud2", "return". */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "return";
    printf("ending by %s\n", how);
    fflush(stdout);
    if (!strcmp(how, "exit")) exit(atoi(argv[2]));
    if (!strcmp(how, "abort")) abort();
    if (!strcmp(how, "kill")) kill(getpid(), atoi(argv[2]));
    if (!strcmp(how, "segv")) { volatile int *p = 0; return *p; }
    if (!strcmp(how, "ud2")) __asm__ volatile("ud2");
    if (!strcmp(how, "ignore")) { signal(SIGTERM, SIG_IGN); kill(getpid(), SIGTERM); printf("survived\n"); }
    return 7;
}
