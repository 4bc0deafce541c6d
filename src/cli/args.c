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

lk_status lk_arg_bytes(const char *flag, const char *text, size_t lo, size_t hi, size_t *out)
{
    char *end;
    errno = 0;
    if (*text == '-') return LK_ERR(LK_ERR_ARG, "%s: expected a size, got '%s'", flag, text);
    unsigned long long v = strtoull(text, &end, 10);
    int shift = 0;
    if (*end == 'K' || *end == 'k') shift = 10, end++;
    else if (*end == 'M' || *end == 'm') shift = 20, end++;
    else if (*end == 'G' || *end == 'g') shift = 30, end++;
    if (errno || end == text || *end || v > (~0ULL >> shift))
        return LK_ERR(LK_ERR_ARG, "%s: expected a size in bytes (K, M, G: 2^10, 2^20, 2^30), got '%s'",
                      flag, text);
    v <<= shift;
    if (v < lo || v > hi) return LK_ERR(LK_ERR_ARG, "%s: %llu bytes is outside %zu..%zu", flag, v, lo, hi);
    *out = (size_t)v;
    return LK_OK;
}
