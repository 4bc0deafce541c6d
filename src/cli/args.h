/* args.h - strict parsing of flag values: every error names the flag and the text. */
#ifndef LK_ARGS_H
#define LK_ARGS_H

#include <stdint.h>

#include "../core/common.h"

lk_status lk_arg_int(const char *flag, const char *text, long lo, long hi, long *out);
lk_status lk_arg_float(const char *flag, const char *text, double lo, double hi, double *out);
lk_status lk_arg_u64(const char *flag, const char *text, uint64_t *out);

#endif
