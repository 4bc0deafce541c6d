/* testutil.c - shared helpers for the cmocka tests. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static lk_device *tu_dev;
static char tu_dir[512];
static int tu_registered;

static void tu_cleanup(void);
static void tu_register(void)
{
    if (!tu_registered) atexit(tu_cleanup);
    tu_registered = 1;
}

static void tu_cleanup(void)
{
    if (tu_dev) lk_device_close(tu_dev);
    tu_dev = NULL;
    if (tu_dir[0]) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tu_dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tu_dir);
    }
}

lk_device *tu_cpu(void)
{
    if (!tu_dev) {
        if (lk_device_open(&tu_dev, "cpu", 1) != LK_OK) {
            fprintf(stderr, "cannot open cpu device: %s\n", lk_error_message());
            abort();
        }
        tu_register();
    }
    return tu_dev;
}

const char *tu_tmpdir(void)
{
    if (!tu_dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tu_dir, sizeof tu_dir, "%s/lktest.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tu_dir)) {
            perror("mkdtemp");
            abort();
        }
        tu_register();
    }
    return tu_dir;
}

const char *tu_write(const char *name, const void *bytes, size_t n)
{
    static char paths[64][600];
    static int next;
    char *p = paths[next++ % 64];
    snprintf(p, 600, "%s/%s", tu_tmpdir(), name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(bytes, 1, n, f) != n) {
        perror(p);
        abort();
    }
    fclose(f);
    return p;
}
