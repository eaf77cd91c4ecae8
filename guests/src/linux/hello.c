/* printf formats and floating point: the output depends only on the C library. */
#include <stdio.h>
#include <math.h>

int main(void) {
    printf("hello from a container\n");
    printf("[%d] [%5d] [%-5d] [%05d] [%+d] [%u] [%x] [%X] [%#o]\n", 42, 42, 42, 42, 42, 4000000000u,
           0xbeef, 0xbeef, 8);
    printf("[%lld] [%llx] [%hhd] [%c] [%s] [%.3s] [%10s] [%-10s] [%%]\n", -1234567890123LL,
           0x123456789abcULL, (char)300, 'Z', "string", "truncated", "right", "left");
    printf("[%f] [%.2f] [%e] [%g] [%g] [%10.4f] [%a]\n", 3.14159265, 2.0 / 3.0, 6.02214076e23,
           0.0001, 1e20, -1.5, 1.0);
    volatile double x = 2.0;
    printf("sqrt=%.12f exp=%.12f sin=%.12f pow=%.6g\n", sqrt(x), exp(x), sin(x), pow(x, 0.5));
    long double ld = 1.0L / 3.0L;
    printf("long double %.18Lf\n", ld);
    int sum = 0;
    for (int i = 1; i <= 100; i++)
        sum += i * i;
    printf("sum of squares 1..100 = %d\n", sum);
    return 0;
}
