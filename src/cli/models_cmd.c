/* models_cmd.c - `lockstep models`: the built-in models, one's spec to start a file from,
 * and (--data) a spec's layers as built on a dataset's samples. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "../lockstep.h"
#include "args.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: lockstep models                      the built-in models\n"
               "       lockstep models NAME                 a built-in model's spec (JSON), to start a\n"
               "                                            --model-file from (docs/model-spec.md)\n"
               "       lockstep models NAME|SPEC.json --data SPEC [--ctx N ...]\n"
               "                                            its layers as built for the data's samples:\n"
               "                                            shapes, parameters, and any error in the spec\n");
}

/* The layers of spec s built for the data's samples, one line each. */
static lk_status show_layers(const lk_spec *s, const char *data, const lk_arch *given)
{
    lk_arch a;
    LK_CHECK(lk_spec_arch(s, given, &a));
    lk_dataset d;
    memset(&d, 0, sizeof d);
    LK_CHECK(lk_data_open(data, "test", a.ctx, &d));
    lk_device *dev = NULL;
    lk_model *m = NULL;
    lk_status st = lk_device_open(&dev, "cpu", 1);
    if (st == LK_OK) st = lk_model_create(&m, dev, &d.sample);
    if (st == LK_OK) st = lk_spec_build(s, m, d.nclasses, &a);
    if (st == LK_OK) {
        char sh[64];
        size_t total = 0;
        printf("%s on %s: input %s, %d classes\n", lk_spec_name(s), d.source, lk_shape_str(&m->in_shape, sh, sizeof sh),
               d.nclasses);
        for (int i = 0; i < m->nlayers; i++) {
            const lk_layer *l = m->layers[i];
            size_t n = 0;
            for (int j = 0; j < l->nparams; j++)
                if (!l->params[j].buffer) n += lk_shape_numel(&l->params[j].shape);
            total += n;
            printf("%5d  %-12s %-20s %12zu\n", i, l->vt->type, lk_shape_str(&l->out, sh, sizeof sh), n);
        }
        printf("parameters: %zu\n", total);
    }
    lk_model_destroy(m);
    lk_device_close(dev);
    lk_dataset_free(&d);
    return st;
}

int lk_cli_models(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", 1, 0, O_DATA}, {"layers", 1, 0, O_LAYERS}, {"heads", 1, 0, O_HEADS}, {"dim", 1, 0, O_DIM},
        {"ctx", 1, 0, O_CTX},   {"help", 0, 0, 'h'},        {0, 0, 0, 0},
    };
    const char *data = NULL;
    lk_arch given = {0, 0, 0, 0, LK_GELU_DEFAULT};
    lk_status s = LK_OK;
    long v;
    int c;
    opterr = 0;
    while (s == LK_OK && (c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_DATA: data = optarg; break;
        case O_LAYERS: s = lk_arg_int("--layers", optarg, 1, 1024, &v), given.layers = (int)v; break;
        case O_HEADS: s = lk_arg_int("--heads", optarg, 1, 1024, &v), given.heads = (int)v; break;
        case O_DIM: s = lk_arg_int("--dim", optarg, 1, 1 << 16, &v), given.dim = (int)v; break;
        case O_CTX: s = lk_arg_int("--ctx", optarg, 1, 1 << 16, &v), given.ctx = (int)v; break;
        case 'h': usage(stdout); return 0;
        default:
            usage(stderr);
            return lk_cli_fail(LK_ERR(LK_ERR_ARG, "models: unknown or incomplete flag '%s'", argv[optind - 1]));
        }
    }
    if (s != LK_OK) return lk_cli_fail(s);
    if (optind == argc) {
        if (data) return lk_cli_fail(LK_ERR(LK_ERR_ARG, "models --data: name a model (NAME or SPEC.json)"));
        for (int i = 0; i < lk_zoo_count(); i++) {
            lk_spec *sp;
            s = lk_spec_builtin(lk_zoo_name(i), &sp);
            if (s != LK_OK) return lk_cli_fail(s);
            printf("%-12s %s\n", lk_zoo_name(i), lk_spec_entry(sp)->summary);
            lk_spec_free(sp);
        }
        return 0;
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return lk_cli_fail(LK_ERR(LK_ERR_ARG, "models: one model at a time"));
    }
    const char *name = argv[optind];
    const size_t n = strlen(name);
    lk_spec *sp;
    s = n > 5 && !strcmp(name + n - 5, ".json") ? lk_spec_load(name, &sp) : lk_spec_builtin(name, &sp);
    if (s != LK_OK) return lk_cli_fail(s);
    if (data) s = show_layers(sp, data, &given);
    else printf("%s\n", lk_spec_text(sp));
    lk_spec_free(sp);
    return s == LK_OK ? 0 : lk_cli_fail(s);
}
