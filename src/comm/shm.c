/* shm.c - all-reduce between the processes of one host through shared memory. */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LINE 64
#define SPINS 2000          /* polls before sleeping: a few microseconds */
#define NAP_NS 100000000L   /* a sleep is cut every 100 ms to look at the clock */

/* One central barrier: the last process to arrive resets `arrived` and advances
 * `gen`; the others wait for `gen` to move. `sleepers` lets the last one skip the
 * wake-up system call when nobody sleeps. `failed` ends every wait at once. */
struct lk_shm_ctl {
    _Alignas(LINE) _Atomic unsigned arrived;
    _Alignas(LINE) _Atomic unsigned gen;
    _Atomic unsigned sleepers;
    _Atomic int failed; /* 1 + local rank of the first process that gave up */
};

static size_t align_up(size_t x) { return (x + LINE - 1) / LINE * LINE; }
static size_t floats_padded(size_t n) { return align_up(n * sizeof(float)) / sizeof(float); }
#define SIG_WORDS 3 /* per process: (length, kind, in place, op), the offset in the buffer, the parts */

static size_t head_bytes(int nlocal)
{
    return align_up(sizeof(lk_shm_ctl)) + align_up((size_t)nlocal * SIG_WORDS * sizeof(unsigned long long));
}

size_t lk_shm_region_bytes(int nlocal, size_t piece, size_t grad_floats)
{
    return head_bytes(nlocal) + (size_t)(nlocal + 1) * floats_padded(piece) * sizeof(float) +
           (size_t)nlocal * floats_padded(grad_floats) * sizeof(float);
}

size_t lk_shm_piece_for(int nlocal, size_t max_bytes)
{
    size_t fixed = head_bytes(nlocal);
    size_t piece = max_bytes > fixed ? (max_bytes - fixed) / (size_t)(nlocal + 1) / sizeof(float) : 0;
    if (piece > (1u << 18)) piece = 1u << 18;   /* 1 MiB slots */
    return piece / 1024 * 1024;                 /* whole pages of floats */
}

void lk_shm_attach(lk_shm *s, void *region, int me, int nlocal, size_t piece, size_t grad_floats,
                   double timeout_s)
{
    char *p = region;
    s->ctl = (lk_shm_ctl *)p;
    s->sig = (unsigned long long *)(p + align_up(sizeof(lk_shm_ctl)));
    p += head_bytes(nlocal);
    s->out = (float *)p;
    p += floats_padded(piece) * sizeof(float);
    s->slots = (float *)p;
    p += (size_t)nlocal * floats_padded(piece) * sizeof(float);
    s->grads = grad_floats ? (float *)p : NULL;
    s->me = me;
    s->nlocal = nlocal;
    s->piece = piece;
    s->grad_floats = grad_floats;
    s->timeout_s = timeout_s;
}

static float *slot(const lk_shm *s, int i) { return s->slots + (size_t)i * floats_padded(s->piece); }
static float *grads_of(const lk_shm *s, int i) { return s->grads + (size_t)i * floats_padded(s->grad_floats); }
float *lk_shm_grads(const lk_shm *s) { return s->grads ? grads_of(s, s->me) : NULL; }

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* the futex word is the atomic's storage: a 32-bit int on Linux */
static void futex_wait(_Atomic unsigned *word, unsigned expected)
{
    struct timespec nap = {0, NAP_NS};
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAIT, expected, &nap, NULL, 0);
}

static void futex_wake_all(_Atomic unsigned *word)
{
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static lk_status fail(lk_shm *s, lk_status st)
{
    int none = 0;
    atomic_compare_exchange_strong(&s->ctl->failed, &none, 1 + s->me);
    futex_wake_all(&s->ctl->gen);
    return st;
}

static lk_status peer_failed(const lk_shm *s)
{
    return LK_ERR(LK_ERR_COMM,
                  "local rank %d: shared-memory all-reduce abandoned: local rank %d on this host "
                  "failed in it",
                  s->me, atomic_load(&s->ctl->failed) - 1);
}

static lk_status barrier(lk_shm *s)
{
    lk_shm_ctl *c = s->ctl;
    const unsigned g = atomic_load_explicit(&c->gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&c->arrived, 1, memory_order_acq_rel) + 1 == (unsigned)s->nlocal) {
        atomic_store_explicit(&c->arrived, 0, memory_order_relaxed);
        atomic_store(&c->gen, g + 1); /* seq_cst: ordered before the load of sleepers */
        if (atomic_load(&c->sleepers)) futex_wake_all(&c->gen);
        return LK_OK;
    }
    for (int i = 0; i < SPINS; i++) {
        if (atomic_load_explicit(&c->gen, memory_order_acquire) != g) return LK_OK;
        cpu_relax();
    }
    const double deadline = lk_now() + s->timeout_s;
    for (;;) {
        atomic_fetch_add(&c->sleepers, 1); /* seq_cst: before the load of gen below */
        if (atomic_load(&c->gen) == g && !atomic_load(&c->failed)) futex_wait(&c->gen, g);
        atomic_fetch_sub(&c->sleepers, 1);
        if (atomic_load_explicit(&c->gen, memory_order_acquire) != g) return LK_OK;
        if (atomic_load(&c->failed)) return peer_failed(s);
        if (lk_now() > deadline)
            return fail(s, LK_ERR(LK_ERR_COMM,
                                  "local rank %d: shared-memory all-reduce: the other ranks on "
                                  "this host did not arrive within %.0f s (--comm-timeout)",
                                  s->me, s->timeout_s));
    }
}

static const char *op_name(unsigned long long w)
{
    static const char *const names[] = {"sum", "average", "max", "min"};
    static const char *const kinds[] = {"", " reduce-scatter", " all-gather", ""};
    static char buf[2][48];
    static _Thread_local int k;
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s%s", names[w & 3], kinds[(w >> 3) & 3]);
    return buf[k];
}

/* all processes read every signature after the call's first barrier, so they all
 * come to the same verdict */
static lk_status check_signatures(const lk_shm *s)
{
    const unsigned long long *a = s->sig;
    for (int i = 1; i < s->nlocal; i++) {
        const unsigned long long *b = s->sig + (size_t)i * SIG_WORDS;
        if (a[0] == b[0] && a[1] == b[1] && a[2] == b[2]) continue;
        if ((a[0] ^ b[0]) & 4)
            return LK_ERR(LK_ERR_COMM,
                          "local rank %d: all-reduce calls differ on this host: local rank %d "
                          "reduces %s gradient buffer, local rank %d %s",
                          s->me, 0, a[0] & 4 ? "its" : "a buffer outside its", i,
                          b[0] & 4 ? "its gradient buffer" : "a buffer outside it");
        if (a[0] == b[0] && a[1] == b[1])
            return LK_ERR(LK_ERR_COMM,
                          "local rank %d: %s calls differ on this host: local ranks 0 and %d pass "
                          "different parts", s->me, op_name(a[0]), i);
        return LK_ERR(LK_ERR_COMM,
                      "local rank %d: all-reduce calls differ on this host: local rank 0 passed "
                      "%llu floats at offset %llu (%s), local rank %d %llu floats at offset %llu (%s)",
                      s->me, a[0] >> 5, a[1], op_name(a[0]), i, b[0] >> 5, b[1], op_name(b[0]));
    }
    return LK_OK;
}

/* out[lo, hi) = op over every process q of its data at [lo, hi), starting from process
 * `first`'s. In place (direct), the data are the processes' gradient buffers at `at` and
 * out is first's own: it starts the running result, so that no source is overwritten
 * before it is read. Else the data are the slots. */
static void reduce(const lk_shm *s, float *out, int direct, int first, size_t at, size_t lo, size_t hi,
                   lk_reduce_op op)
{
    const float *y = direct ? grads_of(s, first) + at : slot(s, first); /* the running result */
    if (s->nlocal == 1) {
        if (out != y) memcpy(out + lo, y + lo, (hi - lo) * sizeof(float));
        return;
    }
    for (int q = 0; q < s->nlocal; q++) {
        if (q == first) continue;
        const float *x = direct ? grads_of(s, q) + at : slot(s, q);
        switch (op) {
        case LK_REDUCE_SUM:
        case LK_REDUCE_AVG:
            for (size_t j = lo; j < hi; j++) out[j] = y[j] + x[j];
            break;
        case LK_REDUCE_MAX:
            for (size_t j = lo; j < hi; j++) out[j] = x[j] > y[j] ? x[j] : y[j];
            break;
        case LK_REDUCE_MIN:
            for (size_t j = lo; j < hi; j++) out[j] = x[j] < y[j] ? x[j] : y[j];
            break;
        }
        y = out;
    }
}

/* Sub-chunk `me` of len floats, cut at cache lines. */
static void my_part(const lk_shm *s, size_t len, size_t *lo, size_t *hi)
{
    const size_t per = ((len + (size_t)s->nlocal - 1) / (size_t)s->nlocal + 15) / 16 * 16;
    *lo = LK_MIN(len, per * (size_t)s->me);
    *hi = LK_MIN(len, *lo + per);
}

/* The reduced sub-chunk res[lo, hi): across hosts, then scaled for an average. */
static lk_status finish_part(lk_shm *s, float *res, size_t lo, size_t hi, lk_reduce_op op,
                             float avg_scale, lk_shm_cross_fn cross, void *user)
{
    if (cross) {
        lk_status st = cross(user, res + lo, hi - lo, op == LK_REDUCE_AVG ? LK_REDUCE_SUM : op);
        if (st != LK_OK) return fail(s, st);
    }
    if (op == LK_REDUCE_AVG)
        for (size_t j = lo; j < hi; j++) res[j] *= avg_scale;
    return LK_OK;
}

static lk_status first_barrier(lk_shm *s)
{
    LK_CHECK(barrier(s));
    lk_status st = check_signatures(s);
    return st == LK_OK ? LK_OK : fail(s, st);
}

/* In place in the gradient buffers: no copies, one barrier either side. */
static lk_status allreduce_direct(lk_shm *s, size_t at, size_t n, lk_reduce_op op, float avg_scale,
                                  lk_shm_cross_fn cross, void *user)
{
    LK_CHECK(first_barrier(s));
    size_t lo, hi;
    my_part(s, n, &lo, &hi);
    if (hi > lo) {
        float *mine = grads_of(s, s->me) + at;
        reduce(s, mine, 1, s->me, at, lo, hi, op);
        LK_CHECK(finish_part(s, mine, lo, hi, op, avg_scale, cross, user));
        for (int q = 0; q < s->nlocal; q++)
            if (q != s->me) memcpy(grads_of(s, q) + at + lo, mine + lo, (hi - lo) * sizeof(float));
    }
    return barrier(s);
}

/* the parts of a reduce-scatter or all-gather, hashed (0 for an all-reduce: none) */
static unsigned long long parts_hash(const size_t *counts, int n)
{
    unsigned long long h = counts ? 1469598103934665603ULL : 0;
    for (int i = 0; counts && i < n; i++) h = (h ^ counts[i]) * 1099511628211ULL;
    return h;
}

/* Signs the call (kind 0 all-reduce, 1 reduce-scatter, 2 all-gather) for check_signatures;
 * returns 1 when buf lies in this process's gradient buffer (at *at) and the call can work
 * there in place (not an all-gather). */
static int sign(lk_shm *s, int kind, const float *buf, size_t n, lk_reduce_op op, const size_t *counts,
                size_t *at)
{
    float *g = lk_shm_grads(s);
    const int direct = kind != 2 && g && buf >= g && n <= s->grad_floats &&
                       (size_t)(buf - g) <= s->grad_floats - n;
    *at = direct ? (size_t)(buf - g) : 0;
    unsigned long long *sig = s->sig + (size_t)s->me * SIG_WORDS;
    sig[0] = (unsigned long long)n << 5 | (unsigned)kind << 3 | (unsigned)direct << 2 | (unsigned)op;
    sig[1] = *at;
    sig[2] = parts_hash(counts, s->nlocal);
    return direct;
}

/* buf[0, n) reduced piece by piece through the slots: each process copies its piece into
 * its slot, barrier, process i reduces sub-chunk i of the piece into the output (and the
 * hook), barrier, each copies back what it keeps of the piece: [keep_lo, keep_hi) of buf.
 * A zero length still meets the others once, to compare signatures. */
static lk_status staged(lk_shm *s, float *buf, size_t n, lk_reduce_op op, float avg_scale,
                        lk_shm_cross_fn cross, void *user, size_t keep_lo, size_t keep_hi)
{
    float *mine = slot(s, s->me);
    size_t off = 0;
    do {
        const size_t len = LK_MIN(s->piece, n - off);
        if (len) memcpy(mine, buf + off, len * sizeof(float));
        if (off == 0) LK_CHECK(first_barrier(s));
        else LK_CHECK(barrier(s));
        size_t lo, hi;
        my_part(s, len, &lo, &hi);
        if (hi > lo) {
            reduce(s, s->out, 0, 0, 0, lo, hi, op);
            LK_CHECK(finish_part(s, s->out, lo, hi, op, avg_scale, cross, user));
        }
        LK_CHECK(barrier(s));
        const size_t a = LK_MAX(off, keep_lo), b = LK_MIN(off + len, keep_hi);
        if (a < b) memcpy(buf + a, s->out + (a - off), (b - a) * sizeof(float));
        off += len;
    } while (off < n);
    return LK_OK;
}

lk_status lk_shm_allreduce(lk_shm *s, float *buf, size_t n, lk_reduce_op op, float avg_scale,
                           lk_shm_cross_fn cross, void *user)
{
    if (atomic_load(&s->ctl->failed)) return peer_failed(s);
    size_t at;
    if (sign(s, 0, buf, n, op, NULL, &at)) return allreduce_direct(s, at, n, op, avg_scale, cross, user);
    return staged(s, buf, n, op, avg_scale, cross, user, 0, n);
}

/* ---- reduce-scatter and all-gather (one host: local rank = rank) ---- */

/* the parts' total, and where this process's starts */
static void parts_extent(const lk_shm *s, const size_t *counts, size_t *n, size_t *mine)
{
    *n = *mine = 0;
    for (int q = 0; q < s->nlocal; q++) {
        if (q == s->me) *mine = *n;
        *n += counts[q];
    }
}

static void scale(float *x, size_t lo, size_t hi, float f)
{
    for (size_t j = lo; j < hi; j++) x[j] *= f;
}

lk_status lk_shm_reduce_scatter(lk_shm *s, float *buf, const size_t *counts, lk_reduce_op op,
                                float avg_scale)
{
    if (atomic_load(&s->ctl->failed)) return peer_failed(s);
    size_t n, mine, at;
    parts_extent(s, counts, &n, &mine);
    if (sign(s, 1, buf, n, op, counts, &at)) { /* each process sums its sub-chunk into the owners' buffers */
        LK_CHECK(first_barrier(s));
        size_t lo, hi;
        my_part(s, n, &lo, &hi);
        size_t base = 0; /* the part of [lo, hi) each process owns, summed into its buffer */
        for (int owner = 0; owner < s->nlocal; base += counts[owner], owner++) {
            const size_t a = LK_MAX(lo, base), b = LK_MIN(hi, base + counts[owner]);
            if (a >= b) continue;
            float *dst = grads_of(s, owner) + at;
            reduce(s, dst, 1, owner, at, a, b, op);
            if (op == LK_REDUCE_AVG) scale(dst, a, b, avg_scale);
        }
        return barrier(s);
    }
    return staged(s, buf, n, op, avg_scale, NULL, NULL, mine, mine + counts[s->me]);
}

lk_status lk_shm_allgather(lk_shm *s, float *buf, const size_t *counts)
{
    if (atomic_load(&s->ctl->failed)) return peer_failed(s);
    size_t n, mine, at;
    parts_extent(s, counts, &n, &mine);
    sign(s, 2, buf, n, LK_REDUCE_SUM, counts, &at);
    const size_t end = mine + counts[s->me];
    size_t off = 0;
    /* Each process puts its part of the piece into its own slot, then copies the others'
     * parts from theirs. (Not through the shared output: a process still copying the
     * previous collective's result out of it - after that one's last barrier - would read
     * what a faster one wrote there for this one. A slot is read only between the barriers
     * of the call that wrote it.) */
    do {
        const size_t len = LK_MIN(s->piece, n - off);
        const size_t a = LK_MAX(off, mine), b = LK_MIN(off + len, end);
        if (a < b) memcpy(slot(s, s->me) + (a - off), buf + a, (b - a) * sizeof(float));
        if (off == 0) LK_CHECK(first_barrier(s));
        else LK_CHECK(barrier(s));
        size_t start = 0;
        for (int q = 0; q < s->nlocal; start += counts[q], q++) {
            const size_t qa = LK_MAX(off, start), qb = LK_MIN(off + len, start + counts[q]);
            if (q != s->me && qa < qb) memcpy(buf + qa, slot(s, q) + (qa - off), (qb - qa) * sizeof(float));
        }
        LK_CHECK(barrier(s));
        off += len;
    } while (off < n);
    return LK_OK;
}

lk_status lk_shm_map_create(const char *name, size_t bytes, void **addr)
{
    *addr = NULL;
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) return LK_ERR(LK_ERR_COMM, "shm_open %s: %s", name, strerror(errno));
    int rc = ftruncate(fd, (off_t)bytes);
    if (rc == 0) rc = posix_fallocate(fd, 0, (off_t)bytes); /* returns the error number */
    else rc = errno;
    if (rc != 0) {
        close(fd);
        shm_unlink(name);
        return LK_ERR(LK_ERR_COMM, "cannot reserve %.1f MiB of shared memory (%s): %s",
                      (double)bytes / 1048576.0, name, strerror(rc));
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int err = errno;
    close(fd);
    if (p == MAP_FAILED) {
        shm_unlink(name);
        return LK_ERR(LK_ERR_COMM, "mmap of %s: %s", name, strerror(err));
    }
    *addr = p;
    return LK_OK;
}

lk_status lk_shm_map_open(const char *name, size_t bytes, void **addr)
{
    *addr = NULL;
    int fd = shm_open(name, O_RDWR, 0600);
    if (fd < 0) return LK_ERR(LK_ERR_COMM, "shm_open %s: %s", name, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < bytes) {
        close(fd);
        return LK_ERR(LK_ERR_COMM, "shared memory %s is smaller than %zu bytes", name, bytes);
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int err = errno;
    close(fd);
    if (p == MAP_FAILED) return LK_ERR(LK_ERR_COMM, "mmap of %s: %s", name, strerror(err));
    *addr = p;
    return LK_OK;
}

void lk_shm_map_unlink(const char *name) { shm_unlink(name); }

void lk_shm_map_close(void *addr, size_t bytes)
{
    if (addr) munmap(addr, bytes);
}
