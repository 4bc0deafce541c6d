/* common.c - error buffer, logging, allocation and clock. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char lk_errbuf[1024];
static _Thread_local char lk_errwhere[128];
static lk_log_level lk_level = LK_LOG_INFO; /* process-wide verbosity, set once by the CLI */

lk_status lk_error_set(lk_status code, const char *file, int line, const char *fmt, ...)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    snprintf(lk_errwhere, sizeof lk_errwhere, "%s:%d", base, line);
    /* formatted into a copy: the arguments may include lk_error_message() itself */
    char tmp[sizeof lk_errbuf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(lk_errbuf, tmp, sizeof tmp);
    return code;
}

const char *lk_error_message(void) { return lk_errbuf; }
const char *lk_error_where(void) { return lk_errwhere; }

const char *lk_status_name(lk_status s)
{
    switch (s) {
    case LK_OK: return "ok";
    case LK_ERR_ARG: return "bad argument";
    case LK_ERR_IO: return "I/O error";
    case LK_ERR_FORMAT: return "bad file format";
    case LK_ERR_SHAPE: return "shape mismatch";
    case LK_ERR_NOMEM: return "out of memory";
    case LK_ERR_DEVICE: return "device error";
    case LK_ERR_COMM: return "communication error";
    case LK_ERR_STATE: return "invalid state";
    }
    return "unknown error";
}

void lk_log_set_level(lk_log_level level) { lk_level = level; }

void lk_log(lk_log_level level, const char *fmt, ...)
{
    if (level > lk_level) return;
    static const char *tag[] = {"error", "warning", "info", "debug"};
    FILE *out = level <= LK_LOG_WARN ? stderr : stdout;
    fprintf(out, "lockstep: %s: ", tag[level]);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
}

void *lk_malloc(size_t bytes) { return malloc(bytes ? bytes : 1); }
void *lk_calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }
void lk_free(void *p) { free(p); }

double lk_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
