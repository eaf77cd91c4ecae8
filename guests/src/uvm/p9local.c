/* p9local.c (UVM_FULL, included by uvm.c): the 9P2000.L server inside the guest.
 *
 * The utility VM sends its file calls' 9P messages to the host over virtio-9p; the full VM
 * hands the same messages to p9_serve(), which answers them from the FAT volume (fat.c).
 * One code path for the system calls, two places that answer them.
 *
 * A fid is a directory entry's place on the disk (fid 0 is the root). The root's `.hv`
 * directory (launch block, exit status, hive) is the kernel's: not listed, not reachable. */

static struct pfid { u8 used, isdir; u32 lba, off, dclus; } pfids[MAX_FIDS];
static u8 iobuf[IOMAX] __attribute__((aligned(16)));

static const u8 *qm; static u32 qlen, qpos; static int qbad;
static u8 *am; static u32 alen, amax;
static u32 q32(void) { if (qpos + 4 > qlen) { qbad = 1; return 0; } u32 v; memcpy(&v, qm + qpos, 4); qpos += 4; return v; }
static u16 q16(void) { if (qpos + 2 > qlen) { qbad = 1; return 0; } u16 v = qm[qpos] | qm[qpos + 1] << 8; qpos += 2; return v; }
static u64 q64(void) { u64 v = q32(); return v | (u64)q32() << 32; }
static int qstr(char *out, u32 max)      /* a name: no NUL, no '/' */
{
    u32 n = q16();
    if (qbad || qpos + n > qlen || n >= max) { qbad = 1; return -ENAMETOOLONG; }
    for (u32 i = 0; i < n; i++) {
        out[i] = (char)qm[qpos + i];
        if (!out[i] || out[i] == '/') return -EINVAL;
    }
    out[n] = 0;
    qpos += n;
    return (int)n;
}
static void a8(u8 v) { if (alen < amax) am[alen++] = v; }
static void a16(u16 v) { a8((u8)v); a8(v >> 8); }
static void a32(u32 v) { a16((u16)v); a16(v >> 16); }
static void a64(u64 v) { a32((u32)v); a32((u32)(v >> 32)); }

static u64 ino_of(const struct pfid *f) { return f->lba ? (u64)f->lba << 4 | f->off >> 5 : 1; }
static void aqid(const struct pfid *f) { a8(f->isdir ? 0x80 : 0); a32(0); a64(ino_of(f)); }

static struct pfid *pfid_get(u32 fid) { return fid < MAX_FIDS && pfids[fid].used ? &pfids[fid] : NULL; }

/* A directory entry as a fid; a directory's cluster checked. */
static int node_of(const struct dent *d, struct pfid *f)
{
    f->used = 1;
    f->isdir = (d->raw[11] & A_DIR) != 0;
    f->lba = d->lba;
    f->off = d->off;
    f->dclus = de_clus(d->raw);
    if (f->isdir && !clus_ok(f->dclus)) return -EIO;
    return 0;
}

static int hidden(const struct pfid *dir, const char *name) { return !dir->lba && streq(name, ".hv"); }

static int p9_lookup(const struct pfid *dir, const char *name, struct dent *d)
{
    if (!dir->isdir) return -ENOTDIR;
    if (hidden(dir, name)) return -ENOENT;
    return dir_lookup(dir->dclus, name, d);
}

static struct dent pd, pd2;
static char pname[256 * 3 + 1], pname2[256 * 3 + 1];

static int p9_getattr(const struct pfid *f)
{
    u32 size = 0;
    u64 mt = 315532800;
    if (f->lba) {
        u8 *e = meta_get(f->lba);
        if (!e) return -EIO;
        e += f->off;
        size = f->isdir ? vol.csize : de_size(e);
        mt = de_mtime(e);
    }
    a64(0x7FF); aqid(f);
    a32(f->isdir ? 040755 : 0100755); a32(0); a32(0);
    a64(f->isdir ? 2 : 1); a64(0); a64(size); a64(4096); a64(((u64)size + 511) / 512);
    for (int i = 0; i < 4; i++) { a64(mt); a64(0); }     /* atime, mtime, ctime, btime */
    a64(0); a64(0);
    return 0;
}

static int p9_readdir(struct pfid *f, u64 cookie, u32 count)
{
    if (!f->isdir) return -ENOTDIR;
    if (count > amax - alen - 4) count = amax - alen - 4;
    u32 at = alen, used = 0;
    a32(0);
    struct diter it = {f->dclus, 0, 0};
    u32 idx = cookie >= 2 ? (u32)(cookie - 2) : 0;
    for (u64 c = cookie; c < 2; c++) {                  /* "." and ".." first, as Linux */
        if (used + 24 + (u32)c + 1 > count) goto full;
        aqid(f); a64(c + 1); a8(4); a16((u16)(c + 1)); a8('.'); if (c) a8('.');
        used += 24 + (u32)c + 1;
    }
    for (;;) {
        int r = dir_read(&it, &idx, &pd);
        if (r < 0) return r;
        if (!r) break;
        if (is_dot(&pd) || hidden(f, pd.name)) continue;
        u32 n = strlen(pd.name);
        if (used + 24 + n > count) break;
        struct pfid t;
        node_of(&pd, &t);
        aqid(&t); a64((u64)idx + 2); a8(t.isdir ? 4 : 8); a16((u16)n);
        for (u32 i = 0; i < n; i++) a8((u8)pd.name[i]);
        used += 24 + n;
    }
full:
    memcpy(am + at, &used, 4);
    return 0;
}

static int p9_unlink(struct pfid *dir, const char *name, u32 flags)
{
    int r = p9_lookup(dir, name, &pd);
    if (r < 0) return r;
    int isdir = (pd.raw[11] & A_DIR) != 0;
    if (flags & AT_REMOVEDIR) {
        if (!isdir) return -ENOTDIR;
        if (!clus_ok(de_clus(pd.raw))) return -EIO;
        if ((r = dir_empty(de_clus(pd.raw))) <= 0) return r < 0 ? r : -ENOTEMPTY;
    } else if (isdir) {
        return -EISDIR;
    }
    if ((r = dir_remove(dir->dclus, &pd)) < 0) return r;
    if (de_clus(pd.raw)) clus_free_chain(de_clus(pd.raw));
    return 0;
}

static int p9_rename(struct pfid *od, const char *on, struct pfid *nd, const char *nn)
{
    int r = p9_lookup(od, on, &pd);
    if (r < 0) return r;
    if (!nd->isdir) return -ENOTDIR;
    if (hidden(nd, nn)) return -EACCES;
    int isdir = (pd.raw[11] & A_DIR) != 0;
    if (isdir && (r = dir_inside(nd->dclus, de_clus(pd.raw))) != 0)
        return r < 0 ? r : -EINVAL;                 /* into itself: a loop */
    r = dir_lookup(nd->dclus, nn, &pd2);
    if (r == 0) {
        if (pd2.lba == pd.lba && pd2.off == pd.off) return 0;        /* the same entry */
        int tdir = (pd2.raw[11] & A_DIR) != 0;
        if (tdir && !isdir) return -EISDIR;
        if (!tdir && isdir) return -ENOTDIR;
        if (tdir && (r = dir_empty(de_clus(pd2.raw))) <= 0) return r < 0 ? r : -ENOTEMPTY;
        if ((r = dir_remove(nd->dclus, &pd2)) < 0) return r;
        if (de_clus(pd2.raw)) clus_free_chain(de_clus(pd2.raw));
        if (od->dclus == nd->dclus && (r = dir_lookup(od->dclus, on, &pd)) < 0) return r;
    } else if (r != -ENOENT) {
        return r;
    }
    u32 lba, off;
    if ((r = dir_add(nd->dclus, nn, pd.raw[11], de_clus(pd.raw), de_size(pd.raw), &lba, &off)) < 0)
        return r;
    if (od->dclus == nd->dclus && (r = dir_lookup(od->dclus, on, &pd)) < 0) return r;
    if ((r = dir_remove(od->dclus, &pd)) < 0) return r;
    if (isdir && od->dclus != nd->dclus) {           /* its ".." names the new parent */
        u8 *s = meta_get(clus_lba(de_clus(pd.raw)));
        if (!s) return -EIO;
        if (s[32] == '.' && s[33] == '.') {
            s[32 + 26] = (u8)nd->dclus; s[32 + 27] = nd->dclus >> 8;
            if (meta_put(clus_lba(de_clus(pd.raw)))) return -EIO;
        }
    }
    return 0;
}

/* Answer one T-message; returns the reply's length. Reads go to the sg pieces when there
 * are any (the program's pages), else after the reply's count. */
static u32 p9_serve(const u8 *t, u32 tl, u8 *rbuf, u32 rmax, u32 nsg, const u32 *sga, const u32 *sgl)
{
    qm = t; qlen = tl; qpos = 4; qbad = 0;
    am = rbuf; amax = rmax; alen = 0;
    u32 scattered = 0;                     /* Rread's data in the sg pieces */
    u8 type = qpos < qlen ? qm[qpos++] : 0;
    u16 tag = q16();
    a32(0); a8(type + 1); a16(tag);
    int r = 0;
    struct pfid *f = NULL;
    if (type != TVERSION && type != TATTACH) {
        f = pfid_get(q32());
        if (!f && type != TCLUNK) { r = -EBADF; goto done; }
    }
    switch (type) {
    case TVERSION: {
        u32 ms = q32();
        a32(ms < MSIZE ? ms : MSIZE); a16(8);
        for (const char *s = "9P2000.L"; *s; s++) a8((u8)*s);
        break;
    }
    case TATTACH: { u32 fid = q32();
                    if (fid >= MAX_FIDS) { r = -EBADF; break; }
                    memset(&pfids[fid], 0, sizeof pfids[fid]);
                    pfids[fid].used = pfids[fid].isdir = 1; aqid(&pfids[fid]); break; }
    case TCLUNK: if (f) f->used = 0; break;
    case TWALK: {
        u32 nf = q32(), n = q16();
        if (nf >= MAX_FIDS || n > 16) { r = -EINVAL; break; }
        struct pfid cur = *f;
        u32 at = alen, done = 0;
        a16(0);
        for (; done < n; done++) {
            if ((r = qstr(pname, sizeof pname)) < 0) break;
            if ((r = p9_lookup(&cur, pname, &pd)) < 0) break;
            if ((r = node_of(&pd, &cur)) < 0) break;
            aqid(&cur);
        }
        /* The first name failed, or a later one for another reason than its absence:
         * Rlerror; else a short walk (the names that exist). */
        if ((done == 0 && n) || (r < 0 && r != -ENOENT)) break;
        r = 0;
        am[at] = (u8)done; am[at + 1] = 0;
        if (done == n) pfids[nf] = cur;
        break;
    }
    case TLOPEN: {
        u32 flags = q32();
        if (f->isdir && (flags & O_ACCMODE)) { r = -EISDIR; break; }
        if (!f->isdir && (r = file_check(f->lba, f->off)) < 0) break;
        if (!f->isdir && (flags & O_DIRECTORY)) { r = -ENOTDIR; break; }
        if (!f->isdir && (flags & O_TRUNC) && (flags & O_ACCMODE) && (r = file_truncate(f->lba, f->off, 0)) < 0)
            break;
        aqid(f); a32(0);
        break;
    }
    case TLCREATE: {
        if ((r = qstr(pname, sizeof pname)) < 0) break;
        if (!f->isdir) { r = -ENOTDIR; break; }
        if (hidden(f, pname)) { r = -EACCES; break; }
        if ((r = dir_lookup(f->dclus, pname, &pd)) == 0) { r = -EEXIST; break; }
        if (r != -ENOENT) break;
        u32 lba, off;
        if ((r = dir_add(f->dclus, pname, A_ARCH, 0, 0, &lba, &off)) < 0) break;
        f->isdir = 0; f->lba = lba; f->off = off; f->dclus = 0;
        aqid(f); a32(0);
        break;
    }
    case TMKDIR: {
        if ((r = qstr(pname, sizeof pname)) < 0) break;
        if (!f->isdir) { r = -ENOTDIR; break; }
        if (hidden(f, pname)) { r = -EEXIST; break; }
        if ((r = dir_lookup(f->dclus, pname, &pd)) == 0) { r = -EEXIST; break; }
        if (r != -ENOENT) break;
        struct pfid t = {1, 1, 0, 0, 0};
        if ((r = fat_mkdir(f->dclus, pname, &t.lba, &t.off, &t.dclus)) < 0) break;
        aqid(&t);
        break;
    }
    case TGETATTR: r = p9_getattr(f); break;
    case TSETATTR: {
        u32 valid = q32(); q32(); q32(); q32();
        u64 size = q64();
        if (valid & 8) {
            if (f->isdir) { r = -EISDIR; break; }
            r = file_truncate(f->lba, f->off, size);
        }
        break;
    }
    case TREADDIR: { u64 off = q64(); u32 count = q32(); r = p9_readdir(f, off, count); break; }
    case TREAD: {
        u64 off = q64();
        u32 count = q32();
        if (f->isdir) { r = -EISDIR; break; }
        if (count > IOMAX) count = IOMAX;
        if (!nsg && count > rmax - 11) count = rmax - 11;
        r = file_read(f->lba, f->off, off, iobuf, count);
        if (r < 0) break;
        a32((u32)r);
        u32 left = (u32)r;
        const u8 *p = iobuf;
        if (!nsg) { memcpy(am + alen, p, left); alen += left; }
        for (u32 i = 0; i < nsg && left; i++) {
            u32 k = sgl[i] < left ? sgl[i] : left;
            memcpy((void *)sga[i], p, k);
            p += k; left -= k; scattered += k;
        }
        r = 0;
        break;
    }
    case TWRITE: {
        u64 off = q64();
        u32 count = q32();
        if (f->isdir) { r = -EISDIR; break; }
        if (count > qlen - qpos) { r = -EINVAL; break; }
        r = file_write(f->lba, f->off, off, qm + qpos, count);
        if (r >= 0) { a32((u32)r); r = 0; }
        break;
    }
    case TUNLINKAT: {
        if ((r = qstr(pname, sizeof pname)) < 0) break;
        r = p9_unlink(f, pname, q32());
        break;
    }
    case TRENAMEAT: {
        if ((r = qstr(pname, sizeof pname)) < 0) break;
        struct pfid *nd = pfid_get(q32());
        if (!nd) { r = -EBADF; break; }
        if ((r = qstr(pname2, sizeof pname2)) < 0) break;
        r = p9_rename(f, pname, nd, pname2);
        break;
    }
    case TREADLINK: r = -EINVAL; break;            /* FAT has no symlinks */
    case TSYMLINK: case TLINK: r = -EPERM; break;
    default: r = -95;                              /* EOPNOTSUPP */
    }
done:
    if (r < 0 || qbad) {
        alen = 0;
        a32(0); a8(7); a16(tag); a32((u32)(r < 0 ? -r : EINVAL));
        scattered = 0;
    }
    u32 total = alen + scattered;          /* as a device counts what it wrote */
    memcpy(rbuf, &total, 4);
    return total;
}
