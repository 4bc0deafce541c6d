/* shm.c - all-reduce between the processes of one host through shared memory. */
#include "shm.h"

#include "../core/half.h"
#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#endif

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
#define SPINS 2000          /* polls before sleeping where the host's cores are oversubscribed */
#define SPIN_S 250e-6       /* else the time a wait polls before it sleeps (a futex wake-up costs
                               tens of microseconds on a VM; the others are usually nearer) */
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
#define SIG_WORDS 3 /* per process: (length, kind, in place, op), the offset in the buffer (a 16-bit
                      * sum: the values' type), the parts */
enum { KIND_ALLREDUCE, KIND_REDUCE_SCATTER, KIND_ALLGATHER, KIND_SUM16, KIND_SUM16_GATHERED, KIND_SUM16_FLOATS,
       KIND_SUM16_FLOATS_GATHERED, KIND_PHASES };

#define BOARD_WORDS 5 /* per process: call number, rank, step, activity, bucket */

static size_t head_bytes(int nlocal)
{
    return align_up(sizeof(lk_shm_ctl)) + align_up((size_t)nlocal * SIG_WORDS * sizeof(unsigned long long)) +
           align_up((size_t)nlocal * BOARD_WORDS * sizeof(long long));
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
    s->board = (volatile long long *)(p + align_up(sizeof(lk_shm_ctl)) +
                                      align_up((size_t)nlocal * SIG_WORDS * sizeof(unsigned long long)));
    s->doing = NULL;
    s->rank = me;
    s->calls = 0;
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
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN); /* a core each: waits poll longer */
    s->spin_s = cpus >= nlocal ? SPIN_S : 0.0;
}

static float *slot(const lk_shm *s, int i) { return s->slots + (size_t)i * floats_padded(s->piece); }
static float *grads_of(const lk_shm *s, int i) { return s->grads + (size_t)i * floats_padded(s->grad_floats); }
float *lk_shm_grads(const lk_shm *s) { return s->grads ? grads_of(s, s->me) : NULL; }
volatile long long *lk_shm_board(const lk_shm *s) { return s->board + (size_t)s->me * BOARD_WORDS; }

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

/* Who did not arrive, and what every process of the host is doing, from the board. */
static void report(const lk_shm *s, char *buf, size_t size)
{
    size_t len = 0;
    const volatile long long *mine = s->board + (size_t)s->me * BOARD_WORDS;
    for (int q = 0; q < s->nlocal && len < size; q++) {
        const volatile long long *b = s->board + (size_t)q * BOARD_WORDS;
        const long long call = b[0];
        char bucket[32] = "";
        if (b[4] >= 0) snprintf(bucket, sizeof bucket, ", bucket %lld", b[4]);
        /* (forward to the update belong to the step after those taken; the rest come after) */
        const int in_step = b[3] >= LK_DOING_FORWARD && b[3] <= LK_DOING_UPDATE;
        len += (size_t)snprintf(buf + len, size - len, "%s local rank %d (rank %lld) %s call %lld, step %lld: %s%s",
                                q ? ";" : "", q, b[1],
                                q == s->me ? "waits in" : call < mine[0] ? "did not arrive: its last was" : "arrived at",
                                call, b[2] + in_step, lk_doing_name((int)b[3]), bucket);
    }
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
    const double spin_end = lk_now() + s->spin_s; /* poll SPINS times, and on until then */
    for (int i = 0;; i++) {
        if (atomic_load_explicit(&c->gen, memory_order_acquire) != g) return LK_OK;
        if (i >= SPINS && i % 64 == 0 && lk_now() >= spin_end) break;
        cpu_relax();
    }
    const double deadline = lk_now() + s->timeout_s;
    for (;;) {
        atomic_fetch_add(&c->sleepers, 1); /* seq_cst: before the load of gen below */
        if (atomic_load(&c->gen) == g && !atomic_load(&c->failed)) futex_wait(&c->gen, g);
        atomic_fetch_sub(&c->sleepers, 1);
        if (atomic_load_explicit(&c->gen, memory_order_acquire) != g) return LK_OK;
        if (atomic_load(&c->failed)) return peer_failed(s);
        if (lk_now() > deadline) {
            char who[700];
            report(s, who, sizeof who);
            return fail(s, LK_ERR(LK_ERR_COMM,
                                  "local rank %d: shared-memory all-reduce: the other ranks on "
                                  "this host did not arrive within %.0f s (--comm-timeout):%s",
                                  s->me, s->timeout_s, who));
        }
    }
}

static unsigned sig_kind(unsigned long long w) { return (unsigned)(w >> 3) & 31; }
static unsigned long long sig_len(unsigned long long w) { return w >> 8; }

static const char *op_name(unsigned long long w)
{
    static const char *const names[] = {"sum", "average", "max", "min"};
    static const char *const kinds[] = {"", " reduce-scatter", " all-gather", " of 16-bit values",
                                        " of 16-bit values to every rank", " of 16-bit rounded floats",
                                        " of 16-bit rounded floats to every rank", " in phases (PowerSGD)"};
    static char buf[2][64];
    static _Thread_local int k;
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s%s", names[w & 3], kinds[sig_kind(w) <= KIND_PHASES ? sig_kind(w) : 0]);
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
        if (a[0] == b[0] && sig_kind(a[0]) >= KIND_SUM16)
            return LK_ERR(LK_ERR_COMM,
                          "local rank %d: 16-bit sums differ on this host: local rank 0 sums %s values, "
                          "local rank %d %s", s->me, lk_dtype_name((lk_dtype)a[1]), i,
                          lk_dtype_name((lk_dtype)b[1]));
        return LK_ERR(LK_ERR_COMM,
                      "local rank %d: all-reduce calls differ on this host: local rank 0 passed "
                      "%llu values at offset %llu (%s), local rank %d %llu values at offset %llu (%s)",
                      s->me, sig_len(a[0]), a[1], op_name(a[0]), i, sig_len(b[0]), b[1], op_name(b[0]));
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

/* Signs the call (a KIND_) for check_signatures; returns 1 when buf lies in this process's
 * gradient buffer (at *at) and the call can work there in place (a float32 all-reduce or
 * reduce-scatter). */
int lk_shm_holds(const lk_shm *s, const float *buf, size_t n)
{
    const float *g = lk_shm_grads(s);
    return g && buf >= g && n <= s->grad_floats && (size_t)(buf - g) <= s->grad_floats - n;
}

static int sign(lk_shm *s, int kind, const float *buf, size_t n, lk_reduce_op op, const size_t *counts,
                size_t *at)
{
    const int direct = kind != KIND_ALLGATHER && kind != KIND_SUM16 && kind != KIND_SUM16_GATHERED &&
                       lk_shm_holds(s, buf, n);
    *at = direct ? (size_t)(buf - lk_shm_grads(s)) : 0;
    volatile long long *b = s->board + (size_t)s->me * BOARD_WORDS; /* (for a timeout's report) */
    b[1] = s->rank;
    b[2] = s->doing ? s->doing->step : -1;
    b[3] = s->doing ? s->doing->what : LK_DOING_SETUP;
    b[4] = s->doing ? s->doing->bucket : -1;
    b[0] = ++s->calls;
    unsigned long long *sig = s->sig + (size_t)s->me * SIG_WORDS;
    sig[0] = (unsigned long long)n << 8 | (unsigned)kind << 3 | (unsigned)direct << 2 | (unsigned)op;
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
    if (sign(s, KIND_ALLREDUCE, buf, n, op, NULL, &at)) return allreduce_direct(s, at, n, op, avg_scale, cross, user);
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
    if (sign(s, KIND_REDUCE_SCATTER, buf, n, op, counts, &at)) { /* each process sums its sub-chunk into the owners' buffers */
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
    sign(s, KIND_ALLGATHER, buf, n, LK_REDUCE_SUM, counts, &at);
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

/* ---- 16-bit sums (one host): piece by piece through the slots, which hold twice as many
 * 16-bit values as floats; every process's value added in float32 in local-rank order from
 * zero, as the MPI path adds the ranks' copies, and rounded once into the output ---- */

static void sum16_part(const lk_shm *s, lk_dtype t, uint16_t *out, size_t lo, size_t hi)
{
    const size_t stride = floats_padded(s->piece) * 2; /* a slot, in 16-bit values */
    const uint16_t *x = (const uint16_t *)s->slots;
#define SUM16(T)                                                                          \
    for (size_t j = lo; j < hi; j++) {                                                    \
        float acc = 0.0f;                                                                 \
        for (int q = 0; q < s->nlocal; q++) acc += lk_wire16_to_f32(T, x[(size_t)q * stride + j]); \
        out[j] = lk_wire16_rne(T, acc);                                                   \
    }
    if (t == LK_F16) SUM16(LK_F16) else SUM16(LK_BF16)
#undef SUM16
}

lk_status lk_shm_sum16(lk_shm *s, lk_dtype t, uint16_t *buf, const size_t *counts, int gather)
{
    if (atomic_load(&s->ctl->failed)) return peer_failed(s);
    size_t n, mine, at;
    parts_extent(s, counts, &n, &mine);
    sign(s, gather ? KIND_SUM16_GATHERED : KIND_SUM16, NULL, n, LK_REDUCE_SUM, counts, &at);
    s->sig[(size_t)s->me * SIG_WORDS + 1] = (unsigned long long)t;
    const size_t keep_lo = gather ? 0 : mine, keep_hi = gather ? n : mine + counts[s->me];
    const size_t piece = s->piece * 2;
    uint16_t *slot16 = (uint16_t *)slot(s, s->me), *out = (uint16_t *)s->out;
    size_t off = 0;
    do {
        const size_t len = LK_MIN(piece, n - off);
        if (len) memcpy(slot16, buf + off, len * sizeof *buf);
        if (off == 0) LK_CHECK(first_barrier(s));
        else LK_CHECK(barrier(s));
        size_t lo, hi;
        my_part(s, len, &lo, &hi);
        if (hi > lo) sum16_part(s, t, out, lo, hi);
        LK_CHECK(barrier(s));
        const size_t a = LK_MAX(off, keep_lo), b = LK_MIN(off + len, keep_hi);
        if (a < b) memcpy(buf + a, out + (a - off), (b - a) * sizeof *buf);
        off += len;
    } while (off < n);
    return LK_OK;
}

/* y = x times scale rounded to t and widened back (AVX2 and F16C eight at a time where the
 * build has them: the same roundings as half.h's, which the tail uses) */
static void round16(lk_dtype t, const float *x, float scale, float *y, size_t n)
{
    size_t j = 0;
#if defined(__AVX2__) && defined(__F16C__)
    const __m256 s = _mm256_set1_ps(scale);
    if (t == LK_F16) {
        for (; j + 8 <= n; j += 8) {
            const __m128i h = _mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(x + j), s), _MM_FROUND_TO_NEAREST_INT);
            _mm256_storeu_ps(y + j, _mm256_cvtph_ps(h));
        }
    } else {
        const __m256i abs = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000),
                      one = _mm256_set1_epi32(1), half = _mm256_set1_epi32(0x7fff),
                      top = _mm256_set1_epi32((int)0xffff0000u), quiet = _mm256_set1_epi32(0x00400000);
        for (; j + 8 <= n; j += 8) {
            const __m256i u = _mm256_castps_si256(_mm256_mul_ps(_mm256_loadu_ps(x + j), s));
            const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs), inf);
            const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
            const __m256i r = _mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(half, odd)), top);
            const __m256i q = _mm256_or_si256(_mm256_and_si256(u, top), quiet); /* a NaN stays one */
            _mm256_storeu_ps(y + j, _mm256_castsi256_ps(_mm256_blendv_epi8(r, q, nan)));
        }
    }
#endif
    for (; j < n; j++) y[j] = lk_wire16_to_f32(t, lk_wire16_rne(t, x[j] * scale));
}

/* [lo, hi) of the range at `at` of the gradient buffers: every process's values rounded,
 * added in local-rank order from zero, the sum rounded and times 1 / scale, written to every
 * buffer (gather) or to `owner`'s */
static void sum16_floats_part(const lk_shm *s, lk_dtype t, size_t at, size_t lo, size_t hi, float scale,
                              int owner)
{
    enum { BLOCK = 512 };
    float acc[BLOCK], v[BLOCK];
    const float unscale = 1.0f / scale;
    for (size_t j0 = lo; j0 < hi; j0 += BLOCK) {
        const size_t len = LK_MIN((size_t)BLOCK, hi - j0);
        for (size_t j = 0; j < len; j++) acc[j] = 0.0f;
        for (int q = 0; q < s->nlocal; q++) {
            round16(t, grads_of(s, q) + at + j0, scale, v, len);
            for (size_t j = 0; j < len; j++) acc[j] += v[j];
        }
        round16(t, acc, 1.0f, v, len);
        for (size_t j = 0; j < len; j++) v[j] *= unscale;
        for (int q = 0; q < s->nlocal; q++)
            if (owner < 0 || q == owner) memcpy(grads_of(s, q) + at + j0, v, len * sizeof *v);
    }
}

lk_status lk_shm_sum16_floats(lk_shm *s, lk_dtype t, float *buf, const size_t *counts, int gather, float scale)
{
    if (atomic_load(&s->ctl->failed)) return peer_failed(s);
    size_t n, mine, at;
    parts_extent(s, counts, &n, &mine);
    if (!lk_shm_holds(s, buf, n))
        return LK_ERR(LK_ERR_ARG, "local rank %d: a 16-bit sum of floats in place outside the gradient buffer",
                      s->me);
    sign(s, gather ? KIND_SUM16_FLOATS_GATHERED : KIND_SUM16_FLOATS, NULL, n, LK_REDUCE_SUM, counts, &at);
    at = (size_t)(buf - lk_shm_grads(s));
    unsigned long long *sig = s->sig + (size_t)s->me * SIG_WORDS;
    sig[1] = (unsigned long long)t;
    sig[2] ^= (unsigned long long)at * 0x9e3779b97f4a7c15ULL; /* the offset, too */
    LK_CHECK(first_barrier(s));
    size_t lo, hi, base = 0;
    my_part(s, n, &lo, &hi);
    if (gather) {
        if (hi > lo) sum16_floats_part(s, t, at, lo, hi, scale, -1);
    } else { /* each owner's values of [lo, hi) into its buffer alone */
        for (int owner = 0; owner < s->nlocal; base += counts[owner], owner++) {
            const size_t a = LK_MAX(lo, base), b = LK_MIN(hi, base + counts[owner]);
            if (a < b) sum16_floats_part(s, t, at, a, b, scale, owner);
        }
    }
    return barrier(s);
}

lk_status lk_shm_phases(lk_shm *s, float *buf, size_t n, unsigned long long tag, int nphases,
                        lk_host_phase_fn fn, void *user)
{
    if (atomic_load(&s->ctl->failed)) return peer_failed(s);
    if (!lk_shm_holds(s, buf, n))
        return LK_ERR(LK_ERR_ARG, "local rank %d: a computation in phases outside the gradient buffer", s->me);
    size_t at;
    sign(s, KIND_PHASES, NULL, n, LK_REDUCE_SUM, NULL, &at);
    at = (size_t)(buf - lk_shm_grads(s));
    unsigned long long *sig = s->sig + (size_t)s->me * SIG_WORDS;
    sig[1] = at;
    sig[2] = tag;
    LK_CHECK(first_barrier(s));
    const lk_host_view v = {s->grads + at, floats_padded(s->grad_floats), s->me, s->nlocal,
                           s->out, s->piece, s->slots, floats_padded(s->piece)};
    for (int k = 0, last = 0; !last; k++) {
        last = k + 1 >= nphases;
        lk_status st = fn(user, k, &v, &last);
        if (st != LK_OK) return fail(s, st);
        LK_CHECK(barrier(s));
    }
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
