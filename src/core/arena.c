/* arena.c - bump allocator. */
#include "arena.h"

lk_arena lk_arena_measure(void)
{
    lk_arena a = {0};
    return a;
}

lk_status lk_arena_create(lk_arena *a, lk_device *dev, size_t bytes)
{
    a->dev = dev;
    a->used = 0;
    a->size = bytes;
    a->base = bytes ? dev->ops->alloc(dev, bytes) : NULL;
    if (bytes && !a->base)
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate %zu bytes of activation memory on %s",
                      bytes, dev->name);
    if (bytes) dev->ops->memset0(dev, a->base, bytes);
    return LK_OK;
}

void lk_arena_destroy(lk_arena *a)
{
    if (a->base) a->dev->ops->free(a->dev, a->base);
    a->base = NULL;
    a->size = a->used = 0;
}

void *lk_arena_take(lk_arena *a, size_t bytes)
{
    size_t off = LK_ALIGN_UP(a->used, LK_ARENA_ALIGN);
    a->used = off + LK_ALIGN_UP(bytes, LK_ARENA_ALIGN);
    if (!a->base) return NULL;
    if (a->used > a->size) return NULL; /* the plan and the take sequence disagree: caller bug */
    return a->base + off;
}
