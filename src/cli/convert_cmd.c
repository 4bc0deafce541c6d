/* convert_cmd.c - `lockstep convert` (train/convert.h does the work). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/checkpoint.h"
#include "../train/convert.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: lockstep convert IN OUT [--heads N]\n\n"
               "GPT-2 weights into and out of lockstep:\n"
               "  lockstep convert gpt2_124M.bin DIR     llm.c's checkpoint (version 3, float32; 5, bf16) into\n"
               "                                         a lockstep checkpoint directory (--init-from, eval,\n"
               "                                         sample)\n"
               "  lockstep convert model.safetensors DIR Hugging Face's GPT-2 (or its directory, whose\n"
               "                                         config.json gives the heads; else --heads N, or\n"
               "                                         GPT-2's for its sizes)\n"
               "  lockstep convert DIR model.bin         a gpt/gpt2* checkpoint (tanh GELU) into llm.c's format\n");
}

/* a Hugging Face model directory's n_head (0: none said), or -1 when DIR is not one (no
 * config.json: lockstep's directory of step checkpoints; or lockstep's config.json) */
static int hf_heads(const char *dir)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", dir);
    void *text = NULL;
    size_t n = 0;
    if (lk_read_file(path, &text, &n) != LK_OK) return -1;
    cJSON *j = cJSON_ParseWithLength(text, n);
    lk_free(text);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *nh = cJSON_GetObjectItemCaseSensitive(j, "n_head");
    const int heads = cJSON_IsString(fmt) ? -1 : cJSON_IsNumber(nh) && nh->valueint > 0 ? nh->valueint : 0;
    cJSON_Delete(j);
    return heads;
}

int lk_cli_convert(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    long heads = 0;
    if (argc == 5 && !strcmp(argv[3], "--heads")) {
        lk_status s = lk_arg_int("--heads", argv[4], 1, 1024, &heads);
        if (s != LK_OK) return lk_cli_fail(s);
        argc = 3;
    }
    if (argc != 3) {
        usage(stderr);
        return lk_cli_fail(LK_ERR(LK_ERR_ARG, "convert takes IN and OUT (and --heads N)"));
    }
    const char *in = argv[1], *out = argv[2];
    struct stat st;
    const int in_dir = stat(in, &st) == 0 && S_ISDIR(st.st_mode);
    const size_t len = strlen(in);
    lk_status s;
    if (in_dir && hf_heads(in) >= 0) { /* a Hugging Face directory */
        char path[1100];
        snprintf(path, sizeof path, "%s/model.safetensors", in);
        s = lk_convert_from_hf(path, heads ? (int)heads : hf_heads(in), out, stdout);
    } else if (in_dir) {
        s = lk_convert_to_llmc(in, out, stdout);
    } else if (len > 12 && !strcmp(in + len - 12, ".safetensors")) {
        s = lk_convert_from_hf(in, (int)heads, out, stdout);
    } else {
        s = lk_convert_from_llmc(in, out, stdout);
    }
    return s == LK_OK ? 0 : lk_cli_fail(s);
}
