/* test_partition.c - the federated clients' deal (--partition): every sample on exactly one
 * client, the same deal from the same seed on every rank, iid parts of equal size,
 * classes:K giving each client K distinct classes and every class a client, Dirichlet
 * shares near-even for a large A and concentrated for a small one, and the refusals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/partition.h"
#include "testutil.h"

/* n samples of C classes, class c holding about n/C (uneven: sample i is class (i * 7) % C
 * for the first half, i % C after) */
static lk_dataset synthetic(int n, int C)
{
    lk_dataset d;
    memset(&d, 0, sizeof d);
    d.n = n, d.nclasses = C, d.sample = (lk_shape){1, {1}};
    d.y = malloc((size_t)n * sizeof *d.y);
    for (int i = 0; i < n; i++) d.y[i] = i < n / 2 ? (int32_t)((i * 7) % C) : i % C;
    return d;
}

/* Every client's deal; checks they cover the set once. owner[i]: sample i's client. */
static void deal(const lk_dataset *d, const char *spec, int world, uint64_t seed, int *owner, int *sizes)
{
    lk_partition_spec p;
    TU_OK(lk_partition_parse(spec, &p));
    for (int i = 0; i < d->n; i++) owner[i] = -1;
    for (int r = 0; r < world; r++) {
        int32_t *idx;
        int n;
        TU_OK(lk_partition(d, &p, world, seed, r, &idx, &n));
        sizes[r] = n;
        for (int k = 0; k < n; k++) {
            if (k && idx[k] <= idx[k - 1]) fail_msg("%s: client %d's indices are not ascending", spec, r);
            if (owner[idx[k]] >= 0) fail_msg("%s: sample %d dealt to clients %d and %d", spec, idx[k], owner[idx[k]], r);
            owner[idx[k]] = r;
        }
        free(idx);
    }
    for (int i = 0; i < d->n; i++)
        if (owner[i] < 0) fail_msg("%s: sample %d dealt to no client", spec, i);
}

static void test_iid(void **state)
{
    (void)state;
    lk_dataset d = synthetic(1003, 10);
    int owner[1003], again[1003], other[1003], sizes[7];
    deal(&d, "iid", 7, 1, owner, sizes);
    for (int r = 0; r < 7; r++) assert_true(sizes[r] == 143 || sizes[r] == 144);
    deal(&d, "iid", 7, 1, again, sizes);
    assert_memory_equal(owner, again, sizeof owner); /* the same seed, the same deal */
    deal(&d, "iid", 7, 2, other, sizes);
    assert_memory_not_equal(owner, other, sizeof owner);
    free(d.y);
}

static void test_classes(void **state)
{
    (void)state;
    lk_dataset d = synthetic(1000, 10);
    int owner[1000], sizes[5];
    const int Ks[2] = {2, 3};
    for (int t = 0; t < 2; t++) {
        char spec[32];
        snprintf(spec, sizeof spec, "classes:%d", Ks[t]);
        deal(&d, spec, 5, 3, owner, sizes);
        int holds[5][10] = {{0}}, clients[10] = {0};
        for (int i = 0; i < d.n; i++) holds[owner[i]][d.y[i]] = 1;
        for (int r = 0; r < 5; r++) {
            int k = 0;
            for (int c = 0; c < 10; c++) k += holds[r][c], clients[c] += holds[r][c];
            if (k != Ks[t]) fail_msg("%s: client %d holds %d classes", spec, r, k);
        }
        for (int c = 0; c < 10; c++)
            if (!clients[c]) fail_msg("%s: class %d on no client", spec, c);
    }
    lk_partition_spec p;
    int32_t *idx;
    int n;
    TU_OK(lk_partition_parse("classes:2", &p));
    TU_FAILS_WITH(lk_partition(&d, &p, 3, 1, 0, &idx, &n), LK_ERR_ARG, "classes:2 on 3 clients holds at most 6 of the 10");
    TU_OK(lk_partition_parse("classes:11", &p));
    TU_FAILS_WITH(lk_partition(&d, &p, 20, 1, 0, &idx, &n), LK_ERR_ARG, "the set has 10 classes");
    free(d.y);
}

static void test_dirichlet(void **state)
{
    (void)state;
    lk_dataset d = synthetic(100000, 100);
    int *owner = malloc((size_t)d.n * sizeof *owner), sizes[4];
    deal(&d, "dirichlet:1000", 4, 5, owner, sizes); /* nearly even: each class about a quarter each */
    for (int r = 0; r < 4; r++)
        if (abs(sizes[r] - 25000) > 500) fail_msg("dirichlet:1000: client %d has %d of 100000", r, sizes[r]);
    deal(&d, "dirichlet:1", 4, 5, owner, sizes); /* E[share] = 1/4 over 100 classes */
    for (int r = 0; r < 4; r++)
        if (abs(sizes[r] - 25000) > 4000) fail_msg("dirichlet:1: client %d has %d of 100000", r, sizes[r]);
    deal(&d, "dirichlet:0.05", 4, 5, owner, sizes); /* concentrated: most classes mostly on one client */
    int concentrated = 0;
    for (int c = 0; c < 100; c++) {
        int per[4] = {0}, total = 0, most = 0;
        for (int i = c; i < d.n; i += 1) /* (class c's samples) */
            if (d.y[i] == c) per[owner[i]]++, total++;
        for (int r = 0; r < 4; r++) most = per[r] > most ? per[r] : most;
        concentrated += most > 0.9 * total;
    }
    if (concentrated < 60) fail_msg("dirichlet:0.05: only %d of 100 classes have 90%% on one client", concentrated);
    lk_partition_spec p;
    int32_t *idx;
    int n;
    TU_OK(lk_partition_parse("dirichlet:0.001", &p));
    lk_dataset small = synthetic(200, 2);
    TU_FAILS_WITH(lk_partition(&small, &p, 16, 1, 0, &idx, &n), LK_ERR_ARG, "without samples");
    free(small.y);
    free(owner);
    free(d.y);
}

static void test_parse(void **state)
{
    (void)state;
    lk_partition_spec p;
    TU_OK(lk_partition_parse("dirichlet:0.5", &p));
    assert_int_equal(p.kind, LK_PART_DIRICHLET);
    TU_FAILS_WITH(lk_partition_parse("classes:0", &p), LK_ERR_ARG, "classes:K takes a whole K");
    TU_FAILS_WITH(lk_partition_parse("dirichlet:-1", &p), LK_ERR_ARG, "positive A");
    TU_FAILS_WITH(lk_partition_parse("shards", &p), LK_ERR_ARG, "expected iid, classes:K or dirichlet:A");
    lk_dataset d = synthetic(3, 2);
    int32_t *idx;
    int n;
    TU_OK(lk_partition_parse("iid", &p));
    TU_FAILS_WITH(lk_partition(&d, &p, 4, 1, 0, &idx, &n), LK_ERR_ARG, "3 samples for 4 clients");
    free(d.y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iid),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_dirichlet),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
