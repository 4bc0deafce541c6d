/* device.c - opening a device by name. This is the only place that chooses a
 * backend; everything else goes through dev->ops. */
#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !LK_HAVE_CUDA /* a build without CUDA sees no GPU */
int lk_cuda_device_count(void) { return 0; }
const char *lk_cuda_describe(void) { return "not built (LK_CUDA=OFF, or no nvcc at build time)"; }
int lk_cuda_pci_bus_id(int ordinal, char *buf, int len)
{
    (void)ordinal;
    if (len > 0) buf[0] = 0;
    return -1;
}
#endif

/* "cuda" is cuda:0; "cuda:N" must be a whole number */
static lk_status parse_ordinal(const char *spec, int *ordinal)
{
    *ordinal = 0;
    if (!strcmp(spec, "cuda")) return LK_OK;
    char *end = NULL;
    long v = strtol(spec + 5, &end, 10);
    if (!spec[5] || *end || v < 0 || v > 1024)
        return LK_ERR(LK_ERR_ARG, "device '%s': expected cuda:N with N a GPU number", spec);
    *ordinal = (int)v;
    return LK_OK;
}

/* checks a device name; *want_cuda for "cuda" and "cuda:N" (then *ordinal) */
static lk_status parse_spec(const char **spec, int *want_cuda, int *ordinal)
{
    if (!*spec || !**spec) *spec = "auto";
    *want_cuda = !strcmp(*spec, "cuda") || !strncmp(*spec, "cuda:", 5);
    *ordinal = 0;
    if (!*want_cuda && strcmp(*spec, "cpu") && strcmp(*spec, "auto"))
        return LK_ERR(LK_ERR_ARG, "unknown device '%s' (expected auto, cpu, cuda or cuda:N)", *spec);
    return *want_cuda ? parse_ordinal(*spec, ordinal) : LK_OK;
}

lk_status lk_device_resolve(const char *spec, int local_rank, char *out, size_t len)
{
    int want_cuda, ordinal;
    LK_CHECK(parse_spec(&spec, &want_cuda, &ordinal));
    const int count = lk_cuda_device_count();
    if (!strcmp(spec, "cpu") || (!strcmp(spec, "auto") && count == 0))
        snprintf(out, len, "cpu");
    else if (!strncmp(spec, "cuda:", 5))
        snprintf(out, len, "%s", spec);
    else /* auto with a GPU, or cuda: one per local rank */
        snprintf(out, len, "cuda:%d", count > 0 ? local_rank % count : 0);
    return LK_OK;
}

lk_status lk_device_open(lk_device **out, const char *spec, int threads)
{
    *out = NULL;
    int want_cuda, ordinal;
    LK_CHECK(parse_spec(&spec, &want_cuda, &ordinal));
#if !LK_HAVE_CUDA
    if (want_cuda)
        return LK_ERR(LK_ERR_DEVICE,
                      "device '%s': this build of lockstep has no CUDA backend (built with LK_CUDA=OFF "
                      "or without nvcc); use --device cpu",
                      spec);
#endif
    if (!strcmp(spec, "auto")) want_cuda = lk_cuda_device_count() > 0;
    lk_device *d = lk_calloc(1, sizeof *d);
    if (!d) return LK_ERR(LK_ERR_NOMEM, "cannot allocate a device");
#if LK_HAVE_CUDA
    lk_status s = want_cuda ? lk_backend_cuda_open(d, ordinal, threads)
                            : lk_backend_cpu_open(d, threads);
#else
    lk_status s = lk_backend_cpu_open(d, threads);
#endif
    if (s != LK_OK) {
        lk_free(d);
        return s;
    }
    *out = d;
    return LK_OK;
}

lk_status lk_device_open_helper(lk_device **out, const lk_device *main)
{
    *out = NULL;
    if (main->kind != LK_DEV_CPU)
        return LK_ERR(LK_ERR_DEVICE, "%s: no helper device for another thread (only a CPU has one)", main->name);
    lk_device *d = lk_calloc(1, sizeof *d);
    if (!d) return LK_ERR(LK_ERR_NOMEM, "cannot allocate a helper device");
    lk_status st = lk_backend_cpu_open_helper(d);
    if (st != LK_OK) {
        lk_free(d);
        return st;
    }
    *out = d;
    return LK_OK;
}

void lk_device_close(lk_device *d)
{
    if (!d) return;
    if (d->kind == LK_DEV_CPU) lk_backend_cpu_close(d);
#if LK_HAVE_CUDA
    if (d->kind == LK_DEV_CUDA) lk_backend_cuda_close(d);
#endif
    lk_free(d);
}
