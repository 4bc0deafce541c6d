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

/* a JSON string (the peak's source: plain text, but quoted and escaped all the same) */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
    fputc('"', f);
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
    num(m->f, "comm_hidden", r->hidden_share, 0);
    num(m->f, "model_flops_per_s", r->flops_per_s, 0);
    num(m->f, "mfu", r->mfu, 0);
    num(m->f, "skipped", (double)r->skipped, 1);
    return finish(m);
}

lk_status lk_metrics_eval(lk_metrics *m, long step, int epoch, double val_loss, double val_acc, double epsilon,
                          double delta)
{
    if (!m->f) return LK_OK;
    fprintf(m->f, "{\"event\":\"eval\",\"step\":%ld,\"epoch\":%d,", step, epoch);
    if (!isnan(epsilon)) {
        num(m->f, "epsilon", epsilon, 0);
        num(m->f, "delta", delta, 0);
    }
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
    if (isfinite(r->tokens_per_s)) num(m->f, "tokens_per_s", r->tokens_per_s, 0);
    num(m->f, "step_ms_median", r->step_ms_median, 0);
    num(m->f, "model_flops_per_sample", r->flops_per_sample, 0);
    num(m->f, "model_flops_per_s", r->flops_per_s, 0);
    num(m->f, "peak_flops", r->peak_flops, 0);
    num(m->f, "mfu", r->mfu, 0);
    fputs("\"peak_source\":", m->f);
    json_str(m->f, r->peak_source ? r->peak_source : "");
    fputc(',', m->f);
    num(m->f, "params", r->params, 0);
    num(m->f, "skipped", (double)r->skipped, 0);
    if (!isnan(r->epsilon)) {
        num(m->f, "epsilon", r->epsilon, 0);
        num(m->f, "delta", r->delta, 0);
        num(m->f, "dp_sigma", r->dp_sigma, 0);
        num(m->f, "dp_q", r->dp_q, 0);
        num(m->f, "dp_steps", (double)r->dp_steps, 0);
    }
    fputs("\"precision\":", m->f);
    json_str(m->f, r->precision ? r->precision : "fp32");
    fputc(',', m->f);
    num(m->f, "peak_host_bytes", r->peak_host_bytes, 0);
    num(m->f, "plan_host_bytes", r->plan_host_bytes, 0);
    num(m->f, "peak_host_bytes_all_ranks", r->peak_host_all, 0);
    num(m->f, "plan_host_bytes_all_ranks", r->plan_host_all, 0);
    if (r->plan_dev_bytes > 0.0) {
        num(m->f, "peak_device_bytes", r->peak_dev_bytes, 0);
        num(m->f, "plan_device_bytes", r->plan_dev_bytes, 0);
    }
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

void lk_progress_step(lk_progress *p, const lk_progress_rec *r, int force)
{
    if (p->quiet) return;
    char g[32] = "", f[48] = ""; /* a GAN: loss is the discriminator's, loss_g the generator's */
    if (isfinite(r->loss_g)) snprintf(g, sizeof g, " (D) %.4f (G)", r->loss_g);
    if (isfinite(r->flops_per_s) && isfinite(r->mfu))
        snprintf(f, sizeof f, " %.3g TFLOP/s mfu %.3f", r->flops_per_s * 1e-12, r->mfu);
    if (p->bar) {
        double now = lk_now();
        if (!force && now - p->last_draw < 0.1) return;
        p->last_draw = now;
        const int width = 30;
        int filled = r->steps ? (int)((long)width * r->step / r->steps) : width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        printf("\repoch %d/%d [%s] %d/%d loss %.4f%s %.0f samples/s%s ", r->epoch, r->epochs, bar,
               r->step, r->steps, r->loss, g, r->samples_per_s, f);
        fflush(stdout);
    } else if (force) {
        printf("epoch %d/%d step %d/%d loss %.4f%s %.0f samples/s%s\n", r->epoch, r->epochs, r->step,
               r->steps, r->loss, g, r->samples_per_s, f);
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
