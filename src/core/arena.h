/* arena.h - bump allocator over one device allocation.
 *
 * Two-phase use: an arena created with lk_arena_measure() hands out no memory and
 * only adds up sizes; the real arena is then made once with that total, and the
 * same sequence of lk_arena_take() calls yields the real pointers. */
#ifndef LK_ARENA_H
#define LK_ARENA_H

#include "device.h"

typedef struct {
    lk_device *dev;
    char *base;   /* NULL while measuring */
    size_t size;  /* capacity (0 while measuring) */
    size_t used;
} lk_arena;

#define LK_ARENA_ALIGN 64

lk_arena lk_arena_measure(void);
lk_status lk_arena_create(lk_arena *a, lk_device *dev, size_t bytes);
void lk_arena_destroy(lk_arena *a);
/* Next `bytes` (aligned to LK_ARENA_ALIGN); NULL while measuring. */
void *lk_arena_take(lk_arena *a, size_t bytes);

#endif
