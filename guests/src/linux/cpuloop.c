/* CPU-bound work for the benchmarks: an LCG and xor mixing loop, N iterations (argv[1]). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    unsigned long n = argc > 1 ? strtoul(argv[1], 0, 10) : 10000000;
    unsigned x = 12345, acc = 0;
    for (unsigned long i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        acc ^= x >> 7;
        acc += acc << 3;
    }
    printf("%lu iterations: %08x\n", n, acc);
    return 0;
}
