/* fuzz.h - what every libFuzzer target shares: the input written to a file of this
 * process's (the readers take paths), on a RAM disk where there is one. */
#ifndef LK_FUZZ_H
#define LK_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"

/* this process's directory for the inputs */
static inline const char *fuzz_dir(void)
{
    static char dir[128];
    if (!dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof dir, "%s/lk-fuzz-%ld", base, (long)getpid());
        mkdir(dir, 0700);
    }
    return dir;
}

/* data[0, size) as the file `name` in that directory; its path (static storage per name slot) */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size)
{
    static char paths[4][256];
    static int next;
    char *path = paths[next++ & 3];
    snprintf(path, sizeof paths[0], "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    return path;
}

/* an input cut in two: its first 4 bytes (little-endian) the first part's length, clamped */
static inline void fuzz_split(const uint8_t *data, size_t size, const uint8_t **a, size_t *na, const uint8_t **b,
                       size_t *nb)
{
    const size_t head = size < 4 ? size : 4, body = size - head;
    size_t cut = 0;
    for (size_t i = 0; i < head; i++) cut |= (size_t)data[i] << (8 * i);
    if (cut > body) cut = body;
    *a = data + head, *na = cut;
    *b = *a + cut, *nb = body - cut;
}

/* a token reader (lk_tokens_open's kind and argument) on both splits */
#define FUZZ_TOKENS(kind, arg, ctx)                                            \
    for (int train_ = 0; train_ < 2; train_++) {                               \
        lk_dataset d_;                                                         \
        memset(&d_, 0, sizeof d_);                                             \
        lk_status st_ = lk_tokens_open(kind, arg, train_, ctx, &d_);           \
        FUZZ_EXPECT_MESSAGE(st_);                                              \
        lk_dataset_free(&d_);                                                  \
    }

/* a reader must either succeed or fail with a message: never crash, leak or hang */
#define FUZZ_EXPECT_MESSAGE(st)                                                  \
    do {                                                                       \
        if ((st) != LK_OK && !lk_error_message()[0]) abort();                  \
    } while (0)

#endif
