/* args.h - strict parsing of flag values: every error names the flag and the text. */
#ifndef LK_ARGS_H
#define LK_ARGS_H

#include <stdint.h>

#include "../core/common.h"

lk_status lk_arg_int(const char *flag, const char *text, long lo, long hi, long *out);
lk_status lk_arg_float(const char *flag, const char *text, double lo, double hi, double *out);
lk_status lk_arg_u64(const char *flag, const char *text, uint64_t *out);
/* A size in bytes, with an optional K, M or G (binary) suffix, in [lo, hi]. */
lk_status lk_arg_bytes(const char *flag, const char *text, size_t lo, size_t hi, size_t *out);
/* One of n named choices: *out = values[i] for text == names[i]; otherwise an error
 * listing the names ("--shm: expected auto or off, got 'on'"). */
lk_status lk_arg_choice(const char *flag, const char *text, int n, const char *const names[],
                        const int values[], int *out);

#endif
