/* bpe.c - GPT-2's byte-level BPE (bpe.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "bpe.h"

#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/checkpoint.h" /* lk_read_file */

#define VOCAB_MAX (1 << 20)
#define NONE 0xffffffffu

/* GPT-2's pre-tokenisation (encoder.py) */
static const char PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    uint64_t key;
    uint32_t rank, merged; /* rank NONE: an empty slot */
} pair_slot;

struct lk_bpe {
    int vocab;
    char *bytes;       /* every token's bytes, back to back */
    size_t *off;       /* token id -> its bytes at bytes + off[id] */
    uint32_t *len;
    uint32_t *by_bytes; /* hash of the tokens' bytes: ids (NONE: empty), size mask + 1 */
    size_t mask;
    pair_slot *pairs;   /* (left id, right id) -> rank and the merged id, size pmask + 1 */
    size_t pmask;
    uint32_t byte_id[256];
    pcre2_code *re;
};

/* ---- GPT-2's byte <-> character map: printable Latin-1 as itself, the rest U+0100.. ---- */

static void byte_map(uint32_t cp_of[256])
{
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; b++) {
        const int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        cp_of[b] = printable ? b : next++;
    }
}

/* The bytes a token string stands for: each UTF-8 character of s must be one of the map's
 * 256 characters. Returns the byte count, or -1. */
static long unmap(const char *s, size_t n, const int16_t *byte_of, char *out)
{
    long k = 0;
    for (size_t i = 0; i < n;) {
        const unsigned char c = (unsigned char)s[i];
        uint32_t cp;
        if (c < 0x80) cp = c, i += 1;
        else if ((c & 0xe0) == 0xc0 && i + 1 < n && ((unsigned char)s[i + 1] & 0xc0) == 0x80)
            cp = ((uint32_t)(c & 0x1f) << 6) | ((unsigned char)s[i + 1] & 0x3f), i += 2;
        else return -1; /* (the map's characters are all below U+0800) */
        if (cp >= 512 || byte_of[cp] < 0) return -1;
        out[k++] = (char)byte_of[cp];
    }
    return k;
}

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_pair(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    return k ^ (k >> 33);
}

static uint32_t find_bytes(const lk_bpe *b, const char *p, size_t n)
{
    for (size_t h = hash_bytes(p, n) & b->mask;; h = (h + 1) & b->mask) {
        const uint32_t id = b->by_bytes[h];
        if (id == NONE) return NONE;
        if (b->len[id] == n && !memcmp(b->bytes + b->off[id], p, n)) return id;
    }
}

static const pair_slot *find_pair(const lk_bpe *b, uint32_t l, uint32_t r)
{
    const uint64_t key = (uint64_t)l << 32 | r;
    for (size_t h = hash_pair(key) & b->pmask;; h = (h + 1) & b->pmask) {
        const pair_slot *s = &b->pairs[h];
        if (s->rank == NONE) return NULL;
        if (s->key == key) return s;
    }
}

void lk_bpe_free(lk_bpe *b)
{
    if (!b) return;
    lk_free(b->bytes);
    lk_free(b->off);
    lk_free(b->len);
    lk_free(b->by_bytes);
    lk_free(b->pairs);
    if (b->re) pcre2_code_free(b->re);
    lk_free(b);
}

int lk_bpe_vocab(const lk_bpe *b) { return b->vocab; }

const char *lk_bpe_token(const lk_bpe *b, int32_t id, size_t *len)
{
    if (id < 0 || id >= b->vocab || b->len[id] == NONE) return NULL;
    *len = b->len[id];
    return b->bytes + b->off[id];
}

int32_t lk_bpe_eot(const lk_bpe *b)
{
    const uint32_t id = find_bytes(b, "<|endoftext|>", 13);
    return id == NONE ? -1 : (int32_t)id;
}

static size_t pow2_above(size_t n)
{
    size_t p = 1024;
    while (p < 2 * n) p <<= 1;
    return p;
}

/* encoder.json: {"token string": id, ...}, ids 0..n-1 once each */
static lk_status load_vocab(lk_bpe *b, const char *text, size_t n, const char *name, const int16_t *byte_of)
{
    cJSON *j = cJSON_ParseWithLength(text, n);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return LK_ERR(LK_ERR_FORMAT, "%s: not a JSON object of token strings and ids", name);
    }
    const int count = cJSON_GetArraySize(j);
    size_t total = 0;
    for (const cJSON *e = j->child; e; e = e->next) total += strlen(e->string);
    lk_status st = LK_OK;
    if (count < 256 || count > VOCAB_MAX)
        st = LK_ERR(LK_ERR_FORMAT, "%s: %d tokens (a byte-level vocabulary has 256 to %d)", name, count, VOCAB_MAX);
    b->vocab = count;
    b->mask = pow2_above((size_t)count) - 1;
    if (st == LK_OK) {
        b->bytes = lk_malloc(total + 1);
        b->off = lk_malloc((size_t)count * sizeof *b->off);
        b->len = lk_malloc((size_t)count * sizeof *b->len);
        b->by_bytes = lk_malloc((b->mask + 1) * sizeof *b->by_bytes);
        if (!b->bytes || !b->off || !b->len || !b->by_bytes)
            st = LK_ERR(LK_ERR_NOMEM, "%s: cannot hold %d tokens", name, count);
    }
    if (st == LK_OK) {
        memset(b->len, 0xff, (size_t)count * sizeof *b->len);
        memset(b->by_bytes, 0xff, (b->mask + 1) * sizeof *b->by_bytes);
    }
    size_t at = 0;
    for (const cJSON *e = j->child; e && st == LK_OK; e = e->next) {
        const double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!(v >= 0 && v < count) || v != (double)(int)v) {
            st = LK_ERR(LK_ERR_FORMAT, "%s: token \"%.40s\": id is not a whole number in [0, %d)", name, e->string,
                        count);
            break;
        }
        const int id = (int)v;
        const long k = unmap(e->string, strlen(e->string), byte_of, b->bytes + at);
        if (k <= 0) {
            st = LK_ERR(LK_ERR_FORMAT, "%s: token \"%.40s\" (id %d) is not written in GPT-2's byte characters",
                        name, e->string, id);
            break;
        }
        if (b->len[id] != NONE) {
            st = LK_ERR(LK_ERR_FORMAT, "%s: id %d is given twice (\"%.40s\")", name, id, e->string);
            break;
        }
        if (find_bytes(b, b->bytes + at, (size_t)k) != NONE) {
            st = LK_ERR(LK_ERR_FORMAT, "%s: token \"%.40s\" is given twice", name, e->string);
            break;
        }
        b->off[id] = at;
        b->len[id] = (uint32_t)k;
        size_t h = hash_bytes(b->bytes + at, (size_t)k) & b->mask;
        while (b->by_bytes[h] != NONE) h = (h + 1) & b->mask;
        b->by_bytes[h] = (uint32_t)id;
        at += (size_t)k;
    }
    cJSON_Delete(j);
    for (int c = 0; c < 256 && st == LK_OK; c++) {
        const char ch = (char)c;
        if ((b->byte_id[c] = find_bytes(b, &ch, 1)) == NONE)
            st = LK_ERR(LK_ERR_FORMAT, "%s: no token for the byte 0x%02x (a byte-level vocabulary has all 256)",
                        name, c);
    }
    return st;
}

/* vocab.bpe: a "#version" line, then "left right" per line in rank order */
static lk_status load_merges(lk_bpe *b, const char *text, size_t n, const char *name, const int16_t *byte_of)
{
    size_t lines = 0;
    for (size_t i = 0; i < n; i++) lines += text[i] == '\n';
    b->pmask = pow2_above(lines + 1) - 1;
    b->pairs = lk_malloc((b->pmask + 1) * sizeof *b->pairs);
    char *buf = lk_malloc(2 * n + 2);
    if (!b->pairs || !buf) {
        lk_free(buf);
        return LK_ERR(LK_ERR_NOMEM, "%s: cannot hold its merges", name);
    }
    for (size_t i = 0; i <= b->pmask; i++) b->pairs[i].rank = NONE;
    uint32_t rank = 0;
    long line = 0;
    lk_status st = LK_OK;
    for (size_t at = 0; at < n && st == LK_OK;) {
        const char *s = text + at, *nl = memchr(s, '\n', n - at);
        const size_t len = nl ? (size_t)(nl - s) : n - at;
        at += len + 1;
        line++;
        size_t l = len;
        if (l && s[l - 1] == '\r') l--;
        if (!l || (l >= 8 && !memcmp(s, "#version", 8))) continue; /* ("# #" is a merge) */
        const char *sp = memchr(s, ' ', l);
        if (!sp || sp == s || sp + 1 == s + l || memchr(sp + 1, ' ', (size_t)(s + l - sp - 1))) {
            st = LK_ERR(LK_ERR_FORMAT, "%s: line %ld: not two tokens separated by a space", name, line);
            break;
        }
        const long ka = unmap(s, (size_t)(sp - s), byte_of, buf);
        const long kb = ka > 0 ? unmap(sp + 1, (size_t)(s + l - sp - 1), byte_of, buf + ka) : -1;
        if (ka <= 0 || kb <= 0) {
            st = LK_ERR(LK_ERR_FORMAT, "%s: line %ld: not written in GPT-2's byte characters", name, line);
            break;
        }
        const uint32_t left = find_bytes(b, buf, (size_t)ka), right = find_bytes(b, buf + ka, (size_t)kb);
        const uint32_t merged = find_bytes(b, buf, (size_t)(ka + kb));
        if (left == NONE || right == NONE || merged == NONE) {
            st = LK_ERR(LK_ERR_FORMAT, "%s: line %ld: \"%.*s\" merges tokens the vocabulary does not have", name,
                        line, (int)LK_MIN(l, 60), s);
            break;
        }
        const uint64_t key = (uint64_t)left << 32 | right;
        size_t h = hash_pair(key) & b->pmask;
        while (b->pairs[h].rank != NONE && b->pairs[h].key != key) h = (h + 1) & b->pmask;
        if (b->pairs[h].rank == NONE) b->pairs[h] = (pair_slot){key, rank++, merged}; /* (a repeat: the first) */
    }
    lk_free(buf);
    return st;
}

lk_status lk_bpe_load(lk_bpe **out, const char *encoder_json, size_t encoder_len, const char *encoder_name,
                      const char *merges, size_t merges_len, const char *merges_name)
{
    *out = NULL;
    lk_bpe *b = lk_calloc(1, sizeof *b);
    if (!b) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the tokenizer");
    uint32_t cp_of[256];
    int16_t byte_of[512];
    byte_map(cp_of);
    memset(byte_of, 0xff, sizeof byte_of);
    for (int c = 0; c < 256; c++) byte_of[cp_of[c]] = (int16_t)c;
    lk_status st = load_vocab(b, encoder_json, encoder_len, encoder_name, byte_of);
    if (st == LK_OK) st = load_merges(b, merges, merges_len, merges_name, byte_of);
    if (st == LK_OK) {
        int err = 0;
        PCRE2_SIZE where = 0;
        b->re = pcre2_compile((PCRE2_SPTR)PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                              &err, &where, NULL);
        if (!b->re) st = LK_ERR(LK_ERR_STATE, "the GPT-2 pattern does not compile (PCRE2 error %d)", err);
        else pcre2_jit_compile(b->re, PCRE2_JIT_COMPLETE); /* (where JIT exists; matching works without) */
    }
    if (st != LK_OK) {
        lk_bpe_free(b);
        return st;
    }
    *out = b;
    return LK_OK;
}

lk_status lk_bpe_open(lk_bpe **out, const char *dir)
{
    *out = NULL;
    if (!dir) dir = getenv("LK_GPT2_TOKENIZER");
    if (!dir || !*dir) dir = LK_GPT2_TOKENIZER_DIR;
    char pe[1024], pm[1024];
    snprintf(pe, sizeof pe, "%s/encoder.json", dir);
    snprintf(pm, sizeof pm, "%s/vocab.bpe", dir);
    void *e = NULL, *m = NULL;
    size_t ne = 0, nm = 0;
    lk_status st = lk_read_file(pe, &e, &ne);
    if (st == LK_OK) st = lk_read_file(pm, &m, &nm);
    if (st != LK_OK) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%s", lk_error_message());
        lk_free(e);
        return LK_ERR(st, "GPT-2's tokenizer: %s (launch/install-deps.sh --with-gpt2-tokenizer fetches its files into "
                          "%s; LK_GPT2_TOKENIZER=DIR reads them from DIR)", msg, LK_GPT2_TOKENIZER_DIR);
    }
    st = lk_bpe_load(out, e, ne, pe, m, nm, pm);
    lk_free(e);
    lk_free(m);
    return st;
}

/* ---- encoding ---- */

typedef struct {
    uint32_t rank, left, right, lver, rver;
} merge_at;

typedef struct {
    merge_at *h;
    size_t n, cap;
} heap;

static int before(const merge_at *a, const merge_at *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->left < b->left;
}

static int heap_push(heap *q, merge_at m)
{
    if (q->n == q->cap) {
        const size_t cap = q->cap ? 2 * q->cap : 64;
        merge_at *h = lk_realloc(q->h, cap * sizeof *h);
        if (!h) return 0;
        q->h = h, q->cap = cap;
    }
    size_t i = q->n++;
    for (; i && before(&m, &q->h[(i - 1) / 2]); i = (i - 1) / 2) q->h[i] = q->h[(i - 1) / 2];
    q->h[i] = m;
    return 1;
}

static merge_at heap_pop(heap *q)
{
    const merge_at top = q->h[0], last = q->h[--q->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n) break;
        if (c + 1 < q->n && before(&q->h[c + 1], &q->h[c])) c++;
        if (!before(&q->h[c], &last)) break;
        q->h[i] = q->h[c];
        i = c;
    }
    if (q->n) q->h[i] = last;
    return top;
}

typedef struct {
    uint32_t *id, *next, *prev, *ver;
    size_t room; /* of the four arrays */
    heap q, pending;
} piece_work;

/* One encode's memory, kept from piece to piece: the merge's arrays and heaps, and a cache
 * of the short pieces already merged (text repeats its words: most pieces are met again) */
#define CACHE_SLOTS 65536 /* a power of two; emptied when half full */
#define CACHE_PIECE 32    /* longer pieces are merged each time */
typedef struct {
    uint64_t hash;
    uint32_t at, len, ids, nids; /* the piece's bytes at bytes + at, its ids at idv + ids */
} cache_slot;
typedef struct {
    piece_work w;
    cache_slot *slot; /* NULL until the text has enough pieces to pay for it */
    size_t used, pieces;
    char *bytes;   /* CACHE_SLOTS / 2 * CACHE_PIECE: the pieces kept */
    uint32_t *idv; /* as many: their ids */
    size_t nbytes, nidv;
} encode_work;

/* the pair (l, next[l]) into q when the merges have it */
static int offer(const lk_bpe *b, piece_work *w, heap *q, uint32_t l)
{
    if (l == NONE || w->next[l] == NONE) return 1;
    const uint32_t r = w->next[l];
    const pair_slot *p = find_pair(b, w->id[l], w->id[r]);
    return !p || heap_push(q, (merge_at){p->rank, l, r, w->ver[l], w->ver[r]});
}

static int valid(const piece_work *w, const merge_at *m)
{
    return w->id[m->left] != NONE && w->next[m->left] == m->right && w->ver[m->left] == m->lver &&
           w->ver[m->right] == m->rver;
}

static lk_status emit(int32_t **ids, size_t *n, size_t *cap, uint32_t id)
{
    if (*n == *cap) {
        const size_t c = *cap ? 2 * *cap : 256;
        int32_t *p = lk_realloc(*ids, c * sizeof *p);
        if (!p) return LK_ERR(LK_ERR_NOMEM, "tokenizer: cannot hold %zu ids", c);
        *ids = p, *cap = c;
    }
    (*ids)[(*n)++] = (int32_t)id;
    return LK_OK;
}

/* One piece's bytes merged as GPT-2's bpe() merges them: the lowest-ranked pair present,
 * every occurrence of it left to right (pairs it makes wait for the next round), again. */
static lk_status merge_piece(const lk_bpe *b, piece_work *pw, const unsigned char *p, size_t len, int32_t **ids,
                             size_t *n, size_t *cap)
{
    if (len == 1) return emit(ids, n, cap, b->byte_id[p[0]]);
    if (len > pw->room) {
        const size_t room = LK_MAX(len, 2 * pw->room);
        uint32_t **arr[4] = {&pw->id, &pw->next, &pw->prev, &pw->ver};
        for (int k = 0; k < 4; k++) {
            uint32_t *g = lk_realloc(*arr[k], room * sizeof *g);
            if (!g) return LK_ERR(LK_ERR_NOMEM, "tokenizer: out of memory for a piece of %zu bytes", len);
            *arr[k] = g;
        }
        pw->room = room;
    }
    piece_work w = *pw; /* (the arrays; the heaps empty) */
    w.q.n = w.pending.n = 0;
    memset(w.ver, 0, len * sizeof *w.ver);
    int ok = 1;
    for (size_t i = 0; ok && i < len; i++) {
        w.id[i] = b->byte_id[p[i]];
        w.next[i] = i + 1 < len ? (uint32_t)(i + 1) : NONE;
        w.prev[i] = i ? (uint32_t)(i - 1) : NONE;
    }
    for (size_t i = 0; ok && i + 1 < len; i++) ok = offer(b, &w, &w.q, (uint32_t)i);
    while (ok && w.q.n) {
        const uint32_t rank = w.q.h[0].rank;
        while (ok && w.q.n && w.q.h[0].rank == rank) {
            const merge_at m = heap_pop(&w.q);
            if (!valid(&w, &m)) continue;
            const uint32_t l = m.left, r = m.right;
            w.id[l] = find_pair(b, w.id[l], w.id[r])->merged;
            w.ver[l]++;
            w.id[r] = NONE;
            w.ver[r]++;
            w.next[l] = w.next[r];
            if (w.next[r] != NONE) w.prev[w.next[r]] = l;
            ok = offer(b, &w, &w.pending, w.prev[l]) && offer(b, &w, &w.pending, l);
        }
        while (ok && w.pending.n) ok = heap_push(&w.q, heap_pop(&w.pending));
    }
    pw->q = w.q, pw->pending = w.pending; /* (grown heaps kept) */
    lk_status st = ok ? LK_OK : LK_ERR(LK_ERR_NOMEM, "tokenizer: out of memory for a piece of %zu bytes", len);
    for (uint32_t i = 0; st == LK_OK && i != NONE; i = w.next[i]) st = emit(ids, n, cap, w.id[i]);
    return st;
}

static int same_piece(const encode_work *e, const cache_slot *c, uint64_t h, const unsigned char *p, size_t len)
{
    return c->hash == h && c->len == len && !memcmp(e->bytes + c->at, p, len);
}

/* a piece through the cache: its ids as merged before, or merged now and kept */
static lk_status encode_piece(const lk_bpe *b, encode_work *e, const unsigned char *p, size_t len, int32_t **ids,
                              size_t *n, size_t *cap)
{
    if (len == 1 || len > CACHE_PIECE) return merge_piece(b, &e->w, p, len, ids, n, cap);
    if (!e->slot && ++e->pieces > 512) { /* (a text of a few hundred pieces merges them as they come) */
        e->slot = lk_calloc(CACHE_SLOTS, sizeof *e->slot);
        e->bytes = lk_malloc(CACHE_SLOTS / 2 * CACHE_PIECE);
        e->idv = lk_malloc(CACHE_SLOTS / 2 * CACHE_PIECE * sizeof *e->idv);
        if (!e->slot || !e->bytes || !e->idv) return LK_ERR(LK_ERR_NOMEM, "tokenizer: cannot allocate its cache");
    }
    if (!e->slot || !e->bytes || !e->idv) return merge_piece(b, &e->w, p, len, ids, n, cap);
    const uint64_t h = hash_bytes((const char *)p, len) | 1; /* (0: an empty slot) */
    size_t i = h & (CACHE_SLOTS - 1);
    for (; e->slot[i].hash; i = (i + 1) & (CACHE_SLOTS - 1))
        if (same_piece(e, &e->slot[i], h, p, len)) {
            const cache_slot *c = &e->slot[i];
            for (uint32_t k = 0; k < c->nids; k++) LK_CHECK(emit(ids, n, cap, e->idv[c->ids + k]));
            return LK_OK;
        }
    const size_t first = *n;
    LK_CHECK(merge_piece(b, &e->w, p, len, ids, n, cap));
    if (e->used >= CACHE_SLOTS / 2) { /* full: start again */
        memset(e->slot, 0, CACHE_SLOTS * sizeof *e->slot);
        e->used = e->nbytes = e->nidv = 0;
        for (i = h & (CACHE_SLOTS - 1); e->slot[i].hash; i = (i + 1) & (CACHE_SLOTS - 1)) {}
    }
    const size_t made = *n - first; /* (at most len ids: within the arenas) */
    e->slot[i] = (cache_slot){h, (uint32_t)e->nbytes, (uint32_t)len, (uint32_t)e->nidv, (uint32_t)made};
    memcpy(e->bytes + e->nbytes, p, len);
    for (size_t k = 0; k < made; k++) e->idv[e->nidv + k] = (uint32_t)(*ids)[first + k];
    e->nbytes += len, e->nidv += made, e->used++;
    return LK_OK;
}

lk_status lk_bpe_encode(const lk_bpe *b, const char *text, size_t len, int32_t **ids, size_t *n, size_t *cap)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(b->re, NULL);
    encode_work *e = lk_calloc(1, sizeof *e);
    if (!md || !e) {
        if (md) pcre2_match_data_free(md);
        lk_free(e);
        return LK_ERR(LK_ERR_NOMEM, "tokenizer: cannot allocate match data");
    }
    const unsigned char *t = (const unsigned char *)text;
    lk_status st = LK_OK;
    for (size_t at = 0; at < len && st == LK_OK;) {
        const int rc = pcre2_match(b->re, t, len, at, 0, md, NULL);
        size_t s = len, end = len;
        if (rc >= 0) {
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            s = ov[0], end = ov[1];
        } else if (rc != PCRE2_ERROR_NOMATCH) {
            st = LK_ERR(LK_ERR_STATE, "tokenizer: PCRE2 match error %d at byte %zu", rc, at);
            break;
        }
        /* bytes no match covers (not UTF-8): each a piece of its own */
        for (; at < s && st == LK_OK; at++) st = encode_piece(b, e, t + at, 1, ids, n, cap);
        if (st != LK_OK || at >= len) break;
        if (end <= s) end = s + 1; /* (no empty match in this pattern; never stall) */
        st = encode_piece(b, e, t + s, end - s, ids, n, cap);
        at = end;
    }
    pcre2_match_data_free(md);
    lk_free(e->slot), lk_free(e->bytes), lk_free(e->idv);
    lk_free(e->w.id), lk_free(e->w.next), lk_free(e->w.prev), lk_free(e->w.ver);
    lk_free(e->w.q.h), lk_free(e->w.pending.h);
    lk_free(e);
    return st;
}
