/* safetensors.c - reading and writing safetensors files, atomic file writes.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON (padded with
 * spaces to a multiple of 8 so the data area stays 8-byte aligned), then the
 * data area, which the tensors must cover exactly: no gaps, no overlaps. */
#define _POSIX_C_SOURCE 200809L
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Tensor bytes are written and read as they lie in memory. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

#define ST_META "__metadata__"
#define ST_CRC_KEY "lockstep_crc32"
/* Integers a JSON double holds exactly. */
#define ST_MAX_JSON_INT 9007199254740992.0

struct lk_safetensors {
    void *file;          /* the whole file (lk_read_file) */
    void *aligned;       /* copy of the data area when the file's is misaligned */
    cJSON *root;         /* parsed header; metadata strings live here */
    const cJSON *meta;   /* "__metadata__" or NULL */
    int n;
    lk_st_entry *e;
    const lk_st_entry **by_name; /* sorted, for find */
};

/* ---------- small helpers ---------- */

static uint32_t crc_update(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n > 0) { /* zlib takes uInt lengths */
        uInt chunk = (uInt)LK_MIN(n, (size_t)1 << 30);
        crc = (uint32_t)crc32(crc, b, chunk);
        b += chunk;
        n -= chunk;
    }
    return crc;
}

static size_t dtype_size(const char *d)
{
    static const struct { const char *name; size_t size; } t[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
        {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
        {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(d, t[i].name) == 0) return t[i].size;
    return 0;
}

static int json_u64(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return 0;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= ST_MAX_JSON_INT) || (double)(uint64_t)v != v) return 0;
    *out = (uint64_t)v;
    return 1;
}

static int cmp_name_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---------- atomic write ---------- */

typedef struct {
    const void *p;
    size_t n;
} st_part;

static lk_status sync_dir(const char *path)
{
    size_t len = strlen(path);
    char *dir = lk_malloc(len + 2);
    if (!dir) return LK_ERR(LK_ERR_NOMEM, "out of memory syncing the directory of %s", path);
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) slash[1] = '\0';
    else *slash = '\0';
    lk_status s = LK_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* EINVAL: the filesystem cannot sync directories; the rename is all we get. */
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
        s = LK_ERR(LK_ERR_IO, "cannot sync directory %s after writing %s: %s", dir, path,
                   strerror(errno));
    if (fd >= 0) close(fd);
    lk_free(dir);
    return s;
}

/* Writes the parts in order to path.tmp.<pid>, syncs it and renames it onto
 * path, so readers see the old file or the new one, never half of one. */
static lk_status write_parts_atomic(const char *path, const st_part *parts, int nparts)
{
    if (!path || !*path) return LK_ERR(LK_ERR_ARG, "empty output path");
    size_t cap = strlen(path) + 32;
    char *tmp = lk_malloc(cap);
    if (!tmp) return LK_ERR(LK_ERR_NOMEM, "out of memory writing %s", path);
    snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());

    errno = 0;
    FILE *f = fopen(tmp, "wb");
    if (!f) goto fail;
    for (int i = 0; i < nparts; i++)
        if (parts[i].n && fwrite(parts[i].p, 1, parts[i].n, f) != parts[i].n) goto fail;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) goto fail;
    int rc = fclose(f);
    f = NULL;
    if (rc != 0 || rename(tmp, path) != 0) goto fail;
    lk_free(tmp);
    return sync_dir(path);

fail:;
    int err = errno ? errno : EIO; /* a short fwrite need not set errno */
    if (f) fclose(f);
    remove(tmp);
    lk_free(tmp);
    return LK_ERR(LK_ERR_IO, "cannot write %s: %s", path, strerror(err));
}

lk_status lk_write_file_atomic(const char *path, const void *data, size_t bytes)
{
    if (bytes && !data) return LK_ERR(LK_ERR_ARG, "no data to write to %s", path ? path : "");
    st_part part = {data, bytes};
    return write_parts_atomic(path, &part, 1);
}

lk_status lk_read_file(const char *path, void **data, size_t *bytes)
{
    if (!path || !data || !bytes) return LK_ERR(LK_ERR_ARG, "lk_read_file: NULL argument");
    *data = NULL;
    *bytes = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return LK_ERR(LK_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    int have_st = fstat(fileno(f), &st) == 0;
    if (have_st && S_ISDIR(st.st_mode)) {
        fclose(f);
        return LK_ERR(LK_ERR_IO, "cannot read %s: %s", path, strerror(EISDIR));
    }
    /* The size is a hint only: pipes and /proc files report 0. */
    size_t cap = have_st && S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    size_t n = 0;
    char *buf = lk_malloc(cap);
    lk_status s = LK_OK;
    errno = 0;
    while (buf) {
        n += fread(buf + n, 1, cap - 1 - n, f);
        int c = n == cap - 1 && !ferror(f) ? fgetc(f) : EOF; /* full: probe before growing */
        if (ferror(f)) {
            s = LK_ERR(LK_ERR_IO, "cannot read %s: %s", path, strerror(errno ? errno : EIO));
            break;
        }
        if (c == EOF) break;
        char *bigger = cap < SIZE_MAX / 2 ? lk_malloc(cap * 2) : NULL;
        if (bigger) memcpy(bigger, buf, n);
        lk_free(buf);
        buf = bigger;
        cap *= 2;
        if (buf) buf[n++] = (char)c;
    }
    fclose(f);
    if (!buf) return LK_ERR(LK_ERR_NOMEM, "out of memory reading %s", path);
    if (s != LK_OK) {
        lk_free(buf);
        return s;
    }
    buf[n] = '\0';
    *data = buf;
    *bytes = n;
    return LK_OK;
}

/* ---------- write ---------- */

static lk_status check_tensors(const char *path, const lk_st_tensor *t, int n, int need_data)
{
    for (int i = 0; i < n; i++) {
        const char *name = t[i].name;
        if (!name) return LK_ERR(LK_ERR_ARG, "%s: tensor %d has no name", path, i);
        if (strlen(name) >= sizeof(((lk_st_entry *)0)->name))
            return LK_ERR(LK_ERR_ARG, "%s: tensor name '%s' is too long (max %zu bytes)", path,
                          name, sizeof(((lk_st_entry *)0)->name) - 1);
        if (strcmp(name, ST_META) == 0)
            return LK_ERR(LK_ERR_ARG, "%s: '%s' is reserved, not a tensor name", path, name);
        if (t[i].ndim < 0 || t[i].ndim > LK_ST_MAX_DIMS)
            return LK_ERR(LK_ERR_ARG, "%s: tensor '%s' has %d dims (0..%d allowed)", path, name,
                          t[i].ndim, LK_ST_MAX_DIMS);
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            if (t[i].shape[d] < 0)
                return LK_ERR(LK_ERR_ARG, "%s: tensor '%s' has negative dim %" PRId64, path,
                              name, t[i].shape[d]);
            if (__builtin_mul_overflow(numel, (uint64_t)t[i].shape[d], &numel) ||
                numel > SIZE_MAX / sizeof(float))
                return LK_ERR(LK_ERR_ARG, "%s: tensor '%s' is too large", path, name);
        }
        if (need_data && numel && !t[i].data)
            return LK_ERR(LK_ERR_ARG, "%s: tensor '%s' has no data", path, name);
    }
    return LK_OK;
}

/* Rejects repeated names: a JSON object cannot hold them twice. */
static lk_status check_unique(const char *path, const char *const *names, int n, const char *what)
{
    if (n < 2) return LK_OK;
    const char **sorted = lk_malloc((size_t)n * sizeof *sorted);
    if (!sorted) return LK_ERR(LK_ERR_NOMEM, "out of memory writing %s", path);
    memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_name_ptr);
    lk_status s = LK_OK;
    for (int i = 1; i < n && s == LK_OK; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            s = LK_ERR(LK_ERR_ARG, "%s: %s '%s' given twice", path, what, sorted[i]);
    lk_free(sorted);
    return s;
}

static size_t tensor_bytes(const lk_st_tensor *t)
{
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
    return numel * sizeof(float);
}

/* Integers go in as raw text: cJSON would print large doubles in exponent form. */
static cJSON *json_int(uint64_t v)
{
    char num[32];
    snprintf(num, sizeof num, "%" PRIu64, v);
    return cJSON_CreateRaw(num);
}

static cJSON *build_header(const lk_st_tensor *t, int n, const char *const *mk,
                           const char *const *mv, int nmeta, uint32_t crc)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = root ? cJSON_AddObjectToObject(root, ST_META) : NULL;
    if (!meta) {
        cJSON_Delete(root);
        return NULL;
    }
    char crc_hex[16];
    snprintf(crc_hex, sizeof crc_hex, "%08" PRIx32, crc);
    int ok = cJSON_AddStringToObject(meta, "format", "pt") != NULL &&
             cJSON_AddStringToObject(meta, ST_CRC_KEY, crc_hex) != NULL;
    for (int i = 0; ok && i < nmeta; i++)
        ok = cJSON_AddStringToObject(meta, mk[i], mv[i]) != NULL;
    uint64_t off = 0;
    for (int i = 0; ok && i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        ok = e && cJSON_AddItemToObject(root, t[i].name, e);
        if (!ok) {
            cJSON_Delete(e);
            break;
        }
        ok = cJSON_AddStringToObject(e, "dtype", "F32") != NULL; /* the usual key order */
        cJSON *shape = ok ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = shape ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = offs != NULL;
        for (int d = 0; ok && d < t[i].ndim; d++)
            ok = cJSON_AddItemToArray(shape, json_int((uint64_t)t[i].shape[d]));
        uint64_t end = off + tensor_bytes(&t[i]);
        ok = ok && cJSON_AddItemToArray(offs, json_int(off)) &&
             cJSON_AddItemToArray(offs, json_int(end));
        off = end;
    }
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* The header for these tensors and this CRC: 8 bytes of length, then the JSON padded
 * with spaces to a multiple of 8. Its length does not depend on the CRC (8 hex digits). */
static lk_status make_head(const char *path, const lk_st_tensor *t, int n, const char *const *mk,
                           const char *const *mv, int nmeta, uint32_t crc, unsigned char **out,
                           size_t *bytes)
{
    *out = NULL;
    cJSON *root = build_header(t, n, mk, mv, nmeta, crc);
    char *json = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return LK_ERR(LK_ERR_NOMEM, "out of memory building the header of %s", path);
    size_t len = strlen(json), padded = LK_ALIGN_UP(len, 8);
    unsigned char *head = lk_malloc(8 + padded);
    if (head) {
        for (int b = 0; b < 8; b++) head[b] = (unsigned char)((uint64_t)padded >> (8 * b));
        memcpy(head + 8, json, len);
        memset(head + 8 + len, ' ', padded - len);
    }
    cJSON_free(json);
    if (!head) return LK_ERR(LK_ERR_NOMEM, "out of memory writing %s", path);
    *out = head;
    *bytes = 8 + padded;
    return LK_OK;
}

struct lk_st_writer {
    char *path, *tmp;
    FILE *f;
    const lk_st_tensor *t;
    int n, nmeta;
    const char *const *mk, *const *mv;
    size_t head_bytes;
    uint64_t expect, written;
    uint32_t crc;
};

static lk_status writer_fail(lk_st_writer *w, int err)
{
    lk_status st = LK_ERR(LK_ERR_IO, "cannot write %s: %s", w->path, strerror(err ? err : EIO));
    lk_safetensors_abort(w);
    return st;
}

lk_status lk_safetensors_begin(lk_st_writer **out, const char *path, const lk_st_tensor *tensors, int n,
                               const char *const *meta_keys, const char *const *meta_vals, int nmeta)
{
    *out = NULL;
    if (!path || !*path) return LK_ERR(LK_ERR_ARG, "safetensors: empty output path");
    if (n < 0 || (n > 0 && !tensors) || nmeta < 0 || (nmeta > 0 && (!meta_keys || !meta_vals)))
        return LK_ERR(LK_ERR_ARG, "%s: bad tensor or metadata list", path);
    for (int i = 0; i < nmeta; i++) {
        if (!meta_keys[i] || !meta_vals[i])
            return LK_ERR(LK_ERR_ARG, "%s: metadata pair %d is NULL", path, i);
        if (strcmp(meta_keys[i], "format") == 0 || strcmp(meta_keys[i], ST_CRC_KEY) == 0)
            return LK_ERR(LK_ERR_ARG, "%s: metadata key '%s' is reserved", path, meta_keys[i]);
    }
    LK_CHECK(check_tensors(path, tensors, n, 0));
    LK_CHECK(check_unique(path, meta_keys, nmeta, "metadata key"));
    const char **names = lk_malloc((size_t)LK_MAX(n, 1) * sizeof *names);
    if (!names) return LK_ERR(LK_ERR_NOMEM, "out of memory writing %s", path);
    for (int i = 0; i < n; i++) names[i] = tensors[i].name;
    lk_status s = check_unique(path, names, n, "tensor name");
    lk_free(names);
    LK_CHECK(s);

    lk_st_writer *w = lk_calloc(1, sizeof *w);
    size_t cap = strlen(path) + 32;
    if (w) w->path = lk_malloc(cap), w->tmp = lk_malloc(cap);
    if (!w || !w->path || !w->tmp) {
        lk_safetensors_abort(w);
        return LK_ERR(LK_ERR_NOMEM, "out of memory writing %s", path);
    }
    snprintf(w->path, cap, "%s", path);
    snprintf(w->tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    w->t = tensors, w->n = n, w->mk = meta_keys, w->mv = meta_vals, w->nmeta = nmeta;
    for (int i = 0; i < n; i++) w->expect += tensor_bytes(&tensors[i]);
    w->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    unsigned char *head = NULL; /* a placeholder until the CRC is known: same length */
    lk_status st = make_head(path, tensors, n, meta_keys, meta_vals, nmeta, 0, &head, &w->head_bytes);
    if (st != LK_OK) {
        lk_safetensors_abort(w);
        return st;
    }
    errno = 0;
    w->f = fopen(w->tmp, "wb");
    int ok = w->f && fwrite(head, 1, w->head_bytes, w->f) == w->head_bytes;
    lk_free(head);
    if (!ok) return writer_fail(w, errno);
    *out = w;
    return LK_OK;
}

lk_status lk_safetensors_put(lk_st_writer *w, const void *data, size_t bytes)
{
    if (w->written + bytes > w->expect) {
        lk_status st = LK_ERR(LK_ERR_ARG, "%s: %" PRIu64 " bytes of tensor data written, more than the "
                              "header's %" PRIu64, w->path, w->written + bytes, w->expect);
        lk_safetensors_abort(w);
        return st;
    }
    errno = 0;
    if (bytes && fwrite(data, 1, bytes, w->f) != bytes) return writer_fail(w, errno);
    w->crc = crc_update(w->crc, data, bytes);
    w->written += bytes;
    return LK_OK;
}

lk_status lk_safetensors_end(lk_st_writer *w)
{
    if (w->written != w->expect) {
        lk_status st = LK_ERR(LK_ERR_ARG, "%s: %" PRIu64 " bytes of tensor data written, the header "
                              "says %" PRIu64, w->path, w->written, w->expect);
        lk_safetensors_abort(w);
        return st;
    }
    unsigned char *head = NULL;
    size_t bytes = 0;
    lk_status st = make_head(w->path, w->t, w->n, w->mk, w->mv, w->nmeta, w->crc, &head, &bytes);
    if (st != LK_OK || bytes != w->head_bytes) {
        lk_free(head);
        if (st == LK_OK) st = LK_ERR(LK_ERR_STATE, "%s: the header changed length", w->path);
        lk_safetensors_abort(w);
        return st;
    }
    errno = 0;
    int ok = fseek(w->f, 0, SEEK_SET) == 0 && fwrite(head, 1, bytes, w->f) == bytes &&
             fflush(w->f) == 0 && fsync(fileno(w->f)) == 0;
    lk_free(head);
    if (!ok) return writer_fail(w, errno);
    int rc = fclose(w->f);
    w->f = NULL;
    if (rc != 0 || rename(w->tmp, w->path) != 0) return writer_fail(w, errno);
    st = sync_dir(w->path);
    lk_free(w->tmp);
    w->tmp = NULL; /* renamed: nothing to remove */
    lk_safetensors_abort(w);
    return st;
}

void lk_safetensors_abort(lk_st_writer *w)
{
    if (!w) return;
    if (w->f) fclose(w->f);
    if (w->tmp) remove(w->tmp);
    lk_free(w->tmp);
    lk_free(w->path);
    lk_free(w);
}

lk_status lk_safetensors_write(const char *path, const lk_st_tensor *tensors, int n,
                               const char *const *meta_keys, const char *const *meta_vals,
                               int nmeta)
{
    LK_CHECK(check_tensors(path ? path : "", tensors, n > 0 && tensors ? n : 0, 1));
    lk_st_writer *w;
    LK_CHECK(lk_safetensors_begin(&w, path, tensors, n, meta_keys, meta_vals, nmeta));
    for (int i = 0; i < n; i++) LK_CHECK(lk_safetensors_put(w, tensors[i].data, tensor_bytes(&tensors[i])));
    return lk_safetensors_end(w);
}

/* ---------- read ---------- */

typedef struct {
    uint64_t begin, end;
    const char *name;
} st_span;

static int cmp_span(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int cmp_entry_name(const void *a, const void *b)
{
    const lk_st_entry *x = *(const lk_st_entry *const *)a, *y = *(const lk_st_entry *const *)b;
    return strcmp(x->name, y->name);
}

static lk_status parse_entry(const char *path, const cJSON *item, size_t data_size,
                             lk_st_entry *e, st_span *span)
{
    const char *name = item->string;
    if (strlen(name) >= sizeof e->name)
        return LK_ERR(LK_ERR_FORMAT, "%s: tensor name '%.60s...' is longer than %zu bytes",
                      path, name, sizeof e->name - 1);
    strcpy(e->name, name);
    span->name = e->name;
    if (!cJSON_IsObject(item))
        return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);

    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    const char *missing = !dtype ? "dtype" : !shape ? "shape" : !offs ? "data_offsets" : NULL;
    if (missing)
        return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s': missing field \"%s\"", path, name, missing);

    size_t esize = cJSON_IsString(dtype) ? dtype_size(dtype->valuestring) : 0;
    if (!esize)
        return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s': unknown dtype %s", path, name,
                      cJSON_IsString(dtype) ? dtype->valuestring : "(not a string)");
    strcpy(e->dtype, dtype->valuestring); /* every known dtype fits */

    int ndim = cJSON_IsArray(shape) ? cJSON_GetArraySize(shape) : -1;
    if (ndim < 0 || ndim > LK_ST_MAX_DIMS)
        return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s': shape must be an array of at most %d dims",
                      path, name, LK_ST_MAX_DIMS);
    e->ndim = ndim;
    uint64_t numel = 1, dim;
    for (int d = 0; d < ndim; d++) {
        if (!json_u64(cJSON_GetArrayItem(shape, d), &dim) || dim > INT64_MAX)
            return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s': shape dim %d is not a non-negative "
                          "integer", path, name, d);
        e->shape[d] = (int64_t)dim;
        if (__builtin_mul_overflow(numel, dim, &numel))
            return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s': shape is too large", path, name);
    }

    uint64_t b, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_u64(cJSON_GetArrayItem(offs, 0), &b) || !json_u64(cJSON_GetArrayItem(offs, 1), &end))
        return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s': data_offsets must be two non-negative "
                      "integers", path, name);
    if (end < b)
        return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                      "] end before begin", path, name, b, end);
    if (end > data_size)
        return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                      "] beyond the data area of %zu bytes (file truncated?)", path, name, b, end,
                      data_size);
    uint64_t want;
    if (__builtin_mul_overflow(numel, (uint64_t)esize, &want) || want != end - b)
        return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s': %" PRIu64 " data bytes, but %s with %"
                      PRIu64 " elements needs %" PRIu64, path, name, end - b, e->dtype, numel,
                      numel * esize);
    e->bytes = (size_t)(end - b);
    span->begin = b;
    span->end = end;
    return LK_OK;
}

/* The spec wants the data area covered exactly once, in any order. */
static lk_status check_coverage(const char *path, st_span *spans, int n, size_t data_size)
{
    qsort(spans, (size_t)n, sizeof *spans, cmp_span);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (spans[i].begin < at)
            return LK_ERR(LK_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data area "
                          "(byte %" PRIu64 ")", path, spans[i - 1].name, spans[i].name,
                          spans[i].begin);
        if (spans[i].begin > at)
            return LK_ERR(LK_ERR_FORMAT, "%s: gap of %" PRIu64 " bytes in the data area before "
                          "tensor '%s'", path, spans[i].begin - at, spans[i].name);
        at = spans[i].end;
    }
    if (at != data_size)
        return LK_ERR(LK_ERR_FORMAT, "%s: data area has %zu bytes but the tensors cover %"
                      PRIu64 " (trailing bytes)", path, data_size, at);
    return LK_OK;
}

static lk_status check_meta(const char *path, const cJSON *meta, const unsigned char *data,
                            size_t data_size)
{
    if (!cJSON_IsObject(meta))
        return LK_ERR(LK_ERR_FORMAT, "%s: \"%s\" is not a JSON object", path, ST_META);
    for (const cJSON *kv = meta->child; kv; kv = kv->next)
        if (!cJSON_IsString(kv))
            return LK_ERR(LK_ERR_FORMAT, "%s: metadata value of '%s' is not a string", path,
                          kv->string);
    const cJSON *crc = cJSON_GetObjectItemCaseSensitive(meta, ST_CRC_KEY);
    if (!crc) return LK_OK; /* files from other writers carry none */
    const char *hex = crc->valuestring;
    if (strlen(hex) != 8 || strspn(hex, "0123456789abcdefABCDEF") != 8)
        return LK_ERR(LK_ERR_FORMAT, "%s: bad %s value '%s'", path, ST_CRC_KEY, hex);
    uint32_t want = (uint32_t)strtoul(hex, NULL, 16);
    uint32_t got = crc_update((uint32_t)crc32(0L, Z_NULL, 0), data, data_size);
    if (got != want)
        return LK_ERR(LK_ERR_FORMAT, "%s: checksum mismatch: file is corrupt (stored %s, "
                      "computed %08" PRIx32 ")", path, hex, got);
    return LK_OK;
}

static lk_status parse_file(const char *path, lk_safetensors *st, size_t size)
{
    const unsigned char *buf = st->file;
    if (size < 8)
        return LK_ERR(LK_ERR_FORMAT, "%s: file is %zu bytes, too short for a safetensors "
                      "header (truncated?)", path, size);
    uint64_t hlen = 0;
    for (int b = 7; b >= 0; b--) hlen = (hlen << 8) | buf[b];
    if (hlen > size - 8)
        return LK_ERR(LK_ERR_FORMAT, "%s: header length %" PRIu64 " is beyond the end of the "
                      "file (%zu bytes)", path, hlen, size);
    const char *hdr = (const char *)buf + 8, *end = NULL;
    st->root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!st->root)
        return LK_ERR(LK_ERR_FORMAT, "%s: header is not valid JSON (error near byte %td of %"
                      PRIu64 ")", path, end ? end - hdr : 0, hlen);
    for (const char *p = end; p < hdr + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return LK_ERR(LK_ERR_FORMAT, "%s: header has bytes after its JSON (at %td)", path,
                          p - hdr);
    if (!cJSON_IsObject(st->root))
        return LK_ERR(LK_ERR_FORMAT, "%s: header is not a JSON object", path);

    size_t data_size = size - 8 - (size_t)hlen;
    const unsigned char *data = buf + 8 + hlen;
    if ((uintptr_t)data % 8) { /* padding-free writers: realign for typed access */
        st->aligned = lk_malloc(data_size);
        if (!st->aligned) return LK_ERR(LK_ERR_NOMEM, "out of memory reading %s", path);
        memcpy(st->aligned, data, data_size);
        data = st->aligned;
    }

    int count = cJSON_GetArraySize(st->root);
    st->e = lk_calloc((size_t)count, sizeof *st->e);
    st_span *spans = lk_malloc((size_t)count * sizeof *spans);
    lk_status s = st->e && spans ? LK_OK : LK_ERR(LK_ERR_NOMEM, "out of memory reading %s", path);
    for (const cJSON *it = st->root->child; it && s == LK_OK; it = it->next) {
        if (strcmp(it->string, ST_META) == 0) {
            if (st->meta) s = LK_ERR(LK_ERR_FORMAT, "%s: \"%s\" appears twice", path, ST_META);
            st->meta = it;
            continue;
        }
        lk_st_entry *e = &st->e[st->n];
        s = parse_entry(path, it, data_size, e, &spans[st->n]);
        if (s == LK_OK) e->data = data + spans[st->n].begin;
        st->n++;
    }
    if (s == LK_OK) s = check_coverage(path, spans, st->n, data_size);
    lk_free(spans);
    if (s == LK_OK && st->meta) s = check_meta(path, st->meta, data, data_size);
    if (s != LK_OK) return s;

    st->by_name = lk_malloc((size_t)st->n * sizeof *st->by_name);
    if (!st->by_name) return LK_ERR(LK_ERR_NOMEM, "out of memory reading %s", path);
    for (int i = 0; i < st->n; i++) st->by_name[i] = &st->e[i];
    qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_entry_name);
    for (int i = 1; i < st->n; i++)
        if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0)
            return LK_ERR(LK_ERR_FORMAT, "%s: tensor '%s' appears twice", path,
                          st->by_name[i]->name);
    return LK_OK;
}

lk_status lk_safetensors_read(const char *path, lk_safetensors **out)
{
    if (!path || !out) return LK_ERR(LK_ERR_ARG, "lk_safetensors_read: NULL argument");
    *out = NULL;
    lk_safetensors *st = lk_calloc(1, sizeof *st);
    if (!st) return LK_ERR(LK_ERR_NOMEM, "out of memory reading %s", path);
    size_t size = 0;
    lk_status s = lk_read_file(path, &st->file, &size);
    if (s == LK_OK) s = parse_file(path, st, size);
    if (s != LK_OK) {
        lk_safetensors_free(st);
        return s;
    }
    *out = st;
    return LK_OK;
}

int lk_safetensors_count(const lk_safetensors *st) { return st ? st->n : 0; }

const lk_st_entry *lk_safetensors_entry(const lk_safetensors *st, int i)
{
    return st && i >= 0 && i < st->n ? &st->e[i] : NULL;
}

const lk_st_entry *lk_safetensors_find(const lk_safetensors *st, const char *name)
{
    if (!st || !name) return NULL;
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->by_name[mid]->name);
        if (c == 0) return st->by_name[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *lk_safetensors_meta(const lk_safetensors *st, const char *key)
{
    if (!st || !st->meta || !key) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(st->meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void lk_safetensors_free(lk_safetensors *st)
{
    if (!st) return;
    cJSON_Delete(st->root);
    lk_free(st->by_name);
    lk_free(st->e);
    lk_free(st->aligned);
    lk_free(st->file);
    lk_free(st);
}
