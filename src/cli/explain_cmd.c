/* explain_cmd.c - `lockstep explain`: attributions of an image classifier's predictions
 * (train/explain.h does the work). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "../train/explain.h"
#include "args.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: lockstep explain --checkpoint DIR --input FILE --out DIR [--method ig|saliency|occlusion]\n"
               "                        [--target CLASS] [--steps N] [--baseline black|blur|FILE]\n"
               "                        [--window W] [--stride S] [--limit N] [--device D] [--threads N]\n"
               "       lockstep explain --checkpoint DIR --prompt TEXT [--target TOKEN] [--steps N]\n"
               "                        [--tokenizer DIR] [--out DIR]   (gpt, gpt2*: the next token's\n"
               "                        logit attributed to the prompt's tokens, printed as text)\n\n"
               "Which pixels made an image classifier's prediction (alone or under mpirun: the images\n"
               "dealt to the ranks). Per image, OUT/explain-NNNNN.png (the image, the map over it and\n"
               "alone: red for, blue against) and .json (the attributions and the scores).\n"
               "  --method M        ig (integrated gradients, the default: prints the completeness\n"
               "                    gap), saliency (|gradient|), occlusion (the logit's fall as a\n"
               "                    window of the image is replaced by the baseline)\n"
               "  --target CLASS    the class explained (default: the predicted one)\n"
               "  --steps N         ig's quadrature points (default 64)\n"
               "  --max-gap P       ig: an image whose completeness gap is above P%% runs again with\n"
               "                    twice the points, up to 1024 (default 1; 0: never)\n"
               "  --baseline B      black (default), blur (a box blur of the image) or an image file\n"
               "  --window W --stride S   occlusion's window and step (default 4, 4)\n"
               "  --limit N         the first N images of FILE\n");
}

int lk_cli_explain(int argc, char **argv)
{
    enum { X_METHOD = 1000, X_TARGET, X_STEPS, X_BASELINE, X_WINDOW, X_STRIDE, X_OUT, X_CKPT, X_INPUT, X_LIMIT,
           X_DEVICE, X_THREADS, X_PROMPT, X_TOKENIZER, X_MAX_GAP };
    static const struct option opts[] = {
        {"checkpoint", 1, 0, X_CKPT}, {"input", 1, 0, X_INPUT},   {"out", 1, 0, X_OUT},
        {"method", 1, 0, X_METHOD},   {"target", 1, 0, X_TARGET}, {"steps", 1, 0, X_STEPS},
        {"baseline", 1, 0, X_BASELINE}, {"window", 1, 0, X_WINDOW}, {"stride", 1, 0, X_STRIDE},
        {"limit", 1, 0, X_LIMIT},     {"device", 1, 0, X_DEVICE}, {"threads", 1, 0, X_THREADS},
        {"prompt", 1, 0, X_PROMPT},   {"tokenizer", 1, 0, X_TOKENIZER}, {"max-gap", 1, 0, X_MAX_GAP},
        {"help", 0, 0, 'h'},          {"comm", 1, 0, 'c'},        {0, 0, 0, 0},
    };
    lk_explain_opts o = {.device = "auto", .method = LK_EXPLAIN_IG, .target = -1, .steps = 64, .max_gap = 0.01, .baseline = "black",
                         .window = 4, .stride = 4, .comm = lk_cli_comm()};
    lk_status s = LK_OK;
    long v;
    int c;
    opterr = 0;
    while (s == LK_OK && (c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case X_CKPT: o.checkpoint = optarg; break;
        case X_INPUT: o.input = optarg; break;
        case X_PROMPT: o.prompt = optarg; break;
        case X_TOKENIZER: o.tokenizer = optarg; break;
        case X_OUT: o.out_dir = optarg; break;
        case X_METHOD:
            if (!strcmp(optarg, "ig")) o.method = LK_EXPLAIN_IG;
            else if (!strcmp(optarg, "saliency")) o.method = LK_EXPLAIN_SALIENCY;
            else if (!strcmp(optarg, "occlusion")) o.method = LK_EXPLAIN_OCCLUSION;
            else s = LK_ERR(LK_ERR_ARG, "--method: expected ig, saliency or occlusion, got '%s'", optarg);
            break;
        case X_TARGET: s = lk_arg_int("--target", optarg, 0, 1 << 24, &v), o.target = (int)v; break;
        case X_STEPS: s = lk_arg_int("--steps", optarg, 1, 4096, &v), o.steps = (int)v; break;
        case X_MAX_GAP: {
            double p;
            s = lk_arg_float("--max-gap", optarg, 0.0, 100.0, &p);
            o.max_gap = p / 100.0;
            break;
        }
        case X_BASELINE: o.baseline = optarg; break;
        case X_WINDOW: s = lk_arg_int("--window", optarg, 1, 4096, &v), o.window = (int)v; break;
        case X_STRIDE: s = lk_arg_int("--stride", optarg, 1, 4096, &v), o.stride = (int)v; break;
        case X_LIMIT: s = lk_arg_int("--limit", optarg, 1, 1 << 30, &v), o.limit = (int)v; break;
        case X_DEVICE: o.device = optarg; break;
        case X_THREADS: s = lk_arg_int("--threads", optarg, 1, 4096, &v), o.threads = (int)v; break;
        case 'c': break; /* (--comm: read by main) */
        case 'h': usage(stdout); return 0;
        default:
            usage(stderr);
            return lk_cli_fail(LK_ERR(LK_ERR_ARG, "explain: unknown or incomplete flag '%s'", argv[optind - 1]));
        }
    }
    if (s == LK_OK && optind < argc) s = LK_ERR(LK_ERR_ARG, "explain: unexpected argument '%s'", argv[optind]);
    if (s == LK_OK && (!o.checkpoint || (!o.input && !o.prompt)))
        s = LK_ERR(LK_ERR_ARG, "explain: --checkpoint DIR and --input FILE (or a language model's --prompt TEXT) "
                               "are required");
    if (s == LK_OK && o.input && o.prompt) s = LK_ERR(LK_ERR_ARG, "explain: --input or --prompt, not both");
    if (s == LK_OK && o.prompt && o.method != LK_EXPLAIN_IG)
        s = LK_ERR(LK_ERR_ARG, "explain --prompt: integrated gradients only (--method ig)");
    if (s == LK_OK) s = lk_explain(&o, stdout);
    return s == LK_OK ? 0 : lk_cli_fail(s);
}
