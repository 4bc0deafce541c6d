/* common.c - error buffer, allocation and clock. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char lk_errbuf[1024];
static _Thread_local char lk_errwhere[128];

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

void *lk_malloc(size_t bytes) { return malloc(bytes ? bytes : 1); }
void *lk_calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }
void *lk_realloc(void *p, size_t bytes) { return realloc(p, bytes ? bytes : 1); }
void lk_free(void *p) { free(p); }

double lk_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
