/* args.c - flag value parsing. */
#include "args.h"

#include <stdio.h>
#include <string.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>

lk_status lk_arg_int(const char *flag, const char *text, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end)
        return LK_ERR(LK_ERR_ARG, "%s: expected an integer, got '%s'", flag, text);
    if (v < lo || v > hi)
        return LK_ERR(LK_ERR_ARG, "%s: %ld is outside %ld..%ld", flag, v, lo, hi);
    *out = v;
    return LK_OK;
}

lk_status lk_arg_float(const char *flag, const char *text, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v))
        return LK_ERR(LK_ERR_ARG, "%s: expected a number, got '%s'", flag, text);
    if (v < lo || v > hi) return LK_ERR(LK_ERR_ARG, "%s: %g is outside [%g, %g]", flag, v, lo, hi);
    *out = v;
    return LK_OK;
}

lk_status lk_arg_u64(const char *flag, const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*text == '-') return LK_ERR(LK_ERR_ARG, "%s: expected a non-negative integer, got '%s'", flag, text);
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end)
        return LK_ERR(LK_ERR_ARG, "%s: expected a non-negative integer, got '%s'", flag, text);
    *out = v;
    return LK_OK;
}

lk_status lk_arg_choice(const char *flag, const char *text, int n, const char *const names[],
                        const int values[], int *out)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(text, names[i])) {
            *out = values[i];
            return LK_OK;
        }
    char list[256] = "";
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", names[i],
                                i + 2 < n ? ", " : i + 2 == n ? " or " : "");
    return LK_ERR(LK_ERR_ARG, "%s: expected %s, got '%s'", flag, list, text);
}
