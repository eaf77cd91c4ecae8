/* hog: a noisy neighbour for process containers (hv's CPU and memory weak spots).
 *
 *   hog cpu                 spin forever (a CPU hog)
 *   hog spin N              N rounds of an LCG-and-xor loop, then print the result (fixed work)
 *   hog mem MIB [HOLD_S]    take MIB MiB in 1 MiB mmap chunks (fewer if mmap says ENOMEM),
 *                           touch every page, say how much it holds, then hold it HOLD_S
 *                           seconds (default 3600) before exiting
 *   hog alloc MIB           one anonymous mmap of MIB MiB, touched: "ok" (exit 0) or the
 *                           error (exit 1); what a neighbour that needs memory does
 *   hog tick N MS           sleep MS milliseconds N times; print the worst and mean lateness
 *                           of the wake-ups in microseconds (a latency-sensitive neighbour)
 *
 * Exit status: 0 done, 1 the allocation failed (alloc), 2 bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MIB (1u << 20)

static int usage(void)
{
    fprintf(stderr, "usage: hog cpu | spin N | mem MIB [HOLD_S] | alloc MIB | tick N MS\n");
    return 2;
}

static unsigned spin(unsigned long n)
{
    unsigned x = 12345, acc = 0;
    for (unsigned long i = 0; n == 0 || i < n; i++) {
        x = x * 1103515245u + 12345u;
        acc ^= x >> 7;
        acc += acc << 3;
    }
    return acc;
}

static void touch(char *p, size_t n)
{
    for (size_t at = 0; at < n; at += 4096)
        p[at] = 1;
}

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (!strcmp(argv[1], "cpu") && argc == 2) {
        spin(0);
        return 0;
    }
    if (!strcmp(argv[1], "spin") && argc == 3) {
        unsigned long n = strtoul(argv[2], 0, 10);
        printf("spin %lu: %08x\n", n, spin(n ? n : 1));
        return 0;
    }
    if (!strcmp(argv[1], "mem") && (argc == 3 || argc == 4)) {
        unsigned long want = strtoul(argv[2], 0, 10), got = 0;
        unsigned hold = argc == 4 ? (unsigned)strtoul(argv[3], 0, 10) : 3600;
        for (; got < want; got++) {
            char *p = mmap(0, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED)
                break;
            touch(p, MIB);
        }
        printf("hog: holding %lu MiB%s\n", got, got < want ? " (mmap said ENOMEM)" : "");
        fflush(stdout);
        sleep(hold);
        return 0;
    }
    if (!strcmp(argv[1], "alloc") && argc == 3) {
        unsigned long mib = strtoul(argv[2], 0, 10);
        char *p = mmap(0, mib * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            printf("alloc %lu MiB: %s\n", mib, strerror(errno));
            return 1;
        }
        touch(p, mib * MIB);
        printf("alloc %lu MiB: ok\n", mib);
        return 0;
    }
    if (!strcmp(argv[1], "tick") && argc == 4) {
        long n = strtol(argv[2], 0, 10), ms = strtol(argv[3], 0, 10);
        long long worst = 0, sum = 0;
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        for (long i = 0; i < n; i++) {
            long long t0 = now_us(), late;
            nanosleep(&ts, 0);
            late = now_us() - t0 - ms * 1000LL;
            if (late < 0)
                late = 0;
            worst = late > worst ? late : worst;
            sum += late;
        }
        printf("tick %ld x %ld ms: worst %lld us, mean %lld us late\n", n, ms, worst,
               n ? sum / n : 0);
        return 0;
    }
    return usage();
}
