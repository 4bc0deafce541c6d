/* test_bpe.c - GPT-2's tokenizer (data/bpe.c): the ids of GPT-2's own encoder (the npm
 * package gpt-3-encoder, a port of OpenAI's encoder.py, gave the table below) for text
 * with contractions, runs of spaces, newlines, numbers, accents, CJK, emoji and code;
 * any bytes (not UTF-8 too) round-trip; the merge rule on a small vocabulary made here
 * (the lowest-ranked pair first, all its occurrences left to right); malformed files are
 * refused naming the file and what is wrong; the encoder's cache of merged pieces changes no
 * id. The GPT-2 cases need its files
 * (launch/install-deps.sh --with-gpt2-tokenizer) and are skipped, saying so, without. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/bpe.h"
#include "testutil.h"

static const struct {
    const char *text;
    int32_t ids[40];
    int n;
} KNOWN[] = {
    {"Hello world", {15496, 995}, 2},
    {"Hello, world! How's it going? I'm fine; they've said we'll see, you'd agree.", {15496, 11, 995, 0, 1374, 338, 340, 1016, 30, 314, 1101, 3734, 26, 484, 1053, 531, 356, 1183, 766, 11, 345, 1549, 4236, 13}, 24},
    {"  leading spaces and   runs of   spaces  ", {220, 3756, 9029, 290, 220, 220, 4539, 286, 220, 220, 9029, 220, 220}, 13},
    {"tabs\tand\nnewlines\n\n\nand a trailing space ", {8658, 82, 197, 392, 198, 3605, 6615, 628, 198, 392, 257, 25462, 2272, 220}, 14},
    {"Numbers: 0 12 345 6789 3.14159 1,000,000 2024-12-07", {49601, 25, 657, 1105, 39937, 718, 40401, 513, 13, 1415, 19707, 352, 11, 830, 11, 830, 48609, 12, 1065, 12, 2998}, 21},
    {"naïve café résumé — “quotes” ‘single’ … ellipsis", {2616, 38776, 40304, 40560, 16345, 2634, 851, 564, 250, 421, 6421, 447, 251, 564, 246, 29762, 447, 247, 3926, 30004, 2419, 271}, 22},
    {"日本語のテキスト、中文文本，한국어 텍스트", {33768, 98, 17312, 105, 45739, 252, 5641, 24336, 25084, 43302, 23513, 40792, 23877, 229, 23877, 229, 17312, 105, 171, 120, 234, 47991, 250, 166, 113, 255, 168, 244, 112, 220, 169, 227, 235, 168, 232, 97, 169, 232, 116}, 39},
    {"emoji 👍🏽 🚀 and ZWJ 👨‍👩‍👧", {368, 31370, 50169, 235, 8582, 237, 121, 12520, 248, 222, 290, 1168, 54, 41, 50169, 101, 447, 235, 41840, 102, 447, 235, 41840, 100}, 24},
    {"Ünïcödé ΑΒΓ αβγ Привет мир", {127, 250, 77, 26884, 66, 9101, 67, 2634, 7377, 239, 138, 240, 138, 241, 26367, 26638, 42063, 12466, 253, 21169, 18849, 38857, 16843, 20375, 12466, 120, 18849, 21169}, 28},
    {"<|endoftext|> is text here", {27, 91, 437, 1659, 5239, 91, 29, 318, 2420, 994}, 10},
    {"code: for (int i = 0; i < n; i++) { x[i] += y[i] * 2; }", {8189, 25, 329, 357, 600, 1312, 796, 657, 26, 1312, 1279, 299, 26, 1312, 29577, 1391, 2124, 58, 72, 60, 15853, 331, 58, 72, 60, 1635, 362, 26, 1782}, 29},
    {"URLs https://example.com/a?b=c&d=e#f and emails a.b@c.de", {21886, 82, 3740, 1378, 20688, 13, 785, 14, 64, 30, 65, 28, 66, 5, 67, 28, 68, 2, 69, 290, 7237, 257, 13, 65, 31, 66, 13, 2934}, 28},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", {24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794}, 10},
    {"'s 't 're 've 'm 'll 'd 'S 'T", {338, 705, 83, 705, 260, 705, 303, 705, 76, 705, 297, 705, 67, 705, 50, 705, 51}, 17},
    {"", {0}, 0},
    {"## Markdown # heading #1", {2235, 2940, 2902, 1303, 9087, 1303, 16}, 7},
};

static lk_bpe *gpt2;

static void need_gpt2(void)
{
    if (gpt2) return;
    if (lk_bpe_open(&gpt2, NULL) != LK_OK) {
        printf("SKIP: %s\n", lk_error_message());
        skip();
    }
}

/* ids -> bytes, appended to buf (cap: room) */
static size_t decode(const lk_bpe *b, const int32_t *ids, size_t n, char *buf, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *t = lk_bpe_token(b, ids[i], &len);
        assert_non_null(t);
        assert_true(k + len <= cap);
        memcpy(buf + k, t, len);
        k += len;
    }
    return k;
}

static void test_known_ids(void **state)
{
    (void)state;
    need_gpt2();
    assert_int_equal(lk_bpe_vocab(gpt2), 50257);
    size_t len = 0;
    assert_memory_equal(lk_bpe_token(gpt2, LK_BPE_EOT, &len), "<|endoftext|>", 13);
    for (size_t k = 0; k < sizeof KNOWN / sizeof *KNOWN; k++) {
        int32_t *ids = NULL;
        size_t n = 0, cap = 0;
        TU_OK(lk_bpe_encode(gpt2, KNOWN[k].text, strlen(KNOWN[k].text), &ids, &n, &cap));
        if (n != (size_t)KNOWN[k].n || (n && memcmp(ids, KNOWN[k].ids, n * sizeof *ids)))
            fail_msg("\"%s\": %zu ids, GPT-2's are %d (first: %d vs %d)", KNOWN[k].text, n, KNOWN[k].n,
                     n ? ids[0] : -1, KNOWN[k].ids[0]);
        lk_free(ids);
    }
}

/* any bytes, UTF-8 or not, come back as they were */
static void round_trip(const lk_bpe *b, uint64_t seed)
{
    static const char *const pieces[] = {" the", "ing", "'s", "  ", "\n", "é", "日本", "👍", "\xff", "\xc3", "\xe6\x97",
                                         "123", "!?", "\t", "a", "\x80"};
    enum { LEN = 4096 };
    char *text = malloc(LEN + 16), *back = malloc(LEN + 16);
    for (int round = 0; round < 40; round++) {
        size_t len = 0;
        while (len < LEN) {
            const uint32_t r = lk_rng_u32(seed, LK_RNG_TEST, (uint64_t)round, len);
            if (r % 3 == 0) text[len++] = (char)(r >> 8); /* any byte */
            else {
                const char *p = pieces[(r >> 8) % (sizeof pieces / sizeof *pieces)];
                const size_t pl = strlen(p);
                if (len + pl > LEN) break;
                memcpy(text + len, p, pl);
                len += pl;
            }
        }
        int32_t *ids = NULL;
        size_t n = 0, cap = 0;
        TU_OK(lk_bpe_encode(b, text, len, &ids, &n, &cap));
        assert_int_equal(decode(b, ids, n, back, LEN + 16), len);
        assert_memory_equal(text, back, len);
        lk_free(ids);
    }
    free(text), free(back);
}

static void test_round_trip(void **state)
{
    (void)state;
    need_gpt2();
    round_trip(gpt2, 1);
}

/* ---- a small vocabulary: the 256 bytes (ids 0..255 in GPT-2's byte characters), then
 * merges a+a=aa (256), aa+aa=aaaa (257), b+c=bc (258), a+bc=abc (259) ---- */

static size_t put_char(char *s, uint32_t cp)
{
    if (cp < 0x80) return s[0] = (char)cp, 1;
    s[0] = (char)(0xc0 | (cp >> 6));
    s[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

static uint32_t char_of_byte(int b)
{
    int n = 0;
    for (int c = 0; c < 256; c++) {
        const int printable = (c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff);
        if (c == b) return printable ? (uint32_t)c : (uint32_t)(256 + n);
        n += !printable;
    }
    return 0;
}

/* encoder.json text for the small vocabulary; skip_byte >= 0 has "zz" in that byte's place */
static char *small_vocab(int skip_byte, size_t *len)
{
    char *s = malloc(16384);
    size_t k = 0;
    s[k++] = '{';
    for (int b = 0; b < 256; b++) {
        char ch[4] = "zz";
        const size_t cl = b == skip_byte ? 2 : put_char(ch, char_of_byte(b));
        k += (size_t)sprintf(s + k, "%s\"", k > 1 ? ", " : "");
        if (b == '"' || b == '\\') s[k++] = '\\';
        memcpy(s + k, ch, cl);
        k += cl;
        k += (size_t)sprintf(s + k, "\": %d", b);
    }
    k += (size_t)sprintf(s + k, ", \"aa\": 256, \"aaaa\": 257, \"bc\": 258, \"abc\": 259}");
    *len = k;
    return s;
}

static const char SMALL_MERGES[] = "#version: 0.2\na a\naa aa\nb c\na bc\n";

static lk_status small(lk_bpe **b, const char *vocab, size_t vlen, const char *merges)
{
    return lk_bpe_load(b, vocab, vlen, "enc.json", merges, strlen(merges), "merges.bpe");
}

/* the small vocabulary with SMALL_MERGES, loaded */
static lk_bpe *small_bpe(void)
{
    size_t vl;
    char *v = small_vocab(-1, &vl);
    lk_bpe *b = NULL;
    TU_OK(small(&b, v, vl, SMALL_MERGES));
    free(v);
    return b;
}

static void test_merge_rule(void **state)
{
    (void)state;
    lk_bpe *b = small_bpe();
    static const struct {
        const char *text;
        int32_t ids[8];
        int n;
    } cases[] = {
        {"aaaaa", {257, 'a'}, 2},     /* round 1: aa aa a; round 2: aaaa a */
        {"aaa", {256, 'a'}, 2},       /* left to right: (aa) a, not a (aa) */
        {"abc", {259}, 1},            /* b c first (rank 2), then a bc (rank 3) */
        {"aabc", {256, 258}, 2},      /* a a (rank 0) before b c: aa bc, no merge for them */
        {"x", {'x'}, 1},
        {"ab c", {'a', 'b', ' ', 'c'}, 4}, /* pieces: "ab", " c" */
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        int32_t *ids = NULL;
        size_t n = 0, cap = 0;
        TU_OK(lk_bpe_encode(b, cases[k].text, strlen(cases[k].text), &ids, &n, &cap));
        assert_int_equal(n, cases[k].n);
        assert_memory_equal(ids, cases[k].ids, n * sizeof *ids);
        lk_free(ids);
    }
    round_trip(b, 2);
    lk_bpe_free(b);
}

/* a long text goes through the encoder's cache of merged pieces (and its emptying when
 * full, past 32768 distinct pieces); short calls do not: the same ids either way */
static void cached_equals_uncached(const lk_bpe *b)
{
    enum { WORDS = 50000 };
    char *text = malloc(WORDS * 12);
    size_t len = 0, *cut = malloc((WORDS / 100 + 2) * sizeof *cut), ncut = 0;
    for (int i = 0; i < WORDS; i++) {
        if (i % 100 == 0) cut[ncut++] = len;
        len += (size_t)sprintf(text + len, " %d%s", i * 7919 % 100003, i % 3 ? "aa" : "'s");
    }
    cut[ncut] = len;
    int32_t *all = NULL, *parts = NULL;
    size_t n = 0, cap = 0, m = 0, mcap = 0;
    TU_OK(lk_bpe_encode(b, text, len, &all, &n, &cap));
    for (size_t k = 0; k < ncut; k++) TU_OK(lk_bpe_encode(b, text + cut[k], cut[k + 1] - cut[k], &parts, &m, &mcap));
    assert_int_equal(n, m);
    assert_memory_equal(all, parts, n * sizeof *all);
    lk_free(all), lk_free(parts), free(text), free(cut);
}

static void test_cache(void **state)
{
    (void)state;
    lk_bpe *b = small_bpe();
    cached_equals_uncached(b);
    lk_bpe_free(b);
    need_gpt2();
    cached_equals_uncached(gpt2);
}

static void test_bad_files(void **state)
{
    (void)state;
    size_t vl;
    char *v = small_vocab(-1, &vl);
    lk_bpe *b = NULL;
    TU_FAILS_WITH(small(&b, "[1, 2]", 6, SMALL_MERGES), LK_ERR_FORMAT, "enc.json: not a JSON object");
    TU_FAILS_WITH(small(&b, v, vl / 2, SMALL_MERGES), LK_ERR_FORMAT, "enc.json: not a JSON object");
    TU_FAILS_WITH(small(&b, "{\"a\": 0}", 8, SMALL_MERGES), LK_ERR_FORMAT, "1 tokens");
    char *w = malloc(vl + 64);
    memcpy(w, v, vl - 1);
    size_t wl = vl - 1 + (size_t)sprintf(w + vl - 1, ", \"\xe4\xb8\x80\": 260}");
    TU_FAILS_WITH(small(&b, w, wl, SMALL_MERGES), LK_ERR_FORMAT, "not written in GPT-2's byte characters");
    wl = vl - 1 + (size_t)sprintf(w + vl - 1, ", \"ab\": 9999}");
    TU_FAILS_WITH(small(&b, w, wl, SMALL_MERGES), LK_ERR_FORMAT, "id is not a whole number in [0, 261)");
    wl = vl - 1 + (size_t)sprintf(w + vl - 1, ", \"ab\": 259}");
    TU_FAILS_WITH(small(&b, w, wl, SMALL_MERGES), LK_ERR_FORMAT, "id 259 is given twice");
    wl = vl - 1 + (size_t)sprintf(w + vl - 1, ", \"aa\": 260}");
    TU_FAILS_WITH(small(&b, w, wl, SMALL_MERGES), LK_ERR_FORMAT, "\"aa\" is given twice");
    free(w);
    size_t sl;
    char *s = small_vocab(0, &sl); /* no token for the byte 0 */
    TU_FAILS_WITH(small(&b, s, sl, SMALL_MERGES), LK_ERR_FORMAT, "no token for the byte 0x00");
    free(s);
    TU_FAILS_WITH(small(&b, v, vl, "a a\nb c d\n"), LK_ERR_FORMAT, "merges.bpe: line 2: not two tokens");
    TU_FAILS_WITH(small(&b, v, vl, "a a\nc c\n"), LK_ERR_FORMAT, "merges.bpe: line 2: \"c c\" merges tokens");
    assert_null(b);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_ids),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_merge_rule),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_bad_files),
    };
    const int rc = cmocka_run_group_tests(tests, NULL, NULL);
    lk_bpe_free(gpt2);
    return rc;
}
