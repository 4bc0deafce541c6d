/* test_zero.c - ZeRO's pieces under mpirun -np 1, 2 and 3: the shard map's arithmetic by
 * hand, and checkpoints of a sharded optimizer state: written from every rank's slice
 * they are the file a whole state writes (bitwise), and they load into a whole state and
 * into the slices of any other number of ranks, bitwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/shard.h"
#include "comm/zero.h"
#include "core/checkpoint.h"
#include "core/ops.h"
#include "models/zoo.h"
#include "testutil.h"

static lk_comm *C;

static void test_shard_map(void **state)
{
    (void)state;
    lk_shard s;
    /* 101 floats over 3 ranks: 34 a rank, rounded up to 48 (cache lines): the last short */
    lk_shard_init(&s, 101, 3, 1);
    assert_int_equal(s.per, 48);
    assert_int_equal(s.lo, 48);
    assert_int_equal(s.hi, 96);
    assert_int_equal(lk_shard_lo(&s, 2), 96);
    assert_int_equal(lk_shard_hi(&s, 2), 101);
    size_t c[3];
    lk_shard_counts(&s, 40, 100, c); /* a bucket across all three */
    assert_int_equal(c[0], 8);
    assert_int_equal(c[1], 48);
    assert_int_equal(c[2], 4);
    lk_shard_counts(&s, 50, 60, c); /* inside rank 1's */
    assert_int_equal(c[0], 0);
    assert_int_equal(c[1], 10);
    assert_int_equal(c[2], 0);
    size_t lo, hi;
    lk_shard_mine(&s, 0, 40, &lo, &hi);
    assert_true(lo == hi); /* none of it is rank 1's */
    lk_shard_mine(&s, 90, 101, &lo, &hi);
    assert_int_equal(lo, 90);
    assert_int_equal(hi, 96);
    /* 16 floats over 3 ranks: one line to rank 0, nothing to the others */
    lk_shard_init(&s, 16, 3, 2);
    assert_int_equal(s.per, 16);
    assert_true(s.lo == 16 && s.hi == 16);
    /* a world of one owns it all */
    lk_shard_init(&s, 1000, 1, 0);
    assert_true(s.lo == 0 && s.hi == 1000);
}

/* state k of flat parameter i: distinct, exact, never zero */
static float value(int k, size_t i) { return (float)(k + 1) * 0.5f + (float)(i % 4093) * 0.25f; }

static void fill(lk_optim *o)
{
    for (int k = 0; k < 2; k++) {
        float *s = k ? o->s2 : o->s1;
        for (size_t i = o->lo; i < o->hi; i++) s[i - o->lo] = value(k, i);
    }
}

static void check_state(const lk_optim *o, const char *what)
{
    for (int k = 0; k < 2; k++) {
        const float *s = k ? o->s2 : o->s1;
        for (size_t i = o->lo; i < o->hi; i++)
            if (s[i - o->lo] != value(k, i) && s[i - o->lo] != 0.0f) /* 0: alignment padding */
                fail_msg("rank %d, %s: state %d of parameter %zu is %g, saved %g", C->rank, what, k, i,
                         (double)s[i - o->lo], (double)value(k, i));
    }
}

static void test_checkpoint_any_world(void **state)
{
    (void)state;
    lk_device *dev;
    TU_OK(lk_device_open(&dev, "cpu", 1));
    const lk_shape in = {1, {16}};
    lk_model *m;
    TU_OK(lk_model_create(&m, dev, &in));
    const lk_arch arch = {2, 2, 24, 16, LK_GELU_DEFAULT};
    TU_OK(lk_zoo_build("gpt", m, 50, &arch)); /* 50 tokens: tensors of uneven sizes */
    TU_OK(lk_model_build(m, 2));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 3));
    lk_optim_config cfg = lk_optim_defaults(LK_OPT_ADAMW);
    lk_optim *o;
    TU_OK(lk_optim_create(&o, dev, &cfg, m->nparams));
    lk_zero_state *z;
    TU_OK(lk_zero_create(&z, C, m, 2, 4096));
    TU_OK(lk_zero_bind(z, o)); /* a whole state, made a slice */
    assert_int_equal(o->lo, z->shard.lo);
    assert_int_equal(o->hi, z->shard.hi);
    fill(o);
    o->step = 17;
    /* every rank's slice, gathered tensor by tensor; rank 0 writes */
    char sharded[128], whole[128];
    snprintf(sharded, sizeof sharded, "/tmp/lk-test-zero-%d-a.safetensors", (int)getppid());
    snprintf(whole, sizeof whole, "/tmp/lk-test-zero-%d-b.safetensors", (int)getppid());
    lk_zero_gather g = {z, o};
    TU_OK(lk_checkpoint_save_optim_gather(C->rank == 0 ? sharded : NULL, m, o, lk_zero_gather_state, &g));
    /* the same state whole, on rank 0: the same file, byte for byte */
    lk_optim *full;
    TU_OK(lk_optim_create(&full, dev, &cfg, m->nparams));
    fill(full);
    full->step = 17;
    if (C->rank == 0) {
        TU_OK(lk_checkpoint_save_optim(whole, m, full));
        void *a, *b;
        size_t na, nb;
        TU_OK(lk_read_file(sharded, &a, &na));
        TU_OK(lk_read_file(whole, &b, &nb));
        assert_int_equal(na, nb);
        assert_true(memcmp(a, b, na) == 0);
        lk_free(a);
        lk_free(b);
        remove(whole);
    }
    TU_OK(lk_comm_barrier(C));
    /* into a whole state, and into the slices of 1, 2 and 3 ranks */
    memset(full->s1, 0, m->nparams * sizeof(float));
    memset(full->s2, 0, m->nparams * sizeof(float));
    full->step = 0;
    TU_OK(lk_checkpoint_load_optim(sharded, m, full));
    assert_int_equal(full->step, 17);
    check_state(full, "whole");
    for (int w = 1; w <= 3; w++)
        for (int r = 0; r < w; r++) {
            lk_shard s;
            lk_shard_init(&s, m->nparams, w, r);
            TU_OK(lk_optim_shard(full, s.lo, s.hi));
            TU_OK(lk_checkpoint_load_optim(sharded, m, full));
            char what[64];
            snprintf(what, sizeof what, "rank %d of %d", r, w);
            check_state(full, what);
        }
    TU_OK(lk_comm_barrier(C));
    if (C->rank == 0) remove(sharded);
    lk_optim_destroy(full);
    lk_zero_destroy(z);
    lk_optim_destroy(o);
    lk_model_destroy(m);
    lk_device_close(dev);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_map),
        cmocka_unit_test(test_checkpoint_any_world),
    };
    return tu_mpi_main(&argc, &argv, &C, tests, sizeof tests / sizeof *tests);
}
