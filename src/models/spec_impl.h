/* spec_impl.h - a parsed spec, shared by spec.c (parsing) and spec_build.c (building).
 * Internal to src/models. */
#ifndef LK_SPEC_IMPL_H
#define LK_SPEC_IMPL_H

#include <cjson/cJSON.h>
#include "spec.h"

struct lk_spec {
    cJSON *root;
    char *text;    /* pretty-printed */
    char origin[160];
    lk_zoo_entry e;
    int builtin;
};

#define SPEC_MAX_DEPTH 32 /* lists within lists, and blocks within blocks */

/* The node's JSON on one line, cut to fit buf. */
const char *lk_spec_node_text(const cJSON *n, char *buf, size_t size);

#endif
