/* zoo_rows.h - the built-in specs, generated from src/models/specs by
 * cmake/embed_specs.cmake. Internal to src/models. */
#ifndef LK_ZOO_ROWS_H
#define LK_ZOO_ROWS_H

typedef struct {
    const char *name;
    const char *text; /* the spec file's JSON */
} lk_zoo_row;

extern const lk_zoo_row lk_zoo_rows[];
extern const int lk_zoo_nrows;

#endif
