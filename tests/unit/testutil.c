/* testutil.c - shared helpers for the cmocka tests. */
#include "testutil.h"

#include "comm/comm.h"
#include "core/layers.h"
#include "core/model.h"
#include "models/spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static lk_device *tu_dev;
static char tu_dir[512];
static int tu_registered;
static lk_spec *tu_specs[32];

static void tu_cleanup(void);
static void tu_register(void)
{
    if (!tu_registered) atexit(tu_cleanup);
    tu_registered = 1;
}

static void tu_cleanup(void)
{
    if (tu_dev) lk_device_close(tu_dev);
    tu_dev = NULL;
    for (int i = 0; i < 32; i++) lk_spec_free(tu_specs[i]), tu_specs[i] = NULL;
    if (tu_dir[0]) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tu_dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tu_dir);
    }
}

lk_device *tu_cpu(void)
{
    if (!tu_dev) {
        if (lk_device_open(&tu_dev, "cpu", 1) != LK_OK) {
            fprintf(stderr, "cannot open cpu device: %s\n", lk_error_message());
            abort();
        }
        tu_register();
    }
    return tu_dev;
}

const struct lk_spec *tu_builtin(const char *name)
{
    int i = 0;
    for (; i < 32 && tu_specs[i]; i++)
        if (!strcmp(lk_spec_name(tu_specs[i]), name)) return tu_specs[i];
    if (i == 32 || lk_spec_builtin(name, &tu_specs[i]) != LK_OK) {
        fprintf(stderr, "built-in model %s: %s\n", name, lk_error_message());
        abort();
    }
    tu_register();
    return tu_specs[i];
}

const char *tu_tmpdir(void)
{
    if (!tu_dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tu_dir, sizeof tu_dir, "%s/lktest.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tu_dir)) {
            perror("mkdtemp");
            abort();
        }
        tu_register();
    }
    return tu_dir;
}

const char *tu_write(const char *name, const void *bytes, size_t n)
{
    static char paths[64][600];
    static int next;
    char *p = paths[next++ % 64];
    snprintf(p, 600, "%s/%s", tu_tmpdir(), name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(bytes, 1, n, f) != n) {
        perror(p);
        abort();
    }
    fclose(f);
    return p;
}

static const char *fake_lo, *fake_hi;
static int fake_owns(lk_device *d, const void *p)
{
    (void)d;
    return (const char *)p >= fake_lo && (const char *)p < fake_hi;
}

void tu_fake_device(lk_device *dev, lk_backend *ops, const void *lo, size_t bytes)
{
    *ops = *tu_cpu()->ops;
    ops->owns = fake_owns;
    *dev = *tu_cpu();
    dev->ops = ops;
    dev->host_addressable = 0;
    fake_lo = lo;
    fake_hi = (const char *)lo + bytes;
}

int tu_mpi_main(int *argc, char ***argv, struct lk_comm **comm, const struct CMUnitTest *tests,
                size_t ntests)
{
    lk_status s = lk_comm_open(comm, "auto", argc, argv);
    if (s != LK_OK) {
        fprintf(stderr, "cannot open the communicator: %s\n", lk_error_message());
        return 1;
    }
    int failed = _cmocka_run_group_tests("tests", tests, ntests, NULL, NULL);
    double f = failed; /* a failure on any rank fails every rank */
    if (lk_comm_allreduce_f64(*comm, &f, 1, LK_REDUCE_MAX) != LK_OK) f = 1;
    lk_comm_close(*comm);
    return f > 0 ? 1 : 0;
}

struct lk_model *tu_linear_stack(const int *dims, int n, unsigned tanh_after)
{
    lk_shape s = lk_shape_make(1, &dims[0]);
    lk_model *m;
    TU_OK(lk_model_create(&m, tu_cpu(), &s));
    for (int i = 0; i + 1 < n; i++) {
        TU_OK(lk_model_add(m, lk_linear(dims[i], dims[i + 1], 1)));
        if (tanh_after >> i & 1u) TU_OK(lk_model_add(m, lk_activation(LK_ACT_TANH, 0)));
    }
    TU_OK(lk_model_build(m, 4));
    return m;
}

struct lk_model *tu_zoo_model(const tu_zoo_spec *sp, int recompute, lk_dtype precision, int build)
{
    lk_model *m;
    TU_OK(lk_model_create(&m, tu_cpu(), &sp->sample));
    TU_OK(lk_zoo_build(sp->name, m, sp->classes, &sp->arch));
    TU_OK(lk_model_set_recompute(m, (lk_recompute)recompute));
    TU_OK(lk_model_set_precision(m, precision, NULL));
    TU_OK(lk_model_build_ex(m, sp->batch, (lk_build)build));
    if (build != LK_BUILD_DRY) TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 11));
    return m;
}
