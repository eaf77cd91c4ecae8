/* hive.c (UVM_FULL, included by uvm.c): the registry inside the guest.
 *
 * The utility VM sends its registry calls' messages (docs/registry.md "The message format")
 * to the host; the full VM hands them to hive_serve(), which answers them from a registry
 * held in memory: loaded from /.hv/registry.hiv at boot, written back (the whole file) at
 * power-off if anything changed. Semantics as hv/container/registry_calls.py: predefined root
 * handles, handles from 1, names compared case-insensitively (ASCII), enumeration in folded
 * order, ESTALE for a handle whose key was deleted, ENODATA past the last item.
 *
 * Names and data live in one arena of blocks {length, owner}; a full arena is compacted in
 * one pass (each block knows its owner). A hive that does not parse makes every registry
 * call -EIO. */

enum { ENODATA = 61, ESTALE = 116, E2BIG = 7, EDQUOT = 122 };
#define HK_KEYS 4096
#define HK_VALS 8192
#define HK_HANDLES 1024
#define HK_ARENA (3u << 20)
#define HK_MAX_DATA (1u << 20)
#define HKCU 0x80000001u
#define HKLM 0x80000002u

static struct hkey { u32 name, nlen, gen; int parent; u8 used; } hkeys[HK_KEYS];
static struct hval { u32 name, nlen, data, size, type; int key; u8 used; } hvals[HK_VALS];
static struct { int key; u32 gen; u8 used; } hhandles[HK_HANDLES + 1];
static u8 arena[HK_ARENA] __attribute__((aligned(8)));
static u32 arena_top, hive_dirty, hive_bad, hive_data;
static u32 hv_dir;                       /* /.hv's first cluster (full.c finds it) */
static u32 hive_gen;                     /* bumped by every change (enumeration cache) */
static void changed(void) { hive_dirty = 1; hive_gen++; }
enum { OWN_KEY = 1, OWN_VNAME, OWN_VDATA };

static u32 *owner_ref(u32 owner)          /* where the owner keeps a block's offset */
{
    u32 i = owner & 0xFFFFFF;
    switch (owner >> 24) {
    case OWN_KEY: return i < HK_KEYS && hkeys[i].used ? &hkeys[i].name : NULL;
    case OWN_VNAME: return i < HK_VALS && hvals[i].used ? &hvals[i].name : NULL;
    case OWN_VDATA: return i < HK_VALS && hvals[i].used ? &hvals[i].data : NULL;
    }
    return NULL;
}

static void arena_compact(void)
{
    u32 out = 0;
    for (u32 at = 0; at < arena_top; ) {
        u32 len = *(u32 *)(arena + at), owner = *(u32 *)(arena + at + 4), span = (8 + len + 7) & ~7u;
        u32 *ref = owner_ref(owner);
        if (ref && *ref == at + 8) {               /* live: slide it down */
            if (out != at) memcpy(arena + out, arena + at, span);   /* forward copy, out < at */
            *ref = out + 8;
            out += span;
        }
        at += span;
    }
    arena_top = out;
}

static int arena_put(const void *p, u32 len, u32 owner, u32 *off)
{
    u32 span = (8 + len + 7) & ~7u;
    if (len > HK_ARENA) return -EDQUOT;
    if (arena_top + span > HK_ARENA) arena_compact();
    if (arena_top + span > HK_ARENA) return -EDQUOT;     /* the registry is full */
    *(u32 *)(arena + arena_top) = len;
    *(u32 *)(arena + arena_top + 4) = owner;
    memcpy(arena + arena_top + 8, p, len);
    *off = arena_top + 8;
    arena_top += span;
    return 0;
}

static u8 fold8(u8 c) { return c >= 'a' && c <= 'z' ? c - 32 : c; }

static int name_cmp(const u8 *a, u32 an, const u8 *b, u32 bn)   /* folded order */
{
    for (u32 i = 0; i < an && i < bn; i++)
        if (fold8(a[i]) != fold8(b[i])) return fold8(a[i]) - fold8(b[i]);
    return an < bn ? -1 : an > bn;
}

/* A name from a message: its characters counted, control characters and bad UTF-8 refused. */
static int name_ok(const u8 *s, u32 n, u32 max_chars)
{
    u32 chars = 0;
    for (u32 i = 0; i < n; ) {
        u8 c = s[i];
        u32 k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!k || i + k > n || c < 0x20) return -EINVAL;
        for (u32 j = 1; j < k; j++) if ((s[i + j] & 0xC0) != 0x80) return -EINVAL;
        i += k;
        chars += k == 4 ? 2 : 1;                    /* UTF-16 units, as Windows counts */
    }
    return chars > max_chars ? -ENAMETOOLONG : 0;
}

static int key_child(int parent, const u8 *name, u32 n)
{
    for (int i = 2; i < HK_KEYS; i++)
        if (hkeys[i].used && hkeys[i].parent == parent &&
            !name_cmp(arena + hkeys[i].name, hkeys[i].nlen, name, n)) return i;
    return -ENOENT;
}

static int key_new(int parent, const u8 *name, u32 n)
{
    for (int i = 2; i < HK_KEYS; i++)
        if (!hkeys[i].used) {
            hkeys[i].used = 1;
            hkeys[i].parent = parent;
            hkeys[i].nlen = n;
            hkeys[i].gen++;
            if (arena_put(name, n, OWN_KEY << 24 | (u32)i, &hkeys[i].name) < 0) { hkeys[i].used = 0; return -EDQUOT; }
            return i;
        }
    return -EDQUOT;
}

static int key_depth(int k) { int d = 0; while (k >= 2 && d <= 600) k = hkeys[k].parent, d++; return d; }

/* Walk `path` (components separated by '\') below key k; create what is missing when asked.
 * The whole path is checked first (as registry.py does), so a bad name changes nothing.
 * *created says whether the last key was made. */
static int key_walk(int k, const u8 *path, u32 n, int create, int *created)
{
    if (created) *created = 0;
    if (!n) return k;
    u32 depth = (u32)key_depth(k), units = 4;     /* "HKLM" */
    for (int c = k; c >= 2; c = hkeys[c].parent) units += hkeys[c].nlen + 1;
    for (u32 i = 0; i <= n; ) {
        u32 j = i;
        while (j < n && path[j] != '\\') j++;
        int r = name_ok(path + i, j - i, 255);
        if (r < 0) return r;
        if (j == i) return -EINVAL;                 /* an empty component */
        units += j - i + 1;
        if (++depth > 512 || units > 32767) return -ENAMETOOLONG;
        i = j + 1;
    }
    for (u32 i = 0; i <= n; ) {
        u32 j = i;
        while (j < n && path[j] != '\\') j++;
        int c = key_child(k, path + i, j - i);
        if (created) *created = 0;
        if (c < 0 && create) {
            if ((c = key_new(k, path + i, j - i)) < 0) return c;
            changed();
            if (created) *created = 1;
        }
        if (c < 0) return c;
        k = c;
        i = j + 1;
    }
    return k;
}

static int handle_key(u32 h)            /* the key behind a handle, -EBADF, -ESTALE */
{
    if (h == HKLM) return 0;
    if (h == HKCU) return 1;
    if (h == 0 || h > HK_HANDLES || !hhandles[h].used) return -EBADF;
    int k = hhandles[h].key;
    if (!hkeys[k].used || hkeys[k].gen != hhandles[h].gen) return -ESTALE;
    return k;
}

static int handle_new(int k)
{
    for (u32 h = 1; h <= HK_HANDLES; h++)
        if (!hhandles[h].used) {
            hhandles[h].used = 1; hhandles[h].key = k; hhandles[h].gen = hkeys[k].gen;
            return (int)h;
        }
    return -EMFILE;
}

static int val_find(int k, const u8 *name, u32 n)
{
    for (int i = 0; i < HK_VALS; i++)
        if (hvals[i].used && hvals[i].key == k && !name_cmp(arena + hvals[i].name, hvals[i].nlen, name, n))
            return i;
    return -ENOENT;
}

static void val_drop(int v) { hive_data -= hvals[v].size; hvals[v].used = 0; changed(); }

static int val_set(int k, const u8 *name, u32 n, u32 type, const u8 *data, u32 size)
{
    int v = val_find(k, name, n);
    u32 old = v >= 0 ? hvals[v].size : 0;
    if (size > HK_MAX_DATA) return -E2BIG;
    if (hive_data - old + size > HK_MAX_DATA) return -EDQUOT;
    if (v < 0) {
        for (v = 0; v < HK_VALS && hvals[v].used; v++)
            ;
        if (v == HK_VALS) return -EDQUOT;
        hvals[v].used = 1;
        hvals[v].key = k;
        hvals[v].nlen = n;
        hvals[v].size = 0;
        hvals[v].data = 0;
        if (arena_put(name, n, OWN_VNAME << 24 | (u32)v, &hvals[v].name) < 0) { hvals[v].used = 0; return -EDQUOT; }
    }
    u32 off;
    if (arena_put(data, size, OWN_VDATA << 24 | (u32)v, &off) < 0) {
        if (!hvals[v].data) hvals[v].used = 0;            /* a value made just now: gone again */
        return -EDQUOT;
    }
    hive_data += size - hvals[v].size;
    hvals[v].data = off;
    hvals[v].size = size;
    hvals[v].type = type;
    changed();
    return 0;
}

static int is_below(int k, int top)     /* k is top or under it */
{
    for (int d = 0; k >= 0 && d <= 600; d++, k = k >= 2 ? hkeys[k].parent : -1)
        if (k == top) return 1;
    return 0;
}

static void key_clear(int k, int keep)  /* everything below k (and k itself unless keep) */
{
    for (int i = 0; i < HK_VALS; i++)
        if (hvals[i].used && is_below(hvals[i].key, k)) val_drop(i);
    for (int i = 2; i < HK_KEYS; i++)
        if (hkeys[i].used && i != k && is_below(i, k)) { hkeys[i].used = 0; hkeys[i].gen++; }
    if (!keep && k >= 2) { hkeys[k].used = 0; hkeys[k].gen++; }
    changed();
}

/* The index-th of k's subkeys (values) in folded order. The sorted list of one key's subkeys
 * or values is kept until the registry changes, so enumerating n items costs one sort, not n. */
static int enum_list[HK_VALS], enum_n, enum_key = -1, enum_values;
static u32 enum_gen = ~0u;

static int enum_before(int a, int b)      /* folded name order of two list items */
{
    if (enum_values)
        return name_cmp(arena + hvals[a].name, hvals[a].nlen, arena + hvals[b].name, hvals[b].nlen) < 0;
    return name_cmp(arena + hkeys[a].name, hkeys[a].nlen, arena + hkeys[b].name, hkeys[b].nlen) < 0;
}

static int nth_sorted(int k, u32 index, int values)
{
    if (enum_key != k || enum_values != values || enum_gen != hive_gen) {
        enum_n = 0;
        enum_key = k; enum_values = values; enum_gen = hive_gen;
        if (values) {
            for (int i = 0; i < HK_VALS; i++) if (hvals[i].used && hvals[i].key == k) enum_list[enum_n++] = i;
        } else {
            for (int i = 2; i < HK_KEYS; i++) if (hkeys[i].used && hkeys[i].parent == k) enum_list[enum_n++] = i;
        }
        for (int gap = enum_n / 2; gap > 0; gap /= 2)          /* Shell sort */
            for (int i = gap; i < enum_n; i++) {
                int t = enum_list[i], j = i;
                for (; j >= gap && enum_before(t, enum_list[j - gap]); j -= gap) enum_list[j] = enum_list[j - gap];
                enum_list[j] = t;
            }
    }
    return index < (u32)enum_n ? enum_list[index] : -ENODATA;
}

/* ---- the hive file ------------------------------------------------------------------------- */
static const u8 HIVE_MAGIC[8] = {'h', 'v', 'h', 'i', 'v', 'e', '1', 0};
static u8 hwin[65536];
static u32 hwin_at, hwin_len, hpos, hfile_lba, hfile_off, hfile_size;
static int hive_file(int make);

static int hin(void *dst, u32 n)        /* the next n bytes of the hive file */
{
    u8 *d = dst;
    while (n) {
        if (hpos < hwin_at || hpos >= hwin_at + hwin_len) {
            if (hpos >= hfile_size) return -EIO;
            int r = file_read(hfile_lba, hfile_off, hpos, hwin, sizeof hwin);
            if (r <= 0) return -EIO;
            hwin_at = hpos; hwin_len = (u32)r;
        }
        u32 k = hwin_at + hwin_len - hpos < n ? hwin_at + hwin_len - hpos : n;
        memcpy(d, hwin + (hpos - hwin_at), k);
        d += k; hpos += k; n -= k;
    }
    return 0;
}

static void hive_reset(void)
{
    memset(hkeys, 0, sizeof hkeys);
    memset(hvals, 0, sizeof hvals);
    arena_top = hive_data = 0;
    hkeys[0].used = hkeys[1].used = 1;
    hkeys[0].parent = hkeys[1].parent = -1;
    arena_put("HKEY_LOCAL_MACHINE", 18, OWN_KEY << 24 | 0, &hkeys[0].name);
    hkeys[0].nlen = 18;
    arena_put("HKEY_CURRENT_USER", 17, OWN_KEY << 24 | 1, &hkeys[1].name);
    hkeys[1].nlen = 17;
}

static u8 hname[65536 + 16];

static int hive_parse(void)
{
    u8 head[12];
    u32 count;
    if (hin(head, 12) || memcmp(head, HIVE_MAGIC, 8)) return -EIO;
    memcpy(&count, head + 8, 4);
    int key = -1;
    for (u32 i = 0; i < count; i++) {
        u8 kind;
        u16 n;
        if (hin(&kind, 1) || hin(&n, 2) || hin(hname, n)) return -EIO;
        if (kind == 1) {
            u32 j = 0;
            while (j < n && hname[j] != '\\') j++;
            int root = !name_cmp(hname, j, (const u8 *)"HKEY_LOCAL_MACHINE", 18) ? 0 :
                       !name_cmp(hname, j, (const u8 *)"HKEY_CURRENT_USER", 17) ? 1 : -1;
            if (root < 0) return -EIO;
            key = j < n ? key_walk(root, hname + j + 1, n - j - 1, 1, NULL) : root;
            if (key < 0) return -EIO;
        } else if (kind == 2) {
            u32 type, size;
            if (key < 0 || name_ok(hname, n, 16383) || hin(&type, 4) || hin(&size, 4)) return -EIO;
            if (size > HK_MAX_DATA || hfile_size - hpos < size) return -EIO;
            static u8 vname[65536];
            memcpy(vname, hname, n);
            if (val_set(key, vname, n, type, NULL, 0) < 0) return -EIO;   /* then the data, in place */
            int v = val_find(key, vname, n);
            if (size > HK_ARENA - arena_top - 8) arena_compact();
            if (size > HK_ARENA - arena_top - 8) return -EIO;
            *(u32 *)(arena + arena_top) = size;
            *(u32 *)(arena + arena_top + 4) = OWN_VDATA << 24 | (u32)v;
            if (hin(arena + arena_top + 8, size)) return -EIO;
            hvals[v].data = arena_top + 8;
            hvals[v].size = size;
            hvals[v].type = type;
            hive_data += size;
            if (hive_data > HK_MAX_DATA) return -EIO;
            arena_top += (8 + size + 7) & ~7u;
        } else {
            return -EIO;
        }
    }
    return hpos == hfile_size ? 0 : -EIO;
}

static int hive_load(void)
{
    hive_reset();
    int r = hive_file(0);
    if (r == -ENOENT) return 0;               /* no hive: an empty registry */
    if (r < 0 || hive_parse() < 0) {
        hive_reset();
        hive_bad = 1;
        return -EIO;
    }
    hive_dirty = 0;
    return 0;
}

static u32 hout_n, hout_pos;
static int hout_err;
static void hout(const void *p, u32 n)
{
    const u8 *s = p;
    while (n && !hout_err) {
        u32 k = sizeof hwin - hout_n < n ? sizeof hwin - hout_n : n;
        memcpy(hwin + hout_n, s, k);
        hout_n += k; s += k; n -= k;
        if (hout_n == sizeof hwin) {
            if (file_write(hfile_lba, hfile_off, hout_pos, hwin, hout_n) != (int)hout_n) hout_err = 1;
            hout_pos += hout_n;
            hout_n = 0;
        }
    }
}

static void hout_key(int k)             /* kind 1: the full path from the root */
{
    static int chain[600];
    int n = 0;
    for (int c = k; c >= 0 && n < 600; c = c >= 2 ? hkeys[c].parent : -1) chain[n++] = c;
    u16 len = 0;
    for (int i = n - 1; i >= 0; i--) len += (u16)(hkeys[chain[i]].nlen + (i < n - 1));
    u8 kind = 1;
    hout(&kind, 1);
    hout(&len, 2);
    for (int i = n - 1; i >= 0; i--) {
        if (i < n - 1) hout("\\", 1);
        hout(arena + hkeys[chain[i]].name, hkeys[chain[i]].nlen);
    }
    for (int v = 0; v < HK_VALS; v++) {
        if (!hvals[v].used || hvals[v].key != k) continue;
        u8 vk = 2;
        u16 nl = (u16)hvals[v].nlen;
        hout(&vk, 1); hout(&nl, 2); hout(arena + hvals[v].name, nl);
        hout(&hvals[v].type, 4); hout(&hvals[v].size, 4); hout(arena + hvals[v].data, hvals[v].size);
    }
}

static int hive_save(void)
{
    if (!hive_dirty || hive_bad) return 0;
    int r = hive_file(1);
    if (r < 0) return r;
    if ((r = file_truncate(hfile_lba, hfile_off, 0)) < 0) return r;
    u32 count = 0;
    for (int i = 0; i < HK_KEYS; i++) count += hkeys[i].used;
    for (int i = 0; i < HK_VALS; i++) count += hvals[i].used;
    hout_n = hout_pos = 0;
    hout_err = 0;
    hout(HIVE_MAGIC, 8);
    hout(&count, 4);
    /* The two roots first, then each root's subkeys in pre-order (a parent before its
     * children; depth-first with an explicit stack), as the host writes them. */
    static int stack[HK_KEYS];
    hout_key(0);
    hout_key(1);
    for (int root = 0; root < 2; root++) {
        int sp = 0;
        for (int i = HK_KEYS - 1; i >= 2; i--)
            if (hkeys[i].used && hkeys[i].parent == root) stack[sp++] = i;
        while (sp) {
            int k = stack[--sp];
            hout_key(k);
            for (int i = HK_KEYS - 1; i >= 2; i--)
                if (hkeys[i].used && hkeys[i].parent == k && sp < HK_KEYS) stack[sp++] = i;
        }
    }
    if (hout_n && file_write(hfile_lba, hfile_off, hout_pos, hwin, hout_n) != (int)hout_n) hout_err = 1;
    return hout_err ? -EIO : 0;
}

static int hive_file(int make)          /* /.hv/registry.hiv's entry (made when asked) */
{
    static struct dent d;
    int r = dir_lookup(hv_dir, "registry.hiv", &d);
    if (r == 0) {
        if (d.raw[11] & A_DIR) return -EIO;
        hfile_lba = d.lba; hfile_off = d.off; hfile_size = de_size(d.raw);
        hpos = hwin_at = hwin_len = 0;
        return 0;
    }
    if (r != -ENOENT || !make) return r;
    r = dir_add(hv_dir, "registry.hiv", A_ARCH, 0, 0, &hfile_lba, &hfile_off);
    hfile_size = 0;
    return r;
}

/* ---- the messages --------------------------------------------------------------------------- */
static const u8 *hm; static u32 hmlen, hmpos; static int hmbad;
static u32 h32(void) { if (hmpos + 4 > hmlen) { hmbad = 1; return 0; } u32 v; memcpy(&v, hm + hmpos, 4); hmpos += 4; return v; }
static const u8 *hstr(u32 *n)
{
    *n = h32();
    if (hmbad || *n > hmlen - hmpos || *n >= 65536) { hmbad = 1; return NULL; }
    const u8 *p = hm + hmpos;
    hmpos += *n;
    return p;
}

static int hive_serve(const u8 *t, u32 tl, u8 *rbuf, u32 rmax)
{
    hm = t; hmlen = tl; hmpos = 0; hmbad = 0;
    u32 op = h32(), tag = h32(), n = 0, extra = 0;
    int r;
    u8 *out = rbuf + 12;
    if (hmbad) { op = tag = 0; r = -EINVAL; goto reply; }
    if (hive_bad) { r = -EIO; goto reply; }
    u32 h = h32();
    const u8 *s;
    int k;
    switch (op) {
    case 0x1000: case 0x1001: {                   /* OPEN_KEY, CREATE_KEY */
        s = hstr(&n);
        if (hmbad) break;
        if ((k = handle_key(h)) < 0) { r = k; goto reply; }
        int created = 0, c = key_walk(k, s, n, op == 0x1001, &created);
        if (c < 0) { r = c; goto reply; }
        if ((r = handle_new(c)) < 0) goto reply;
        if (op == 0x1001) { u32 disp = created ? 1 : 2; memcpy(out, &disp, 4); extra = 4; }
        goto reply;
    }
    case 0x1002:                                  /* CLOSE_KEY */
        if (h == HKLM || h == HKCU) { r = 0; goto reply; }
        if (h == 0 || h > HK_HANDLES || !hhandles[h].used) { r = -EBADF; goto reply; }
        hhandles[h].used = 0;
        r = 0;
        goto reply;
    case 0x1003: {                                /* SET_VALUE */
        s = hstr(&n);
        u32 type = h32(), size;
        const u8 *data = hstr(&size);
        if (hmbad) { if (size > HK_MAX_DATA && size <= hmlen) { r = -E2BIG; goto reply; } break; }
        if ((k = handle_key(h)) < 0) { r = k; goto reply; }
        if ((r = name_ok(s, n, 16383)) < 0) goto reply;
        r = val_set(k, s, n, type, data, size);
        goto reply;
    }
    case 0x1004: {                                /* QUERY_VALUE */
        s = hstr(&n);
        u32 cap = h32();
        if (hmbad) break;
        if ((k = handle_key(h)) < 0) { r = k; goto reply; }
        if ((r = name_ok(s, n, 16383)) < 0) goto reply;
        int v = val_find(k, s, n);
        if (v < 0) { r = v; goto reply; }
        u32 size = hvals[v].size;
        memcpy(out, &hvals[v].type, 4);
        memcpy(out + 4, &size, 4);
        if (size > cap || 12 + size > rmax - 12) {
            u32 zero = 0;
            memcpy(out + 8, &zero, 4);
            extra = 12;
            r = -EOVERFLOW;
            goto reply;
        }
        memcpy(out + 8, &size, 4);
        memcpy(out + 12, arena + hvals[v].data, size);
        extra = 12 + size;
        r = 0;
        goto reply;
    }
    case 0x1005: {                                /* DELETE_VALUE */
        s = hstr(&n);
        if (hmbad) break;
        if ((k = handle_key(h)) < 0) { r = k; goto reply; }
        if ((r = name_ok(s, n, 16383)) < 0) goto reply;
        int v = val_find(k, s, n);
        if (v < 0) { r = v; goto reply; }
        val_drop(v);
        r = 0;
        goto reply;
    }
    case 0x1006: {                                /* DELETE_KEY */
        s = hstr(&n);
        u32 flags = h32();
        if (hmbad) break;
        if (flags & ~1u) { r = -EINVAL; goto reply; }
        if ((k = handle_key(h)) < 0) { r = k; goto reply; }
        int c = key_walk(k, s, n, 0, NULL);
        if (c < 0) { r = c; goto reply; }
        if (!n && (flags & 1)) { key_clear(c, 1); r = 0; goto reply; }
        if (c < 2) { r = -EACCES; goto reply; }
        if (!(flags & 1))
            for (int i = 2; i < HK_KEYS; i++)
                if (hkeys[i].used && hkeys[i].parent == c) { r = -ENOTEMPTY; goto reply; }
        key_clear(c, 0);
        r = 0;
        goto reply;
    }
    case 0x1007: case 0x1008: {                   /* ENUM_KEY, ENUM_VALUE */
        u32 index = h32();
        if (hmbad) break;
        if ((k = handle_key(h)) < 0) { r = k; goto reply; }
        int i = nth_sorted(k, index, op == 0x1008);
        if (i < 0) { r = i; goto reply; }
        u32 nl = op == 0x1008 ? hvals[i].nlen : hkeys[i].nlen;
        memcpy(out, &nl, 4);
        memcpy(out + 4, arena + (op == 0x1008 ? hvals[i].name : hkeys[i].name), nl);
        extra = 4 + nl;
        if (op == 0x1008) {
            memcpy(out + extra, &hvals[i].type, 4);
            memcpy(out + extra + 4, &hvals[i].size, 4);
            extra += 8;
        }
        r = 0;
        goto reply;
    }
    default:
        r = -ENOSYS;
        goto reply;
    }
    r = -EINVAL;                                  /* a malformed request */
reply:
    if (r < 0 && !(r == -EOVERFLOW && op == 0x1004)) extra = 0;
    memcpy(rbuf, &op, 4);
    memcpy(rbuf + 4, &tag, 4);
    memcpy(rbuf + 8, &r, 4);
    return (int)(12 + extra);
}
