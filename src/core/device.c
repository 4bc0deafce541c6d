/* device.c - opening a device by name. This is the only place that chooses a
 * backend; everything else goes through dev->ops. */
#include "device.h"

#include <stdlib.h>
#include <string.h>

lk_status lk_device_open(lk_device **out, const char *spec, int threads)
{
    *out = NULL;
    if (!spec || !*spec) spec = "auto";
    int want_cuda = !strcmp(spec, "cuda") || !strncmp(spec, "cuda:", 5);
    if (!want_cuda && strcmp(spec, "cpu") && strcmp(spec, "auto"))
        return LK_ERR(LK_ERR_ARG, "unknown device '%s' (expected auto, cpu, cuda or cuda:N)", spec);
    if (want_cuda)
        return LK_ERR(LK_ERR_DEVICE,
                      "device '%s': this build of lockstep has no CUDA backend; use --device cpu",
                      spec);
    lk_device *d = lk_calloc(1, sizeof *d);
    if (!d) return LK_ERR(LK_ERR_NOMEM, "cannot allocate a device");
    lk_status s = lk_backend_cpu_open(d, threads);
    if (s != LK_OK) {
        lk_free(d);
        return s;
    }
    *out = d;
    return LK_OK;
}

void lk_device_close(lk_device *d)
{
    if (!d) return;
    if (d->kind == LK_DEV_CPU) lk_backend_cpu_close(d);
    lk_free(d);
}
