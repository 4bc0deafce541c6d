/* testutil.h - shared helpers for the cmocka tests. */
#ifndef LK_TESTUTIL_H
#define LK_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/device.h"

/* A CPU device with 1 thread (opened once per test binary, closed at exit). */
lk_device *tu_cpu(void);
/* A fresh temporary directory under $TMPDIR (removed at exit). */
const char *tu_tmpdir(void);
/* Writes bytes to tu_tmpdir()/name and returns that path (a ring of 64 buffers). */
const char *tu_write(const char *name, const void *bytes, size_t n);
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
