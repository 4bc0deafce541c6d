/* testutil.h - shared helpers for the cmocka tests. */
#ifndef LK_TESTUTIL_H
#define LK_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/device.h"
#include "core/tensor.h"
#include "models/zoo.h"

/* A CPU device with 1 thread (opened once per test binary, closed at exit). */
lk_device *tu_cpu(void);
/* A fresh temporary directory under $TMPDIR (removed at exit). */
const char *tu_tmpdir(void);
/* The built-in model's spec, kept until the test exits. */
struct lk_spec;
const struct lk_spec *tu_builtin(const char *name);
/* Writes bytes to tu_tmpdir()/name and returns that path (a ring of 64 buffers). */
const char *tu_write(const char *name, const void *bytes, size_t n);
/* A CPU device (*dev, its vtable in *ops) that claims the bytes [lo, lo + bytes) as memory
 * the host cannot address: the communicator's staging path for device buffers, on a CPU. */
void tu_fake_device(lk_device *dev, lk_backend *ops, const void *lo, size_t bytes);
/* An MPI test's main: opens the communicator (*comm), runs the tests, fails every rank when
 * one fails, closes; returns the exit status. */
struct lk_comm;
int tu_mpi_main(int *argc, char ***argv, struct lk_comm **comm, const struct CMUnitTest *tests,
                size_t ntests);
/* A zoo model built on tu_cpu() and initialised (seed 11; not for LK_BUILD_DRY). */
typedef struct {
    const char *name;
    lk_shape sample;
    int classes;
    lk_arch arch;
    int batch;
} tu_zoo_spec;
struct lk_model;
struct lk_model *tu_zoo_model(const tu_zoo_spec *sp, int recompute, lk_dtype precision, int build);
/* Linear layers dims[0] -> dims[1] -> ... -> dims[n - 1] on tu_cpu(), a tanh after layer i
 * where bit i of tanh_after is set, built for batches of 4 (not initialised): the small
 * models of the gradient-communication tests. */
struct lk_model *tu_linear_stack(const int *dims, int n, unsigned tanh_after);
/* Fails the test with lk_error_message() when s != LK_OK. */
#define TU_OK(expr)                                                                   \
    do {                                                                              \
        lk_status tu_s_ = (expr);                                                     \
        if (tu_s_ != LK_OK) fail_msg("%s failed: %s", #expr, lk_error_message());     \
    } while (0)
/* Asserts the status and that the error message contains `needle`. */
#define TU_FAILS_WITH(expr, code, needle)                                             \
    do {                                                                              \
        lk_status tu_s_ = (expr);                                                     \
        if (tu_s_ != (code))                                                          \
            fail_msg("%s returned %d, expected %d (%s)", #expr, tu_s_, code,         \
                     lk_error_message());                                             \
        if (!strstr(lk_error_message(), (needle)))                                    \
            fail_msg("error '%s' does not mention '%s'", lk_error_message(), needle); \
    } while (0)

#endif
