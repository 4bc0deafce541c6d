/* metrics.c - JSON-lines records and console progress. */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

lk_status lk_metrics_open(lk_metrics *m, const char *path)
{
    memset(m, 0, sizeof *m);
    if (!path) return LK_OK;
    snprintf(m->path, sizeof m->path, "%s", path);
    m->f = fopen(path, "w");
    if (!m->f) return LK_ERR(LK_ERR_IO, "--metrics %s: %s", path, strerror(errno));
    return LK_OK;
}

void lk_metrics_close(lk_metrics *m)
{
    if (m->f) fclose(m->f);
    m->f = NULL;
}

/* JSON has no NaN/Infinity: write null instead */
static void num(FILE *f, const char *key, double v, int last)
{
    if (isfinite(v))
        fprintf(f, "\"%s\":%.6g%s", key, v, last ? "" : ",");
    else
        fprintf(f, "\"%s\":null%s", key, last ? "" : ",");
}

static lk_status finish(lk_metrics *m)
{
    fputs("}\n", m->f);
    if (fflush(m->f) != 0) return LK_ERR(LK_ERR_IO, "--metrics %s: %s", m->path, strerror(errno));
    return LK_OK;
}

lk_status lk_metrics_step(lk_metrics *m, const lk_step_record *r)
{
    if (!m->f) return LK_OK;
    fprintf(m->f, "{\"step\":%ld,\"epoch\":%d,", r->step, r->epoch);
    num(m->f, "loss", r->loss, 0);
    if (isfinite(r->loss_g)) num(m->f, "loss_g", r->loss_g, 0);
    num(m->f, "lr", r->lr, 0);
    num(m->f, "samples_per_s", r->samples_per_s, 0);
    num(m->f, "step_ms", r->step_ms, 0);
    num(m->f, "comm_ms", r->comm_ms, 0);
    num(m->f, "comm_hidden", r->hidden_share, 1);
    return finish(m);
}

lk_status lk_metrics_eval(lk_metrics *m, long step, int epoch, double val_loss, double val_acc)
{
    if (!m->f) return LK_OK;
    fprintf(m->f, "{\"event\":\"eval\",\"step\":%ld,\"epoch\":%d,", step, epoch);
    num(m->f, "val_loss", val_loss, 0);
    num(m->f, "val_acc", val_acc, 1);
    return finish(m);
}

lk_status lk_metrics_summary(lk_metrics *m, const lk_summary_record *r)
{
    if (!m->f) return LK_OK;
    fprintf(m->f,
            "{\"event\":\"summary\",\"model\":\"%s\",\"device\":\"%s\",\"world\":%d,\"batch\":%d,"
            "\"steps\":%ld,\"warmup_steps\":%ld,\"epochs\":%d,",
            r->model, r->device, r->world, r->batch, r->steps, r->warmup_steps, r->epochs);
    num(m->f, "samples_per_s", r->samples_per_s, 0);
    num(m->f, "step_ms_median", r->step_ms_median, 0);
    num(m->f, "val_loss", r->val_loss, 0);
    num(m->f, "val_acc", r->val_acc, 0);
    num(m->f, "wall_s", r->wall_s, 1);
    return finish(m);
}

void lk_progress_init(lk_progress *p, int mode, int quiet)
{
    p->bar = mode < 0 ? isatty(STDOUT_FILENO) : mode;
    p->quiet = quiet;
    p->last_draw = 0.0;
}

void lk_progress_step(lk_progress *p, int epoch, int epochs, int step, int steps, double loss,
                      double loss_g, double samples_per_s, int force)
{
    if (p->quiet) return;
    char g[32] = ""; /* a GAN: loss is the discriminator's, loss_g the generator's */
    if (isfinite(loss_g)) snprintf(g, sizeof g, " (D) %.4f (G)", loss_g);
    if (p->bar) {
        double now = lk_now();
        if (!force && now - p->last_draw < 0.1) return;
        p->last_draw = now;
        const int width = 30;
        int filled = steps ? (int)((long)width * step / steps) : width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        printf("\repoch %d/%d [%s] %d/%d loss %.4f%s %.0f samples/s ", epoch, epochs, bar, step,
               steps, loss, g, samples_per_s);
        fflush(stdout);
    } else if (force) {
        printf("epoch %d/%d step %d/%d loss %.4f%s %.0f samples/s\n", epoch, epochs, step, steps, loss,
               g, samples_per_s);
        fflush(stdout);
    }
}

void lk_progress_line(lk_progress *p, const char *fmt, ...)
{
    if (p->quiet) return;
    if (p->bar) printf("\r\033[K");
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}
