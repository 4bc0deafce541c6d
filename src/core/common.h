/* common.h - status codes, error reporting, allocation and the clock, shared by every module.
 *
 * Library code never exits: it returns an lk_status and records a message that
 * names what was wrong (file, flag, shape) together with the source file:line.
 * The message lives in a thread-local buffer, like errno. */
#ifndef LK_COMMON_H
#define LK_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define LK_VERSION "0.1.0"

typedef enum {
    LK_OK = 0,
    LK_ERR_ARG,     /* bad argument or flag */
    LK_ERR_IO,      /* a file could not be opened/read/written */
    LK_ERR_FORMAT,  /* a file's content is wrong (magic, sizes, checksum) */
    LK_ERR_SHAPE,   /* tensor shapes do not fit */
    LK_ERR_NOMEM,   /* an allocation failed */
    LK_ERR_DEVICE,  /* a backend call failed */
    LK_ERR_COMM,    /* communication between ranks failed */
    LK_ERR_STATE,   /* numerics went wrong (NaN loss) or an object is misused */
} lk_status;

/* Records the message and where it was raised (file:line) for the calling
 * thread and returns code. */
lk_status lk_error_set(lk_status code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The last recorded message of this thread ("" when none), and its file:line. */
const char *lk_error_message(void);
const char *lk_error_where(void);

#define LK_ERR(code, ...) lk_error_set((code), __FILE__, __LINE__, __VA_ARGS__)
#define LK_CHECK(expr)                          \
    do {                                        \
        lk_status lk_s_ = (expr);               \
        if (lk_s_ != LK_OK) return lk_s_;       \
    } while (0)

/* Allocation through one place so tests can count it. */
void *lk_malloc(size_t bytes);
void *lk_calloc(size_t n, size_t size);
void *lk_realloc(void *p, size_t bytes); /* NULL: p is left as it was */
void lk_free(void *p);

/* Monotonic time in seconds. */
double lk_now(void);

#define LK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LK_MAX(a, b) ((a) > (b) ? (a) : (b))
#define LK_ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))

#endif
