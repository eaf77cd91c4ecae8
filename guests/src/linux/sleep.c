/* nanosleep and the clocks: sleeps ~20 ms and checks that the clocks moved. */
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

int main(void) {
    struct timespec a, b, d = {0, 20 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &a);
    int r = nanosleep(&d, NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    printf("nanosleep=%d slept at least 20 ms: %d\n", r, ms >= 20);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    printf("gettimeofday after 2020: %d, time() agrees: %d\n", tv.tv_sec > 1577836800,
           (long)time(NULL) - tv.tv_sec <= 1);
    struct timespec abs;
    clock_gettime(CLOCK_REALTIME, &abs);
    abs.tv_nsec += 5 * 1000 * 1000;
    if (abs.tv_nsec >= 1000000000) { abs.tv_sec++; abs.tv_nsec -= 1000000000; }
    printf("clock_nanosleep abstime=%d\n", clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &abs, NULL));
    return 0;
}
