/* fat.c (UVM_FULL, included by uvm.c): FAT16 with VFAT long names, on the boot disk.
 *
 * The whole FAT is kept in memory (at most 128 KiB) and written back, to every copy, by
 * fat_sync() before power-off. Directory sectors go through a small write-through cache;
 * file data goes straight between the disk and a cluster buffer. A file or directory is
 * named by where its short entry lies (sector, offset); the root directory by lba 0.
 *
 * Every value read from the disk is hostile: a cluster number out of range, a free or bad
 * cluster inside a chain, a chain longer than the volume (a loop), a directory past 65536
 * entries, a size beyond the chain: each is -EIO, after bounded work. */

enum { ENOSPC = 28, EFBIG = 27, ENOTEMPTY = 39, EXDEV = 18 };
enum { A_RO = 0x01, A_HIDDEN = 0x02, A_SYSTEM = 0x04, A_LABEL = 0x08, A_DIR = 0x10, A_ARCH = 0x20,
       A_LFN = 0x0F };
#define DIR_MAX_ENTRIES 65536u          /* the FAT limit on a directory */

static struct {
    u32 spc, csize, fat_lba, fat_secs, nfats, root_lba, root_entries, data_lba, nclusters, hint;
} vol;
static u16 fat[65536];
static u8 fat_dirty[256];
static u8 cbuf[65536] __attribute__((aligned(16)));    /* one cluster */
static u8 zeros[65536];                 /* never written: a cluster of zeros */

static int clus_ok(u32 c) { return c >= 2 && c <= vol.nclusters + 1; }

static int fat_mount(void)
{
    static u8 bs[512];
    if (disk_read(0, 1, bs)) return -EIO;
    u32 bps = bs[11] | bs[12] << 8, spc = bs[13], rsvd = bs[14] | bs[15] << 8, nfats = bs[16];
    u32 rootent = bs[17] | bs[18] << 8, tot = bs[19] | bs[20] << 8, fatsz = bs[22] | bs[23] << 8;
    if (!tot) tot = *(u32 *)(bs + 32);
    if (bps != 512 || !spc || (spc & (spc - 1)) || spc > 128 || !rsvd || !nfats || nfats > 2 ||
        !rootent || rootent % 16 || !fatsz || fatsz > 256 || tot > disk_sectors)
        return -EIO;
    vol.spc = spc;
    vol.csize = spc * 512;
    vol.fat_lba = rsvd;
    vol.fat_secs = fatsz;
    vol.nfats = nfats;
    vol.root_lba = rsvd + nfats * fatsz;
    vol.root_entries = rootent;
    vol.data_lba = vol.root_lba + rootent / 16;
    if (vol.data_lba >= tot) return -EIO;
    vol.nclusters = (tot - vol.data_lba) / spc;
    if (vol.nclusters < 4085 || vol.nclusters > 65524 || fatsz * 256 < vol.nclusters + 2)
        return -EIO;
    vol.hint = 2;
    return disk_read(vol.fat_lba, fatsz, fat);
}

static int fat_sync(void)
{
    int r = 0;
    for (u32 s = 0; s < vol.fat_secs; s++) {
        if (!fat_dirty[s]) continue;
        for (u32 c = 0; c < vol.nfats; c++)
            if (disk_write(vol.fat_lba + c * vol.fat_secs + s, 1, (u8 *)fat + s * 512)) r = -EIO;
        fat_dirty[s] = 0;
    }
    return r;
}

static void fat_set(u32 c, u16 v) { fat[c] = v; fat_dirty[c >> 8] = 1; }

/* The cluster after c: 0 at the end of the chain, -EIO for a free, bad or out-of-range link. */
static int fat_next(u32 c)
{
    if (!clus_ok(c)) return -EIO;
    u32 v = fat[c];
    if (v >= 0xFFF8) return 0;
    return clus_ok(v) ? (int)v : -EIO;
}

/* The k-th cluster of the chain at `first` (0 when the chain is shorter), bounded. */
static int clus_nth(u32 first, u32 k)
{
    if (!clus_ok(first) || k > vol.nclusters) return -EIO;
    int c = (int)first;
    while (k-- && c > 0) c = fat_next((u32)c);
    return c;
}

static int clus_alloc(void)              /* a free cluster, marked end of chain */
{
    for (u32 i = 0; i < vol.nclusters; i++) {
        u32 c = 2 + (vol.hint - 2 + i) % vol.nclusters;
        if (!fat[c]) { fat_set(c, 0xFFFF); vol.hint = c; return (int)c; }
    }
    return -ENOSPC;
}

static void clus_free_chain(u32 c)       /* frees what it can; a bad link ends it */
{
    for (u32 n = 0; clus_ok(c) && n <= vol.nclusters; n++) {
        u32 v = fat[c];
        if (!v) return;
        fat_set(c, 0);
        if (v >= 0xFFF8) return;
        c = v;
    }
}

static u32 clus_lba(u32 c) { return vol.data_lba + (c - 2) * vol.spc; }

/* ---- directory sectors: a write-through cache ---------------------------------------------- */
#define META_N 32
static struct { u32 lba, stamp; u8 valid; u8 data[512]; } meta[META_N];
static u32 meta_clock;

static u8 *meta_get(u32 lba)
{
    u32 victim = 0;
    for (u32 i = 0; i < META_N; i++) {
        if (meta[i].valid && meta[i].lba == lba) { meta[i].stamp = ++meta_clock; return meta[i].data; }
        if (!meta[i].valid || meta[i].stamp < meta[victim].stamp) victim = i;
    }
    meta[victim].valid = 0;
    if (disk_read(lba, 1, meta[victim].data)) return NULL;
    meta[victim].valid = 1;
    meta[victim].lba = lba;
    meta[victim].stamp = ++meta_clock;
    return meta[victim].data;
}

static int meta_put(u32 lba)             /* the cached sector (just changed) to the disk */
{
    for (u32 i = 0; i < META_N; i++)
        if (meta[i].valid && meta[i].lba == lba) return disk_write(lba, 1, meta[i].data);
    return -EIO;
}

static void meta_forget(u32 lba, u32 n)  /* the disk changed under these sectors */
{
    for (u32 i = 0; i < META_N; i++)
        if (meta[i].valid && meta[i].lba >= lba && meta[i].lba < lba + n) meta[i].valid = 0;
}

static int data_write(u32 lba, u32 n, const void *p) { meta_forget(lba, n); return disk_write(lba, n, p); }

/* ---- directories ----------------------------------------------------------------------------- */
struct diter { u32 dclus, k; int cur; };   /* where a sequential scan is in the chain */

/* The sector and offset of entry idx; 1 past the end, -EIO on a bad chain. */
static int dir_slot(struct diter *it, u32 idx, u32 *lba, u32 *off)
{
    if (idx >= DIR_MAX_ENTRIES) return -EIO;
    *off = (idx % 16) * 32;
    if (!it->dclus) {
        if (idx >= vol.root_entries) return 1;
        *lba = vol.root_lba + idx / 16;
        return 0;
    }
    u32 epc = vol.csize / 32, k = idx / epc;
    if (!it->cur || k < it->k) { it->k = 0; it->cur = clus_ok(it->dclus) ? (int)it->dclus : -EIO; }
    while (it->k < k && it->cur > 0) { it->cur = fat_next((u32)it->cur); it->k++; }
    if (it->cur < 0) return -EIO;
    if (!it->cur) return 1;
    *lba = clus_lba((u32)it->cur) + (idx % epc) / 16;
    return 0;
}

struct dent {
    u8 raw[32];                           /* the short entry */
    u32 lba, off, idx, first;             /* where; its index; its first (long-name) entry */
    char name[256 * 3 + 1];               /* the long name, else the 8.3 name */
    char sname[13];                       /* the 8.3 name as stored */
};

static u8 lfn_sum(const u8 *raw)
{
    u8 s = 0;
    for (int i = 0; i < 11; i++) s = (u8)(((s & 1) << 7) + (s >> 1) + raw[i]);
    return s;
}

static const u8 lfn_pos[13] = {1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30};

static void short_name(const u8 *raw, char *out, int use_case)
{
    u32 n = 0;
    for (int i = 0; i < 8 && raw[i] != ' '; i++) {
        u8 c = i == 0 && raw[0] == 0x05 ? 0xE5 : raw[i];
        out[n++] = (char)(use_case && (raw[12] & 0x08) && c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    if (raw[8] != ' ') {
        out[n++] = '.';
        for (int i = 8; i < 11 && raw[i] != ' '; i++)
            out[n++] = (char)(use_case && (raw[12] & 0x10) && raw[i] >= 'A' && raw[i] <= 'Z' ? raw[i] + 32 : raw[i]);
    }
    out[n] = 0;
}

/* The next entry at or after *idx: 1 found (and *idx moves past it), 0 at the end, -EIO. */
static int dir_read(struct diter *it, u32 *idx, struct dent *d)
{
    static u16 lfn[20 * 13 + 1];
    int seq = 0;                          /* the last long-name piece seen; 0: none valid */
    u8 sum = 0;
    u32 first = 0;
    for (;; (*idx)++) {
        u32 lba, off;
        int r = dir_slot(it, *idx, &lba, &off);
        if (r) return r < 0 ? r : 0;
        u8 *s = meta_get(lba);
        if (!s) return -EIO;
        u8 *e = s + off;
        if (e[0] == 0) return 0;
        if (e[0] == 0xE5) { seq = 0; continue; }
        if ((e[11] & 0x3F) == A_LFN) {
            u32 n = e[0] & 0x1F;
            if (e[0] & 0x40) {
                if (!n || n > 20) { seq = 0; continue; }
                for (u32 i = 0; i < sizeof lfn / 2; i++) lfn[i] = 0;
                seq = (int)n; sum = e[13]; first = *idx;
            } else if (seq && (int)n == seq - 1 && e[13] == sum) {
                seq = (int)n;
            } else {
                seq = 0;
                continue;
            }
            for (int i = 0; i < 13; i++) lfn[(n - 1) * 13 + i] = e[lfn_pos[i]] | e[lfn_pos[i] + 1] << 8;
            continue;
        }
        if (e[11] & A_LABEL) { seq = 0; continue; }
        memcpy(d->raw, e, 32);
        d->lba = lba; d->off = off; d->idx = *idx;
        short_name(e, d->sname, 0);
        u32 o = 0;
        if (seq == 1 && lfn_sum(e) == sum) {
            for (u32 i = 0; i < 255 && lfn[i] && lfn[i] != 0xFFFF; i++) {   /* fits d->name */
                u32 c = lfn[i];
                if (c < 0x80) d->name[o++] = (char)c;
                else if (c < 0x800) { d->name[o++] = (char)(0xC0 | c >> 6); d->name[o++] = (char)(0x80 | (c & 0x3F)); }
                else { d->name[o++] = (char)(0xE0 | c >> 12); d->name[o++] = (char)(0x80 | (c >> 6 & 0x3F));
                       d->name[o++] = (char)(0x80 | (c & 0x3F)); }
            }
        }
        d->name[o] = 0;
        d->first = o ? first : *idx;
        if (!o) short_name(e, d->name, 1);
        (*idx)++;
        return 1;
    }
}

static int is_dot(const struct dent *d) { return d->raw[0] == '.'; }

static int dir_lookup(u32 dclus, const char *name, struct dent *d)
{
    struct diter it = {dclus, 0, 0};
    u32 idx = 0;
    int r;
    while ((r = dir_read(&it, &idx, d)) > 0)
        if (!is_dot(d) && (streq(d->name, name) || streq(d->sname, name))) return 0;
    return r < 0 ? r : -ENOENT;
}

/* ---- entries: their fields --------------------------------------------------------------------- */
static u32 de_clus(const u8 *e) { return e[26] | e[27] << 8; }
static u32 de_size(const u8 *e) { return *(const u32 *)(e + 28); }
static u16 fat_time, fat_date = 0x21;    /* 1980-01-01 until the clock says otherwise */

static void fat_stamp(u64 unix_s)        /* FAT's local time: UTC here */
{
    u32 days = (u32)udiv64(unix_s, 86400, NULL), secs = (u32)(unix_s - (u64)days * 86400);
    u32 z = days + 719468, era = z / 146097, doe = z - era * 146097;     /* civil from days */
    u32 yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    u32 y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    u32 mp = (5 * doy + 2) / 153, dd = doy - (153 * mp + 2) / 5 + 1, mm = mp < 10 ? mp + 3 : mp - 9;
    if (mm <= 2) y++;
    if (y < 1980 || y > 2107) return;
    fat_date = (u16)((y - 1980) << 9 | mm << 5 | dd);
    fat_time = (u16)((secs / 3600) << 11 | (secs / 60 % 60) << 5 | (secs % 60) / 2);
}

static u64 de_mtime(const u8 *e)         /* seconds since 1970 */
{
    u32 t = e[22] | e[23] << 8, dt = e[24] | e[25] << 8;
    u32 y = 1980 + (dt >> 9), m = dt >> 5 & 15, d = dt & 31;
    if (m < 1 || m > 12 || d < 1) return 315532800;
    y -= m <= 2;
    u32 era = y / 400, yoe = y - era * 400;
    u32 doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1, doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64 days = (u64)era * 146097 + doe - 719468;
    return days * 86400 + (t >> 11) * 3600 + (t >> 5 & 63) * 60 + (t & 31) * 2;
}

static void de_touch(u8 *e) { e[22] = (u8)fat_time; e[23] = fat_time >> 8; e[24] = (u8)fat_date; e[25] = fat_date >> 8; }

/* ---- files ----------------------------------------------------------------------------------- */
/* A file: its short entry at (lba, off), read afresh each call (another fid may have grown it). */
static int file_read(u32 lba, u32 off, u64 pos, u8 *buf, u32 n)
{
    u8 *e = meta_get(lba);
    if (!e) return -EIO;
    e += off;
    u32 size = de_size(e), first = de_clus(e);
    if (pos >= size) return 0;
    if (n > size - pos) n = (u32)(size - pos);
    if (!n) return 0;
    int c = clus_nth(first, (u32)pos / vol.csize);
    u32 done = 0, in = (u32)pos % vol.csize;
    while (done < n) {
        if (c <= 0) return -EIO;                   /* the chain is shorter than the size */
        u32 k = vol.csize - in < n - done ? vol.csize - in : n - done;
        if (in == 0 && k == vol.csize) {
            /* Whole clusters: a run of adjacent ones in one request, straight into buf. */
            u32 run = 1, first_c = (u32)c;
            int nx;
            while ((run + 1) * vol.csize <= n - done && (run + 1) * vol.spc <= BLK_MAX &&
                   (nx = fat_next((u32)c)) == c + 1) {
                c = nx;
                run++;
            }
            if (disk_read(clus_lba(first_c), run * vol.spc, buf + done)) return -EIO;
            k = run * vol.csize;
        } else {
            if (disk_read(clus_lba((u32)c), vol.spc, cbuf)) return -EIO;
            memcpy(buf + done, cbuf + in, k);
        }
        done += k;
        in = 0;
        if (done < n) c = fat_next((u32)c);
    }
    return (int)done;
}

/* A file's chain has exactly the clusters its size needs and ends there: a loop, a link out
 * of range or to a free cluster, a chain cut short or too long is -EIO (checked at open). */
static int file_check(u32 lba, u32 off)
{
    u8 *e = meta_get(lba);
    if (!e) return -EIO;
    e += off;
    u32 size = de_size(e), first = de_clus(e), need = size / vol.csize + (size % vol.csize != 0);
    if (!size) return first && !clus_ok(first) ? -EIO : 0;
    if (need > vol.nclusters || !clus_ok(first)) return -EIO;
    int c = (int)first;
    for (u32 i = 1; i < need; i++)
        if ((c = fat_next((u32)c)) <= 0) return -EIO;
    return fat_next((u32)c) == 0 ? 0 : -EIO;
}

/* Write n bytes (zeros when buf is NULL) at pos, growing the chain; the entry is updated. */
static int file_write(u32 lba, u32 off, u64 pos, const u8 *buf, u32 n)
{
    u8 *e = meta_get(lba);
    if (!e) return -EIO;
    e += off;
    u32 size = de_size(e), first = de_clus(e);
    if (pos + n > 0xFFFFFFFFull) return -EFBIG;
    if (pos > size) {                             /* the gap reads as zeros */
        int r = file_write(lba, off, size, NULL, (u32)pos - size);
        if (r < 0) return r;
        if (!(e = meta_get(lba))) return -EIO;
        e += off;
        size = de_size(e); first = de_clus(e);
    }
    if (!n) return 0;
    int fresh = 0;
    if (!first) {
        int a = clus_alloc();
        if (a < 0) return a;
        first = (u32)a;
        fresh = 1;
        if (!(e = meta_get(lba))) return -EIO;
        e += off;
        e[26] = (u8)first; e[27] = first >> 8;
    }
    u32 k = (u32)pos / vol.csize, in = (u32)pos % vol.csize, done = 0;
    int c = (int)first;
    for (u32 i = 0; i < k; i++) {                 /* to the first cluster written, growing */
        int nx = fat_next((u32)c);
        if (nx < 0) return -EIO;
        if (!nx) {
            if ((nx = clus_alloc()) < 0) return nx;
            fat_set((u32)c, (u16)nx);
            if (data_write(clus_lba((u32)nx), vol.spc, zeros)) return -EIO;
        }
        c = nx;
    }
    int err = 0;
    while (done < n) {
        u32 m = vol.csize - in < n - done ? vol.csize - in : n - done;
        if (m < vol.csize) {                      /* part of a cluster: read, change, write */
            if (fresh) memset(cbuf, 0, vol.csize);
            else if (disk_read(clus_lba((u32)c), vol.spc, cbuf)) { err = -EIO; break; }
        }
        if (buf) memcpy(cbuf + in, buf + done, m); else memset(cbuf + in, 0, m);
        if (data_write(clus_lba((u32)c), vol.spc, cbuf)) { err = -EIO; break; }
        done += m;
        in = 0;
        if (done < n) {
            int nx = fat_next((u32)c);
            if (nx < 0) { err = -EIO; break; }
            fresh = !nx;
            if (!nx) {
                if ((nx = clus_alloc()) < 0) { err = nx; break; }
                fat_set((u32)c, (u16)nx);
            }
            c = nx;
        }
    }
    if (!(e = meta_get(lba))) return -EIO;
    e += off;
    if (pos + done > de_size(e)) *(u32 *)(e + 28) = (u32)(pos + done);
    e[11] |= A_ARCH;
    de_touch(e);
    if (meta_put(lba)) return -EIO;
    return done ? (int)done : err;
}

static int file_truncate(u32 lba, u32 off, u64 len)
{
    u8 *e = meta_get(lba);
    if (!e) return -EIO;
    e += off;
    u32 size = de_size(e), first = de_clus(e);
    if (len > 0xFFFFFFFFull) return -EFBIG;
    if (len > size) {
        int r = file_write(lba, off, size, NULL, (u32)(len - size));
        return r < 0 ? r : 0;
    }
    if (len < size && first) {
        u32 keep = ((u32)len + vol.csize - 1) / vol.csize;
        if (!keep) {
            clus_free_chain(first);
            first = 0;
        } else {
            int c = clus_nth(first, keep - 1);
            if (c <= 0) return -EIO;
            int nx = fat_next((u32)c);
            if (nx > 0) clus_free_chain((u32)nx);
            fat_set((u32)c, 0xFFFF);
        }
    }
    if (!(e = meta_get(lba))) return -EIO;
    e += off;
    e[26] = (u8)first; e[27] = first >> 8;
    *(u32 *)(e + 28) = (u32)len;
    de_touch(e);
    return meta_put(lba);
}

/* ---- making and removing entries ------------------------------------------------------------- */
static int plain83(const char *name, u8 *raw)   /* an upper-case 8.3 name: its 11 bytes */
{
    static const char ok[] = "!#$%&'()-@^_`{}~";
    memset(raw, ' ', 11);
    u32 n = 0, i = 0, dot = 0;
    if (name[0] == '.') return 0;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (c == '.') { if (dot || !n) return 0; dot = 1; i = 8; n = 0; continue; }
        int good = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        for (const char *q = ok; *q && !good; q++) good = *q == c;
        if (!good || n == (dot ? 3u : 8u)) return 0;
        raw[i++] = (u8)c;
        n++;
    }
    if (dot && !n) return 0;
    if (raw[0] == 0xE5) raw[0] = 0x05;
    return 1;
}

/* UTF-8 to UCS-2; -EINVAL for what FAT cannot hold. */
static int to_ucs2(const char *s, u16 *out)
{
    u32 n = 0;
    for (const u8 *p = (const u8 *)s; *p; ) {
        u32 c = *p++;
        if (c >= 0x80) {
            if ((c & 0xE0) == 0xC0 && (p[0] & 0xC0) == 0x80) { c = (c & 0x1F) << 6 | (p[0] & 0x3F); p++; }
            else if ((c & 0xF0) == 0xE0 && (p[0] & 0xC0) == 0x80 && (p[1] & 0xC0) == 0x80) {
                c = (c & 0x0F) << 12 | (p[0] & 0x3F) << 6 | (p[1] & 0x3F); p += 2;
            } else return -EINVAL;
        } else if (c < 0x20 || c == '"' || c == '*' || c == '/' || c == ':' || c == '<' || c == '>' ||
                   c == '?' || c == '\\' || c == '|') return -EINVAL;
        if (n == 255) return -ENAMETOOLONG;
        out[n++] = (u16)c;
    }
    if (!n || (n == 1 && out[0] == '.') || (n == 2 && out[0] == '.' && out[1] == '.')) return -EINVAL;
    return (int)n;
}

/* "BASIS~N.EXT": the smallest N not used in dclus, found in one pass over the directory
 * (each short name of the form PREFIX~DIGITS with this basis and extension marks its N; the
 * basis never holds a '~' itself, so the first '~' is the separator). */
#define ALIAS_MAX 65536u                  /* a directory holds at most this many entries */
static u8 alias_used[ALIAS_MAX / 8];

static int alias(u32 dclus, const u16 *u, u32 n, u8 *raw)
{
    u8 base[8], ext[3];
    u32 nb = 0, ne = 0, last_dot = n;
    for (u32 i = 0; i < n; i++) if (u[i] == '.') last_dot = i;
    for (u32 i = 0; i < n && i < last_dot && nb < 8; i++) {
        u32 c = u[i];
        if (c == ' ' || c == '.') continue;
        base[nb++] = c >= 'a' && c <= 'z' ? (u8)(c - 32) : c < 0x80 && c != '+' && c != ',' &&
                     c != ';' && c != '=' && c != '[' && c != ']' && c != '~' ? (u8)c : '_';
    }
    for (u32 i = last_dot + 1; i < n && ne < 3; i++) {
        u32 c = u[i];
        if (c == ' ') continue;
        ext[ne++] = c >= 'a' && c <= 'z' ? (u8)(c - 32) : c < 0x80 && c != '+' && c != ',' &&
                    c != ';' && c != '=' && c != '[' && c != ']' && c != '.' ? (u8)c : '_';
    }
    if (!nb) base[nb++] = '_';
    u8 want_ext[3] = {' ', ' ', ' '};
    memcpy(want_ext, ext, ne);
    memset(alias_used, 0, sizeof alias_used);
    struct diter it = {dclus, 0, 0};
    static struct dent d;
    u32 idx = 0;
    int r;
    while ((r = dir_read(&it, &idx, &d)) > 0) {
        u32 t = 0;
        while (t < 8 && d.raw[t] != '~') t++;
        if (t == 0 || t == 8 || memcmp(d.raw + 8, want_ext, 3) || t > nb || memcmp(d.raw, base, t)) continue;
        u32 num = 0, k = t + 1;
        while (k < 8 && d.raw[k] >= '0' && d.raw[k] <= '9' && num < ALIAS_MAX) num = num * 10 + (d.raw[k++] - '0');
        if (k == t + 1 || (k < 8 && d.raw[k] != ' ') || num >= ALIAS_MAX) continue;
        alias_used[num / 8] |= (u8)(1 << (num % 8));
    }
    if (r < 0) return r;
    for (u32 num = 1; num < ALIAS_MAX; num++) {
        if (alias_used[num / 8] & (1 << (num % 8))) continue;
        u32 nd = 0;
        char digits[8];
        for (u32 v = num; v; v /= 10) digits[nd++] = (char)('0' + v % 10);
        u32 keep = nb < 7 - nd ? nb : 7 - nd;
        memset(raw, ' ', 11);
        memcpy(raw, base, keep);
        raw[keep] = '~';
        for (u32 i = 0; i < nd; i++) raw[keep + 1 + i] = (u8)digits[nd - 1 - i];
        memcpy(raw + 8, ext, ne);
        return 0;
    }
    return -EEXIST;
}

/* Add `name` to the directory at dclus: long-name entries when it is not a plain 8.3 name;
 * (*lba, *off) say where its short entry went. The directory grows by a cluster when full. */
static int dir_add(u32 dclus, const char *name, u8 attr, u32 first, u32 size, u32 *lba_out, u32 *off_out)
{
    static u16 u[256];
    u8 raw[11];
    int n = 0, need = 1;
    if (!plain83(name, raw)) {
        if ((n = to_ucs2(name, u)) < 0) return n;
        int r = alias(dclus, u, (u32)n, raw);
        if (r < 0) return r;
        need += (n + 12) / 13;
    }
    struct diter it = {dclus, 0, 0};
    u32 run = 0, start = 0, idx = 0, lba, off;
    for (;; idx++) {
        int r = dir_slot(&it, idx, &lba, &off);
        if (r < 0) return r;
        if (r == 1) {                               /* past the end: one more cluster */
            if (!dclus) return -ENOSPC;
            int c = clus_alloc();
            if (c < 0) return c;
            int last = clus_nth(dclus, idx / (vol.csize / 32) - 1);
            if (last <= 0) { fat_set((u32)c, 0); return -EIO; }
            fat_set((u32)last, (u16)c);
            if (data_write(clus_lba((u32)c), vol.spc, zeros)) return -EIO;
            it.cur = 0;
            idx--;
            continue;
        }
        u8 *s = meta_get(lba);
        if (!s) return -EIO;
        if (s[off] == 0 || s[off] == 0xE5) {
            if (!run++) start = idx;
            if ((int)run == need) break;
        } else {
            run = 0;
        }
    }
    u8 sum = 0;
    {
        u8 tmp[11];
        memcpy(tmp, raw, 11);
        sum = lfn_sum(tmp);
    }
    it.cur = 0;
    for (int i = 0; i < need; i++) {
        int r = dir_slot(&it, start + (u32)i, &lba, &off);
        if (r) return -EIO;
        u8 *s = meta_get(lba);
        if (!s) return -EIO;
        u8 *e = s + off;
        memset(e, 0, 32);
        if (i < need - 1) {                          /* long-name pieces, last piece first */
            u32 seq = (u32)(need - 1 - i);
            e[0] = (u8)(seq | (i == 0 ? 0x40 : 0));
            e[11] = A_LFN;
            e[13] = sum;
            for (u32 k = 0; k < 13; k++) {
                u32 at = (seq - 1) * 13 + k;
                u16 c = at < (u32)n ? u[at] : at == (u32)n ? 0 : 0xFFFF;
                e[lfn_pos[k]] = (u8)c;
                e[lfn_pos[k] + 1] = c >> 8;
            }
        } else {
            memcpy(e, raw, 11);
            e[11] = attr;
            de_touch(e);
            e[16] = e[24]; e[17] = e[25];            /* access date */
            e[26] = (u8)first; e[27] = first >> 8;
            *(u32 *)(e + 28) = size;
            *lba_out = lba; *off_out = off;
        }
        if (meta_put(lba)) return -EIO;
    }
    return 0;
}

static int dir_remove(u32 dclus, const struct dent *d)   /* its entries, not its clusters */
{
    struct diter it = {dclus, 0, 0};
    for (u32 i = d->first; i <= d->idx; i++) {
        u32 lba, off;
        if (dir_slot(&it, i, &lba, &off)) return -EIO;
        u8 *s = meta_get(lba);
        if (!s) return -EIO;
        s[off] = 0xE5;
        if (meta_put(lba)) return -EIO;
    }
    return 0;
}

static int dir_empty(u32 dclus)
{
    struct diter it = {dclus, 0, 0};
    static struct dent d;
    u32 idx = 0;
    int r;
    while ((r = dir_read(&it, &idx, &d)) > 0)
        if (!is_dot(&d)) return 0;
    return r < 0 ? r : 1;
}

/* Is the directory at dclus `top` or inside it? Follows ".." up to the root (bounded). */
static int dir_inside(u32 dclus, u32 top)
{
    for (u32 hops = 0; hops < 4096; hops++) {
        if (dclus == top) return 1;
        if (!dclus) return 0;
        if (!clus_ok(dclus)) return -EIO;
        u8 *s = meta_get(clus_lba(dclus));
        if (!s) return -EIO;
        if (s[32] != '.' || s[33] != '.') return -EIO;
        dclus = de_clus(s + 32);
    }
    return -EIO;
}

static int fat_mkdir(u32 dclus, const char *name, u32 *lba, u32 *off, u32 *newclus)
{
    int c = clus_alloc();
    if (c < 0) return c;
    memset(cbuf, 0, vol.csize);
    for (int i = 0; i < 2; i++) {
        u8 *e = cbuf + 32 * i;
        memset(e, ' ', 11);
        e[0] = '.';
        if (i) e[1] = '.';
        e[11] = A_DIR;
        de_touch(e);
        u32 cl = i ? dclus : (u32)c;
        e[26] = (u8)cl; e[27] = cl >> 8;
    }
    if (data_write(clus_lba((u32)c), vol.spc, cbuf)) { fat_set((u32)c, 0); return -EIO; }
    int r = dir_add(dclus, name, A_DIR, (u32)c, 0, lba, off);
    if (r < 0) { fat_set((u32)c, 0); return r; }
    *newclus = (u32)c;
    return 0;
}
