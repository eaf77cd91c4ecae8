/* service: a small service for process containers (hv's demo and benchmark workload).
 *
 *   service [ROUNDS]
 *
 * From its working directory (the container's root: hv container run -w /), it:
 *   1. reads its configuration file etc/service.conf (name=..., greeting=..., rounds=...);
 *   2. reads its settings from the registry, HKLM\Software\hv\service (Greeting, Mode), and
 *      counts its runs in HKLM\Software\hv\service\State "Runs" (each container has its own);
 *   3. appends a line to its log, var/log/service.log, and counts the log's lines;
 *   4. lists the folder srv/data (sorted by name) and computes the CRC-32 of each file;
 *   5. mixes the files' bytes ROUNDS times through CRC-32 (the CPU part; default from the
 *      configuration);
 *   6. prints a summary.
 *
 * The output depends only on the files, the registry and ROUNDS (no times, no pids), so a run
 * can be compared with another. Outside hv the registry calls answer ENOSYS and the service
 * says "registry: not available"; everything else is the same under qemu-i386.
 * Exit status: 0 done, 1 a file or registry operation failed, 2 bad usage.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hvreg.h"

#define CONF_PATH "etc/service.conf"
#define LOG_PATH "var/log/service.log"
#define DATA_DIR "srv/data"
#define MAX_FILES 64
#define MAX_DATA (4 << 20)

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

struct config {
    char name[64];
    char greeting[128];
    long rounds;
};

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        s[--n] = 0;
}

static int read_config(struct config *c)
{
    char line[256];
    FILE *f = fopen(CONF_PATH, "r");
    strcpy(c->name, "service");
    strcpy(c->greeting, "hello");
    c->rounds = 20;
    if (!f) {
        printf("config: %s: %s\n", CONF_PATH, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        char *eq = strchr(line, '=');
        trim(line);
        if (line[0] == '#' || !eq)
            continue;
        *eq = 0;
        if (!strcmp(line, "name"))
            snprintf(c->name, sizeof c->name, "%s", eq + 1);
        else if (!strcmp(line, "greeting"))
            snprintf(c->greeting, sizeof c->greeting, "%s", eq + 1);
        else if (!strcmp(line, "rounds"))
            c->rounds = strtol(eq + 1, 0, 10);
    }
    fclose(f);
    printf("config: name=%s rounds=%ld greeting=\"%s\"\n", c->name, c->rounds, c->greeting);
    return 0;
}

/* The registry part; returns -1 when a call failed, 0 otherwise (also without a registry). */
static int use_registry(void)
{
    char text[128];
    uint32_t type, size, runs = 0, disposition;
    long key, state, r;

    key = hvreg_open_key(HVREG_HKEY_LOCAL_MACHINE, "Software\\hv\\service");
    if (key == -HVREG_ENOSYS) {
        printf("registry: not available\n");
        return 0;
    }
    if (key < 0) {
        printf("registry: HKLM\\Software\\hv\\service: error %ld\n", -key);
        return -1;
    }
    size = sizeof text - 1;
    r = hvreg_query_value(key, "Greeting", &type, text, &size);
    if (r == 0 && type == HVREG_SZ) {
        text[size < sizeof text ? size : sizeof text - 1] = 0;
        printf("registry: Greeting=\"%s\"\n", text);
    } else {
        printf("registry: Greeting: error %ld\n", -r);
    }
    size = sizeof text - 1;
    r = hvreg_query_value(key, "Mode", &type, text, &size);
    if (r == 0 && type == HVREG_SZ) {
        text[size < sizeof text ? size : sizeof text - 1] = 0;
        printf("registry: Mode=\"%s\"\n", text);
    } else {
        printf("registry: Mode: error %ld\n", -r);
    }
    state = hvreg_create_key(key, "State", &disposition);
    hvreg_close_key(key);
    if (state < 0) {
        printf("registry: State: error %ld\n", -state);
        return -1;
    }
    size = sizeof runs;
    r = hvreg_query_value(state, "Runs", &type, &runs, &size);
    if (r == -HVREG_ENOENT)
        runs = 0;
    else if (r < 0 || type != HVREG_DWORD)
        runs = 0;
    runs++;
    r = hvreg_set_value(state, "Runs", HVREG_DWORD, &runs, sizeof runs);
    hvreg_close_key(state);
    if (r < 0) {
        printf("registry: Runs: error %ld\n", -r);
        return -1;
    }
    printf("registry: Runs=%u\n", runs);
    return 0;
}

static int write_log(const struct config *c, long rounds)
{
    char line[256];
    int lines = 0, ch;
    FILE *f = fopen(LOG_PATH, "a");
    if (!f) {
        printf("log: %s: %s\n", LOG_PATH, strerror(errno));
        return -1;
    }
    fprintf(f, "%s: started, %ld rounds\n", c->name, rounds);
    fclose(f);
    f = fopen(LOG_PATH, "r");
    if (!f) {
        printf("log: %s: %s\n", LOG_PATH, strerror(errno));
        return -1;
    }
    while ((ch = fgetc(f)) != EOF)
        lines += ch == '\n';
    fclose(f);
    (void)line;
    printf("log: %s has %d line%s\n", LOG_PATH, lines, lines == 1 ? "" : "s");
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    struct config c;
    char *names[MAX_FILES];
    int n = 0, failed = 0;
    unsigned char *data;
    size_t total = 0;
    long rounds;
    DIR *d;
    struct dirent *e;

    if (argc > 2 || (argc == 2 && !(argv[1][0] >= '0' && argv[1][0] <= '9'))) {
        fprintf(stderr, "usage: service [ROUNDS]\n");
        return 2;
    }
    crc_init();
    failed |= read_config(&c) < 0;
    failed |= use_registry() < 0;
    rounds = argc == 2 ? strtol(argv[1], 0, 10) : c.rounds;
    failed |= write_log(&c, rounds) < 0;

    d = opendir(DATA_DIR);
    if (!d) {
        printf("data: %s: %s\n", DATA_DIR, strerror(errno));
        return 1;
    }
    while ((e = readdir(d)) && n < MAX_FILES)
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], by_name);

    data = malloc(MAX_DATA);
    if (!data) {
        printf("data: out of memory\n");
        return 1;
    }
    printf("data: %d file%s in %s\n", n, n == 1 ? "" : "s", DATA_DIR);
    for (int i = 0; i < n; i++) {
        char path[512];
        struct stat st;
        FILE *f;
        size_t got;
        snprintf(path, sizeof path, "%s/%s", DATA_DIR, names[i]);
        if (stat(path, &st) < 0 || !(f = fopen(path, "rb"))) {
            printf("  %-16s %s\n", names[i], strerror(errno));
            failed = 1;
            continue;
        }
        got = fread(data + total, 1, MAX_DATA - total, f);
        fclose(f);
        printf("  %-16s %8lld bytes  crc32 %08x\n", names[i], (long long)st.st_size,
               crc32_update(0, data + total, got));
        total += got;
    }

    uint32_t mix = 0;
    for (long r = 0; r < rounds; r++)
        mix = crc32_update(mix, data, total);
    printf("work: %ld rounds over %zu bytes: %08x\n", rounds, total, mix);
    printf("%s: %s, %s\n", c.name, c.greeting, failed ? "with errors" : "done");
    free(data);
    return failed;
}
