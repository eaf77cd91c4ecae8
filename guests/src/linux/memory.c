/* Memory: brk growth, a large mmap-backed malloc freed and reused, many small blocks, mmap/munmap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static unsigned checksum(const unsigned char *p, size_t n) {
    unsigned s = 0;
    for (size_t i = 0; i < n; i += 4093) s = s * 31 + p[i];
    return s;
}

int main(void) {
    char *b0 = sbrk(0);
    if (sbrk(1 << 20) == (void *)-1) { printf("sbrk failed\n"); return 1; }
    memset(b0, 0x5a, 1 << 20);
    printf("brk grew by 1 MiB: %d, byte=%#x\n", (char *)sbrk(0) - b0 == (1 << 20), (unsigned char)b0[12345]);
    sbrk(-(1 << 20));
    printf("brk back: %d\n", sbrk(0) == b0);

    size_t big = 16u << 20;
    for (int round = 0; round < 3; round++) {
        unsigned char *p = malloc(big);
        if (!p) { printf("malloc 16 MiB failed\n"); return 2; }
        for (size_t i = 0; i < big; i++) p[i] = (unsigned char)(i * 7 + round);
        printf("round %d: 16 MiB checksum %u\n", round, checksum(p, big));
        free(p);
    }
    void *blocks[1000];
    unsigned long total = 0;
    for (int i = 0; i < 1000; i++) {
        size_t n = 16 + (i * 37) % 2000;
        blocks[i] = malloc(n);
        memset(blocks[i], i & 0xff, n);
        total += n;
    }
    for (int i = 0; i < 1000; i += 2) free(blocks[i]);
    for (int i = 0; i < 1000; i += 2) blocks[i] = calloc(1, 64);
    int zero = 1;
    for (int i = 0; i < 1000; i += 2) for (int j = 0; j < 64; j++) zero &= ((char *)blocks[i])[j] == 0;
    printf("small blocks: %lu bytes, calloc zeroed: %d\n", total, zero);
    char *r = malloc(10);
    strcpy(r, "realloc");
    r = realloc(r, 1 << 20);
    printf("realloc kept: %s\n", r);
    free(r);
    for (int i = 0; i < 1000; i++) free(blocks[i]);

    unsigned char *m = mmap(NULL, 3 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mmap: %d, zero-filled: %d\n", m != MAP_FAILED, m[0] == 0 && m[(3 << 20) - 1] == 0);
    m[100] = 1;
    printf("munmap middle: %d\n", munmap(m + (1 << 20), 1 << 20));
    printf("still mapped around the hole: %d %d\n", m[100], m[(2 << 20) + 5]);
    printf("mprotect ro: %d\n", mprotect(m, 1 << 20, PROT_READ));
    printf("read after mprotect: %d\n", m[100]);
    munmap(m, 3 << 20);
    return 0;
}
