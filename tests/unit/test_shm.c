/* test_shm.c - the shared-memory all-reduce (src/comm/shm.c) between forked
 * processes: every operation against a serial reference on the staged path (several
 * pieces) and in place in the gradient buffers, two "hosts" joined by a cross-host hook,
 * calls that differ between processes, a process that never arrives (timeout on the
 * others, and the late one told so), and the named shared-memory objects. Each child
 * checks its own result and reports through its exit status. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "comm/shm.h"
#include "testutil.h"

enum { PIECE = 1024 };

static float contrib(int p, size_t i) { return (float)((p + 1) * 100 + (long)(i % 89)) * 0.5f; }

static double want_of(lk_reduce_op op, int nproc, size_t i)
{
    double w = op == LK_REDUCE_MIN ? 1e30 : op == LK_REDUCE_MAX ? -1e30 : 0;
    for (int p = 0; p < nproc; p++) {
        double v = contrib(p, i);
        w = op == LK_REDUCE_MAX ? fmax(w, v) : op == LK_REDUCE_MIN ? fmin(w, v) : w + v;
    }
    return op == LK_REDUCE_AVG ? w / nproc : w;
}

/* child side: print and exit 1 on the first wrong element */
static int check(const char *what, int me, const float *buf, size_t n, size_t shift, lk_reduce_op op,
                 int nproc)
{
    for (size_t i = 0; i < n; i++) {
        double w = want_of(op, nproc, i + shift);
        if (fabs(buf[i] - w) > 1e-6 * fabs(w)) {
            fprintf(stderr, "process %d, %s, op %d, n %zu: [%zu] = %g, expected %g\n", me, what,
                    (int)op, n, i, (double)buf[i], w);
            return 1;
        }
    }
    return 0;
}

static void *shared_map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    return p; /* anonymous shared memory starts zeroed */
}

/* Forks nproc children running fn(me, arg); every one must exit 0 within 60 s. */
static void run_children(int nproc, int (*fn)(int me, void *arg), void *arg)
{
    pid_t pid[8];
    for (int p = 0; p < nproc; p++) {
        pid[p] = fork();
        assert_true(pid[p] >= 0);
        if (pid[p] == 0) {
            alarm(60); /* a hang fails the test instead of blocking it */
            _exit(fn(p, arg));
        }
    }
    int bad = 0;
    for (int p = 0; p < nproc; p++) {
        int st = 0;
        assert_true(waitpid(pid[p], &st, 0) == pid[p]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "process %d: %s %d\n", p, WIFEXITED(st) ? "exit" : "signal",
                    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
            bad = 1;
        }
    }
    assert_false(bad);
}

typedef struct {
    void *region;
    int nproc;
    size_t grad_floats;
    double timeout_s;
} group;

static const lk_reduce_op OPS[] = {LK_REDUCE_SUM, LK_REDUCE_AVG, LK_REDUCE_MAX, LK_REDUCE_MIN};

static int staged_child(int me, void *arg)
{
    group *g = arg;
    lk_shm s;
    lk_shm_attach(&s, g->region, me, g->nproc, PIECE, 0, 10.0);
    const size_t lens[] = {0, 1, 17, PIECE, PIECE + 1, 5 * PIECE + 333};
    float *buf = malloc(sizeof(float) * (5 * PIECE + 333));
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
        for (int oi = 0; oi < 4; oi++) {
            for (size_t i = 0; i < lens[li]; i++) buf[i] = contrib(me, i);
            if (lk_shm_allreduce(&s, buf, lens[li], OPS[oi], 1.0f / (float)g->nproc, NULL, NULL) != LK_OK) {
                fprintf(stderr, "process %d: %s\n", me, lk_error_message());
                return 1;
            }
            if (check("staged", me, buf, lens[li], 0, OPS[oi], g->nproc)) return 1;
        }
    free(buf);
    return 0;
}

static void test_staged(void **state)
{
    (void)state;
    for (int nproc = 1; nproc <= 3; nproc++) {
        size_t bytes = lk_shm_region_bytes(nproc, PIECE, 0);
        group g = {shared_map(bytes), nproc, 0, 10.0};
        run_children(nproc, staged_child, &g);
        munmap(g.region, bytes);
    }
}

/* ranges of the gradient buffers, reduced in place; what lies outside stays */
static int in_place_child(int me, void *arg)
{
    group *g = arg;
    lk_shm s;
    lk_shm_attach(&s, g->region, me, g->nproc, PIECE, g->grad_floats, 10.0);
    float *gr = lk_shm_grads(&s);
    const size_t ranges[][2] = {{0, 0}, {5, 1000}, {1000, 3000}, {0, 3001}};
    for (size_t r = 0; r < 4; r++)
        for (int oi = 0; oi < 4; oi++) {
            for (size_t i = 0; i < g->grad_floats; i++) gr[i] = contrib(me, i);
            size_t lo = ranges[r][0], n = ranges[r][1] - lo;
            if (lk_shm_allreduce(&s, gr + lo, n, OPS[oi], 1.0f / (float)g->nproc, NULL, NULL) != LK_OK) {
                fprintf(stderr, "process %d: %s\n", me, lk_error_message());
                return 1;
            }
            if (check("in place", me, gr + lo, n, lo, OPS[oi], g->nproc)) return 1;
            for (size_t i = 0; i < g->grad_floats; i++)
                if ((i < lo || i >= lo + n) && gr[i] != contrib(me, i)) {
                    fprintf(stderr, "process %d: [%zu] outside the range changed\n", me, i);
                    return 1;
                }
            /* everyone has checked before the next round overwrites the buffers */
            float z = 0;
            if (lk_shm_allreduce(&s, &z, 1, LK_REDUCE_SUM, 1.0f, NULL, NULL) != LK_OK) return 1;
        }
    return 0;
}

static void test_in_place(void **state)
{
    (void)state;
    for (int nproc = 2; nproc <= 3; nproc++) {
        size_t bytes = lk_shm_region_bytes(nproc, PIECE, 3001);
        group g = {shared_map(bytes), nproc, 3001, 10.0};
        run_children(nproc, in_place_child, &g);
        munmap(g.region, bytes);
    }
}

/* Two hosts of two processes: each host has its region, and the processes of one
 * local rank on both hosts are joined by a cross-host hook that is itself a shared-
 * memory all-reduce between those two. Process p is host p / 2, local rank p % 2. */
typedef struct {
    void *host[2], *cross[2];
} two_hosts;

static lk_status cross_hook(void *user, float *chunk, size_t n, lk_reduce_op op)
{
    return lk_shm_allreduce(user, chunk, n, op, 1.0f, NULL, NULL);
}

static int two_hosts_child(int p, void *arg)
{
    two_hosts *t = arg;
    lk_shm host, cross;
    lk_shm_attach(&host, t->host[p / 2], p % 2, 2, PIECE, 2500, 10.0);
    lk_shm_attach(&cross, t->cross[p % 2], p / 2, 2, PIECE, 0, 10.0);
    float *buf = malloc(sizeof(float) * 3 * PIECE);
    for (int oi = 0; oi < 4; oi++) {
        for (size_t i = 0; i < 3 * PIECE; i++) buf[i] = contrib(p, i);
        if (lk_shm_allreduce(&host, buf, 3 * PIECE, OPS[oi], 0.25f, cross_hook, &cross) != LK_OK ||
            check("two hosts, staged", p, buf, 3 * PIECE, 0, OPS[oi], 4))
            return 1;
        float *gr = lk_shm_grads(&host);
        for (size_t i = 0; i < 2500; i++) gr[i] = contrib(p, i);
        if (lk_shm_allreduce(&host, gr + 100, 2400, OPS[oi], 0.25f, cross_hook, &cross) != LK_OK ||
            check("two hosts, in place", p, gr + 100, 2400, 100, OPS[oi], 4))
            return 1;
        float z = 0;
        if (lk_shm_allreduce(&host, &z, 1, LK_REDUCE_SUM, 1.0f, NULL, NULL) != LK_OK) return 1;
    }
    free(buf);
    return 0;
}

static void test_two_hosts(void **state)
{
    (void)state;
    size_t hb = lk_shm_region_bytes(2, PIECE, 2500), cb = lk_shm_region_bytes(2, PIECE, 0);
    two_hosts t = {{shared_map(hb), shared_map(hb)}, {shared_map(cb), shared_map(cb)}};
    run_children(4, two_hosts_child, &t);
    for (int i = 0; i < 2; i++) {
        munmap(t.host[i], hb);
        munmap(t.cross[i], cb);
    }
}

/* expects an error whose message contains `needle` */
static int expect_error(int me, lk_status st, const char *needle)
{
    if (st != LK_OK && strstr(lk_error_message(), needle)) return 0;
    fprintf(stderr, "process %d: expected an error with '%s', got %s\n", me, needle,
            st == LK_OK ? "success" : lk_error_message());
    return 1;
}

static int mismatch_child(int me, void *arg)
{
    group *g = arg;
    lk_shm s;
    lk_shm_attach(&s, g->region, me, 2, PIECE, 100, 10.0);
    float buf[16] = {0};
    if (expect_error(me, lk_shm_allreduce(&s, buf, me ? 11 : 10, LK_REDUCE_SUM, 1, NULL, NULL),
                     "differ"))
        return 1;
    /* and afterwards the group stays failed instead of pairing calls wrongly */
    return expect_error(me, lk_shm_allreduce(&s, buf, 10, LK_REDUCE_SUM, 1, NULL, NULL), "abandoned");
}

static int mismatch_place_child(int me, void *arg)
{
    group *g = arg;
    lk_shm s;
    lk_shm_attach(&s, g->region, me, 2, PIECE, 100, 10.0);
    float buf[10] = {0};
    float *where = me ? lk_shm_grads(&s) : buf; /* same length, one in place and one not */
    return expect_error(me, lk_shm_allreduce(&s, where, 10, LK_REDUCE_SUM, 1, NULL, NULL), "differ");
}

static void test_mismatch(void **state)
{
    (void)state;
    size_t bytes = lk_shm_region_bytes(2, PIECE, 100);
    group g = {shared_map(bytes), 2, 100, 10.0};
    run_children(2, mismatch_child, &g);
    memset(g.region, 0, bytes);
    run_children(2, mismatch_place_child, &g);
    munmap(g.region, bytes);
}

/* process 1 arrives only after process 0 gave up: both get an error, no hang */
static int late_child(int me, void *arg)
{
    group *g = arg;
    lk_shm s;
    lk_shm_attach(&s, g->region, me, 2, PIECE, 0, g->timeout_s);
    float buf[4] = {1, 2, 3, 4};
    if (me == 1) {
        struct timespec t = {1, 500000000L};
        nanosleep(&t, NULL);
        return expect_error(me, lk_shm_allreduce(&s, buf, 4, LK_REDUCE_SUM, 1, NULL, NULL),
                            "local rank 0 on this host failed");
    }
    double t0 = lk_now();
    if (expect_error(me, lk_shm_allreduce(&s, buf, 4, LK_REDUCE_SUM, 1, NULL, NULL), "did not arrive"))
        return 1;
    double waited = lk_now() - t0;
    if (waited < g->timeout_s * 0.9 || waited > g->timeout_s + 1.0) {
        fprintf(stderr, "gave up after %.2f s, timeout %.2f s\n", waited, g->timeout_s);
        return 1;
    }
    return 0;
}

static void test_timeout(void **state)
{
    (void)state;
    size_t bytes = lk_shm_region_bytes(2, PIECE, 0);
    group g = {shared_map(bytes), 2, 0, 0.5};
    run_children(2, late_child, &g);
    munmap(g.region, bytes);
}

static int open_child(int me, void *arg)
{
    (void)me;
    float *p = NULL;
    if (lk_shm_map_open(arg, 4096, (void **)&p) != LK_OK) return 1;
    int ok = p[7] == 7.0f;
    p[8] = 8.0f;
    lk_shm_map_close(p, 4096);
    return ok ? 0 : 1;
}

static void test_named_objects(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof name, "/lockstep-test-%ld", (long)getpid());
    float *p = NULL;
    TU_OK(lk_shm_map_create(name, 4096, (void **)&p));
    assert_true(p[0] == 0.0f && p[1023] == 0.0f); /* zeroed */
    p[7] = 7.0f;
    run_children(1, open_child, name);
    assert_true(p[8] == 8.0f);
    /* the name is taken; a second create fails instead of sharing by accident */
    void *q = NULL;
    assert_int_equal(lk_shm_map_create(name, 4096, &q), LK_ERR_COMM);
    lk_shm_map_unlink(name);
    lk_shm_map_close(p, 4096);
    assert_int_equal(lk_shm_map_open(name, 4096, &q), LK_ERR_COMM); /* gone */
    assert_non_null(strstr(lk_error_message(), name));
    /* more than /dev/shm holds: an error naming the size, not a SIGBUS later */
    snprintf(name, sizeof name, "/lockstep-test-big-%ld", (long)getpid());
    assert_int_equal(lk_shm_map_create(name, (size_t)1 << 46, &q), LK_ERR_COMM);
    assert_non_null(strstr(lk_error_message(), "cannot reserve"));
    assert_int_equal(lk_shm_map_open(name, 4096, &q), LK_ERR_COMM); /* nothing left behind */
}

static void test_piece_for(void **state)
{
    (void)state;
    assert_int_equal(lk_shm_piece_for(2, (size_t)32 << 20), 1u << 18); /* capped at 1 MiB */
    size_t p = lk_shm_piece_for(64, (size_t)32 << 20);
    assert_true(p > 0 && p % 1024 == 0 && lk_shm_region_bytes(64, p, 0) <= (size_t)32 << 20);
    assert_int_equal(lk_shm_piece_for(4, 100), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_staged),   cmocka_unit_test(test_in_place),
        cmocka_unit_test(test_two_hosts), cmocka_unit_test(test_mismatch),
        cmocka_unit_test(test_timeout),  cmocka_unit_test(test_named_objects),
        cmocka_unit_test(test_piece_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
