/* tokenize_cmd.c - `lockstep tokenize`: its flags (train/tokenize.h does the work). */
#include <getopt.h>
#include <stdio.h>

#include "../train/tokenize.h"
#include "cli.h"

enum { T_SPLIT = 1000, T_VAL_EVERY, T_SHARD_TOKENS, T_TOKENIZER, T_DECODE };

static const struct option opts[] = {
    {"out", 1, 0, O_OUT},
    {"split", 1, 0, T_SPLIT},
    {"val-every", 1, 0, T_VAL_EVERY},
    {"shard-tokens", 1, 0, T_SHARD_TOKENS},
    {"tokenizer", 1, 0, T_TOKENIZER},
    {"decode", 0, 0, T_DECODE},
    {"comm", 1, 0, O_COMM},
    {"help", 0, 0, O_HELP},
    {0, 0, 0, 0},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: lockstep tokenize --out DIR [flags] FILE...     (alone, or under mpirun: the files\n"
               "                                                       dealt out to the ranks)\n\n"
               "Text into llm.c token shards (GPT-2's tokenizer): each document is end-of-text (50256) and\n"
               "its tokens; DIR/train_NNNNNN.bin and DIR/val_NNNNNN.bin, for --data 'tokens:DIR/*.bin'.\n\n"
               "  --out DIR             where the shards go (made if missing)\n"
               "  --split file|line|blank   a document is a file (default), a line, or a paragraph\n"
               "  --val-every K         documents K-1, 2K-1, ... of each file (with --split file: files)\n"
               "                        validate (default 10; 0: none)\n"
               "  --shard-tokens N      tokens a shard holds at most (default 100000000, as llm.c)\n"
               "  --tokenizer DIR       GPT-2's encoder.json and vocab.bpe (default $LK_GPT2_TOKENIZER or\n"
               "                        /usr/share/datasets/gpt2-tokenizer: launch/install-deps.sh\n"
               "                        --with-gpt2-tokenizer)\n"
               "  lockstep tokenize --decode SHARD...   the shards' text to stdout (end-of-text left out)\n");
}

int lk_cli_tokenize(int argc, char **argv)
{
    lk_tokenize_opts o = {NULL, NULL, LK_SPLIT_FILE, 10, 100000000};
    long v;
    int c, split = 0, decode = 0;
    lk_status s = LK_OK;
    opterr = 0;
    while (s == LK_OK && (c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        const char *flag = argv[optind - 1];
        switch (c) {
        case O_OUT: o.out = optarg; break;
        case T_SPLIT:
            s = CHOICE("--split", split, NAMES("file", "line", "blank"),
                       VALUES(LK_SPLIT_FILE, LK_SPLIT_LINE, LK_SPLIT_BLANK));
            o.split = (lk_doc_split)split;
            break;
        case T_VAL_EVERY: s = lk_arg_int("--val-every", optarg, 0, 1L << 40, &o.val_every); break;
        case T_SHARD_TOKENS: s = lk_arg_int("--shard-tokens", optarg, 1, INT32_MAX, &v), o.shard_tokens = (size_t)v; break;
        case T_TOKENIZER: o.tokenizer = optarg; break;
        case T_DECODE: decode = 1; break;
        case O_COMM: break; /* consumed in main */
        case O_HELP: usage(stdout); return 0;
        case ':': s = LK_ERR(LK_ERR_ARG, "%s needs a value", flag); break;
        default: s = LK_ERR(LK_ERR_ARG, "unknown flag '%s' for tokenize", flag);
        }
    }
    if (s == LK_OK && !o.out && !decode) s = LK_ERR(LK_ERR_ARG, "tokenize needs --out DIR");
    if (s == LK_OK && optind >= argc)
        s = LK_ERR(LK_ERR_ARG, "tokenize needs the %s to read", decode ? "shards" : "text files");
    if (s == LK_OK && decode) {
        if (lk_cli_comm()->rank == 0) s = lk_detokenize(o.tokenizer, argv + optind, argc - optind, stdout);
    } else if (s == LK_OK) {
        s = lk_tokenize(lk_cli_comm(), &o, argv + optind, argc - optind, stdout);
    }
    return s == LK_OK ? 0 : lk_cli_fail(s);
}
