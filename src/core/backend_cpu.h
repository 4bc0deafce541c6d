/* backend_cpu.h - pieces of the CPU backend shared between its files. */
#ifndef LK_BACKEND_CPU_H
#define LK_BACKEND_CPU_H

#include <stdio.h>

#include "device.h"

/* Below this many elements a loop runs on one thread. */
#define LK_CPU_PAR_MIN 32768L

size_t lk_cpu_conv2d_saved(lk_device *d, const lk_conv2d_desc *cd);
size_t lk_cpu_conv2d_workspace(lk_device *d, const lk_conv2d_desc *cd);
void lk_cpu_conv2d_forward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const float *w,
                           const float *b, float *y, void *saved, void *ws);
void lk_cpu_conv2d_backward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const float *w,
                            const float *dy, float *dx, float *dw, float *db, float beta,
                            void *saved, void *ws);
void lk_cpu_pool2d_forward(lk_device *d, const lk_pool2d_desc *pd, const float *x, float *y,
                           int32_t *argmax);
void lk_cpu_pool2d_backward(lk_device *d, const lk_pool2d_desc *pd, const float *dy,
                            const int32_t *argmax, float *dx);
void lk_cpu_optim_update(lk_device *d, const lk_optim_hparams *hp, float *w, const float *g,
                         float *s1, float *s2, size_t n);

#endif
