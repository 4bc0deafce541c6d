/* test_safetensors.c - safetensors read/write, validation and atomic writes. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/checkpoint.h"
#include "core/layers.h"
#include "core/ops.h"

/* ---------- helpers ---------- */

static void fill(float *v, size_t n, int salt)
{
    for (size_t i = 0; i < n; i++) v[i] = (float)((int)(i % 13) + salt) * 0.5f - 2.75f;
}

/* Writes a file with the given raw header JSON (space-padded to a multiple
 * of 8 when pad) followed by ndata bytes. */
static const char *craft(const char *fname, const char *json, const void *data, size_t ndata,
                         int pad)
{
    size_t len = strlen(json), hlen = pad ? (len + 7) / 8 * 8 : len;
    unsigned char *buf = calloc(1, 8 + hlen + ndata + 1);
    assert_non_null(buf);
    for (int b = 0; b < 8; b++) buf[b] = (unsigned char)((uint64_t)hlen >> (8 * b));
    memcpy(buf + 8, json, len);
    memset(buf + 8 + len, ' ', hlen - len);
    if (ndata) memcpy(buf + 8 + hlen, data, ndata);
    const char *path = tu_write(fname, buf, 8 + hlen + ndata);
    free(buf);
    return path;
}

/* Reading path fails with code, and the message names the file, the problem
 * and (when given) the tensor. */
static void expect_bad(const char *path, lk_status code, const char *needle, const char *tensor)
{
    lk_safetensors *st = (lk_safetensors *)1;
    TU_FAILS_WITH(lk_safetensors_read(path, &st), code, needle);
    assert_null(st);
    if (!strstr(lk_error_message(), path))
        fail_msg("error '%s' does not name the file %s", lk_error_message(), path);
    if (tensor && !strstr(lk_error_message(), tensor))
        fail_msg("error '%s' does not name tensor '%s'", lk_error_message(), tensor);
}

static int tmp_files_left(void)
{
    DIR *d = opendir(tu_tmpdir());
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* A small valid file: a [2,3] and a [4] tensor. Returns its bytes (free()). */
static unsigned char *valid_file(const char *fname, size_t *size, const char **path)
{
    float a[6], b[4];
    fill(a, 6, 0);
    fill(b, 4, 1);
    lk_st_tensor t[2] = {{"a", 2, {2, 3}, a}, {"b", 1, {4}, b}};
    *path = tu_write(fname, "", 0);
    TU_OK(lk_safetensors_write(*path, t, 2, NULL, NULL, 0));
    void *raw;
    TU_OK(lk_read_file(*path, &raw, size));
    unsigned char *copy = malloc(*size);
    assert_non_null(copy);
    memcpy(copy, raw, *size);
    lk_free(raw);
    return copy;
}

static uint64_t header_len(const unsigned char *raw)
{
    uint64_t n = 0;
    for (int b = 7; b >= 0; b--) n = (n << 8) | raw[b];
    return n;
}

/* ---------- tests ---------- */

static void test_roundtrip(void **state)
{
    (void)state;
    float w[12], b[4], k[18], s[1] = {42.0f}, big[16];
    fill(w, 12, 0);
    fill(b, 4, 3);
    fill(k, 18, 5);
    fill(big, 16, 7);
    w[0] = -0.0f; /* bit patterns must survive exactly */
    w[1] = INFINITY;
    w[2] = NAN;
    w[3] = 1e-45f;
    const lk_st_tensor t[] = {
        {"0.weight", 2, {3, 4}, w},
        {"0.bias", 1, {4}, b},
        {"conv.k", 4, {2, 1, 3, 3}, k},
        {"scalar", 0, {0}, s},
        {"empty", 2, {0, 5}, NULL},
        {"eight", 8, {1, 2, 1, 2, 1, 2, 1, 2}, big},
    };
    const int n = (int)(sizeof t / sizeof t[0]);
    const char *keys[] = {"epoch", "note"}, *vals[] = {"3", "h\xc3\xa9llo \"quoted\"\n"};
    const char *path = tu_write("rt.safetensors", "", 0);
    TU_OK(lk_safetensors_write(path, t, n, keys, vals, 2));

    lk_safetensors *st = NULL;
    TU_OK(lk_safetensors_read(path, &st));
    assert_int_equal(lk_safetensors_count(st), n);
    for (int i = 0; i < n; i++) {
        const lk_st_entry *e = lk_safetensors_entry(st, i);
        assert_non_null(e);
        assert_string_equal(e->name, t[i].name); /* order as written */
        assert_string_equal(e->dtype, "F32");
        assert_int_equal(e->ndim, t[i].ndim);
        size_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            assert_int_equal(e->shape[d], t[i].shape[d]);
            numel *= (size_t)t[i].shape[d];
        }
        assert_int_equal(e->bytes, numel * sizeof(float));
        if (numel) assert_memory_equal(e->data, t[i].data, e->bytes);
        assert_int_equal((uintptr_t)e->data % sizeof(float), 0);
        assert_ptr_equal(lk_safetensors_find(st, t[i].name), e);
    }
    assert_null(lk_safetensors_entry(st, n));
    assert_null(lk_safetensors_entry(st, -1));
    assert_null(lk_safetensors_find(st, "nope"));
    assert_string_equal(lk_safetensors_meta(st, "format"), "pt");
    assert_string_equal(lk_safetensors_meta(st, "epoch"), "3");
    assert_string_equal(lk_safetensors_meta(st, "note"), vals[1]);
    assert_int_equal(strlen(lk_safetensors_meta(st, "lockstep_crc32")), 8);
    assert_null(lk_safetensors_meta(st, "missing"));
    lk_safetensors_free(st);

    /* no tensors at all is a valid file too */
    TU_OK(lk_safetensors_write(path, NULL, 0, NULL, NULL, 0));
    TU_OK(lk_safetensors_read(path, &st));
    assert_int_equal(lk_safetensors_count(st), 0);
    assert_string_equal(lk_safetensors_meta(st, "format"), "pt");
    lk_safetensors_free(st);
}

/* Checks the bytes against the format description, independently of the reader. */
static void test_spec_layout(void **state)
{
    (void)state;
    size_t size;
    const char *path;
    unsigned char *raw = valid_file("spec.safetensors", &size, &path);
    uint64_t n = header_len(raw);
    assert_true(n % 8 == 0);
    assert_true(8 + n <= size);
    assert_int_equal(size - 8 - n, (6 + 4) * sizeof(float));
    cJSON *h = cJSON_ParseWithLength((const char *)raw + 8, (size_t)n);
    assert_true(cJSON_IsObject(h));
    cJSON_Delete(h);
    /* our writer's compact JSON, tensors in the order given and contiguous */
    char *json = strndup((const char *)raw + 8, (size_t)n);
    char crc[80];
    snprintf(crc, sizeof crc, "\"lockstep_crc32\":\"%08lx\"",
             crc32(0L, raw + 8 + n, (uInt)(size - 8 - n)));
    assert_non_null(strstr(json, crc));
    assert_non_null(strstr(json, "\"format\":\"pt\""));
    assert_non_null(
        strstr(json, "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"));
    assert_non_null(
        strstr(json, "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[24,40]}"));
    free(json);
    float want[4];
    fill(want, 4, 1);
    assert_memory_equal(raw + 8 + n + 24, want, sizeof want);
    for (uint64_t i = 8; i < 8 + n; i++) /* compact JSON, then spaces: no NULs */
        assert_true(raw[i] >= 0x20 && raw[i] < 0x7f);
    free(raw);
}

static void test_checksum(void **state)
{
    (void)state;
    size_t size;
    const char *path;
    unsigned char *raw = valid_file("crc.safetensors", &size, &path);
    raw[size - 3] ^= 0x10; /* one bit in b's data */
    expect_bad(tu_write("crc-bad.safetensors", raw, size), LK_ERR_FORMAT,
               "checksum mismatch: file is corrupt", NULL);
    free(raw);
}

static void test_truncated(void **state)
{
    (void)state;
    size_t size;
    const char *path;
    unsigned char *raw = valid_file("trunc.safetensors", &size, &path);
    expect_bad(tu_write("trunc-data.safetensors", raw, size - 4), LK_ERR_FORMAT, "truncated",
               "'b'");
    expect_bad(tu_write("trunc-5.safetensors", raw, 5), LK_ERR_FORMAT, "too short", NULL);
    expect_bad(tu_write("trunc-0.safetensors", raw, 0), LK_ERR_FORMAT, "too short", NULL);
    expect_bad(tu_write("trunc-hdr.safetensors", raw, 8 + 10), LK_ERR_FORMAT, "beyond", NULL);
    free(raw);
}

static void test_header_length(void **state)
{
    (void)state;
    size_t size;
    const char *path;
    unsigned char *raw = valid_file("hlen.safetensors", &size, &path);
    raw[6] = 0x7f; /* ~2^55 bytes of header */
    expect_bad(tu_write("hlen-big.safetensors", raw, size), LK_ERR_FORMAT,
               "header length", NULL);
    memset(raw, 0xff, 8); /* 2^64-1: must not wrap around */
    expect_bad(tu_write("hlen-max.safetensors", raw, size), LK_ERR_FORMAT, "beyond", NULL);
    free(raw);
}

static void test_garbage_header(void **state)
{
    (void)state;
    float x[2] = {1, 2};
    expect_bad(craft("g1.st", "this is not json at all", NULL, 0, 1), LK_ERR_FORMAT,
               "not valid JSON", NULL);
    expect_bad(craft("g2.st", "{\"a\":{\"dtype\":\"F32\",", NULL, 0, 1), LK_ERR_FORMAT,
               "not valid JSON", NULL);
    expect_bad(craft("g3.st", "[1, 2, 3]", NULL, 0, 1), LK_ERR_FORMAT, "not a JSON object",
               NULL);
    expect_bad(craft("g4.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}xx",
                     x, 8, 1),
               LK_ERR_FORMAT, "after its JSON", NULL);
    expect_bad(craft("g5.st", "", NULL, 0, 0), LK_ERR_FORMAT, "not valid JSON", NULL);
    expect_bad(craft("g6.st", "{\"a\":7}", NULL, 0, 1), LK_ERR_FORMAT, "not a JSON object",
               "a");
    expect_bad(craft("g7.st", "{\"__metadata__\":{\"k\":1}}", NULL, 0, 1), LK_ERR_FORMAT,
               "not a string", "k");
    expect_bad(craft("g8.st", "{\"__metadata__\":[]}", NULL, 0, 1), LK_ERR_FORMAT,
               "not a JSON object", NULL);
}

static void test_overlap_and_gaps(void **state)
{
    (void)state;
    float x[4] = {1, 2, 3, 4};
    expect_bad(craft("ov.st",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]}}",
                     x, 16, 1),
               LK_ERR_FORMAT, "overlap", "'b'");
    expect_bad(craft("same.st",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                     x, 8, 1),
               LK_ERR_FORMAT, "overlap", "'a'");
    expect_bad(craft("gap.st",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                     x, 16, 1),
               LK_ERR_FORMAT, "gap", "'b'");
    expect_bad(craft("start.st",
                     "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", x, 16, 1),
               LK_ERR_FORMAT, "gap", "'b'");
    expect_bad(craft("tail.st",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", x, 16, 1),
               LK_ERR_FORMAT, "trailing bytes", NULL);
    expect_bad(craft("dup.st",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                     x, 8, 1),
               LK_ERR_FORMAT, "twice", "'a'");
}

static void test_bad_entries(void **state)
{
    (void)state;
    float x[4] = {1, 2, 3, 4};
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "needs 12"},
        {"{\"w\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", "needs 16"},
        {"{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "missing field \"dtype\""},
        {"{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", "missing field \"shape\""},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", "missing field \"data_offsets\""},
        {"{\"w\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", "unknown dtype"},
        {"{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", "unknown dtype"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "end before"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", "beyond"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "non-negative"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", "non-negative"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", "array"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}",
         "at most 8"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", "two non-negative"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,\"8\"]}}",
         "two non-negative"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,8]}}", "too large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "entry%zu.st", i);
        expect_bad(craft(name, cases[i].json, x, 8, 1), LK_ERR_FORMAT, cases[i].needle, "'w'");
    }
    char longname[300] = "{\"";
    memset(longname + 2, 'n', 200);
    strcpy(longname + 202, "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}");
    expect_bad(craft("long.st", longname, x, 8, 1), LK_ERR_FORMAT, "longer than", NULL);
    expect_bad(craft("crcfmt.st", "{\"__metadata__\":{\"lockstep_crc32\":\"0x12\"}}", NULL, 0, 1),
               LK_ERR_FORMAT, "lockstep_crc32", NULL);
}

/* Files from other writers: no CRC, unpadded header, other dtypes, any order. */
static void test_foreign_files(void **state)
{
    (void)state;
    unsigned char data[64];
    for (int i = 0; i < 64; i++) data[i] = (unsigned char)(i * 7);
    const char *json =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[48,64]},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
        "\"z\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]},"
        "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[12,16]},"
        "\"q\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[16,32]},"
        "\"s\":{\"dtype\":\"I16\",\"shape\":[3],\"data_offsets\":[32,38]},"
        "\"c\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[38,40]},"
        "\"u\":{\"dtype\":\"U8\",\"shape\":[1,3],\"data_offsets\":[40,43]},"
        "\"m\":{\"dtype\":\"BOOL\",\"shape\":[5],\"data_offsets\":[43,48]},"
        "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[48,48]}}";
    for (int pad = 0; pad < 2; pad++) {
        const char *path = craft(pad ? "foreign-pad.st" : "foreign.st", json, data, 64, pad);
        lk_safetensors *st = NULL;
        TU_OK(lk_safetensors_read(path, &st));
        assert_int_equal(lk_safetensors_count(st), 10);
        assert_null(lk_safetensors_meta(st, "lockstep_crc32"));
        const lk_st_entry *d = lk_safetensors_find(st, "d");
        assert_non_null(d);
        assert_string_equal(d->dtype, "F64");
        assert_int_equal(d->bytes, 16);
        assert_memory_equal(d->data, data + 48, 16);
        assert_int_equal((uintptr_t)d->data % 8, 0); /* realigned when unpadded */
        assert_string_equal(lk_safetensors_entry(st, 0)->name, "d");
        assert_string_equal(lk_safetensors_find(st, "m")->dtype, "BOOL");
        assert_memory_equal(lk_safetensors_find(st, "u")->data, data + 40, 3);
        assert_int_equal(lk_safetensors_find(st, "e")->bytes, 0);
        assert_int_equal(lk_safetensors_find(st, "s")->shape[0], 3);
        lk_safetensors_free(st);
    }
}

static void test_write_rejects(void **state)
{
    (void)state;
    float x[4] = {0};
    const char *path = tu_write("rej.safetensors", "", 0);
    lk_st_tensor dup[2] = {{"a", 1, {4}, x}, {"a", 1, {4}, x}};
    TU_FAILS_WITH(lk_safetensors_write(path, dup, 2, NULL, NULL, 0), LK_ERR_ARG, "twice");
    lk_st_tensor neg = {"n", 1, {-1}, x};
    TU_FAILS_WITH(lk_safetensors_write(path, &neg, 1, NULL, NULL, 0), LK_ERR_ARG, "negative");
    lk_st_tensor nine = {"nine", 9, {1}, x};
    TU_FAILS_WITH(lk_safetensors_write(path, &nine, 1, NULL, NULL, 0), LK_ERR_ARG, "dims");
    lk_st_tensor nodata = {"nd", 1, {4}, NULL};
    TU_FAILS_WITH(lk_safetensors_write(path, &nodata, 1, NULL, NULL, 0), LK_ERR_ARG, "no data");
    lk_st_tensor meta = {"__metadata__", 1, {4}, x};
    TU_FAILS_WITH(lk_safetensors_write(path, &meta, 1, NULL, NULL, 0), LK_ERR_ARG, "reserved");
    const char *k[] = {"lockstep_crc32"}, *v[] = {"00000000"};
    TU_FAILS_WITH(lk_safetensors_write(path, dup, 1, k, v, 1), LK_ERR_ARG, "reserved");
    const char *k2[] = {"x", "x"}, *v2[] = {"1", "2"};
    TU_FAILS_WITH(lk_safetensors_write(path, dup, 1, k2, v2, 2), LK_ERR_ARG, "twice");
    /* nothing was written by any of these */
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 0);
}

static void test_atomic_write(void **state)
{
    (void)state;
    const char *path = tu_write("atomic.bin", "old contents that are longer", 28);
    TU_OK(lk_write_file_atomic(path, "new", 3));
    void *data;
    size_t n;
    TU_OK(lk_read_file(path, &data, &n));
    assert_int_equal(n, 3);
    assert_string_equal((char *)data, "new"); /* NUL-terminated */
    lk_free(data);
    TU_OK(lk_write_file_atomic(path, NULL, 0));
    TU_OK(lk_read_file(path, &data, &n));
    assert_int_equal(n, 0);
    lk_free(data);
    assert_int_equal(tmp_files_left(), 0);

    /* a file bigger than any stdio buffer */
    size_t big = 3u << 20;
    unsigned char *buf = malloc(big);
    assert_non_null(buf);
    for (size_t i = 0; i < big; i++) buf[i] = (unsigned char)(i * 31 + (i >> 11));
    TU_OK(lk_write_file_atomic(path, buf, big));
    TU_OK(lk_read_file(path, &data, &n));
    assert_int_equal(n, big);
    assert_memory_equal(data, buf, big);
    lk_free(data);
    free(buf);

    char missing[700];
    snprintf(missing, sizeof missing, "%s/no/such/dir/file.bin", tu_tmpdir());
    TU_FAILS_WITH(lk_write_file_atomic(missing, "x", 1), LK_ERR_IO, missing);
    assert_non_null(strstr(lk_error_message(), "No such file"));
    TU_FAILS_WITH(lk_read_file(missing, &data, &n), LK_ERR_IO, missing);
    assert_null(data);

    /* rename onto a directory fails after the temp file exists: it must go */
    char dir[700];
    snprintf(dir, sizeof dir, "%s/adir", tu_tmpdir());
    assert_int_equal(mkdir(dir, 0755), 0);
    TU_FAILS_WITH(lk_write_file_atomic(dir, "x", 1), LK_ERR_IO, dir);
    assert_int_equal(tmp_files_left(), 0);
    TU_FAILS_WITH(lk_read_file(dir, &data, &n), LK_ERR_IO, "directory");

    float x[2] = {1, 2};
    lk_st_tensor t = {"x", 1, {2}, x};
    TU_FAILS_WITH(lk_safetensors_write(missing, &t, 1, NULL, NULL, 0), LK_ERR_IO, missing);
    expect_bad(missing, LK_ERR_IO, "No such file", NULL);
    assert_int_equal(tmp_files_left(), 0);
}

/* ---------- PyTorch interoperability ---------- */

static const char *py_script =
    "import json, struct, sys, zlib, torch\n"
    "mode, path = sys.argv[1], sys.argv[2]\n"
    "shapes = {'w': (3, 4), 'b': (4,), 'k': (2, 1, 3, 3)}\n"
    "def ref(n, salt):\n"
    "    return ((torch.arange(n) % 13 + salt) * 0.5 - 2.75).float()\n"
    "if mode == 'read':\n"
    "    raw = open(path, 'rb').read()\n"
    "    (n,) = struct.unpack('<Q', raw[:8])\n"
    "    assert n % 8 == 0, n\n"
    "    hdr = json.loads(raw[8:8 + n].decode('utf-8'))\n"
    "    data = bytearray(raw[8 + n:])\n"
    "    meta = hdr.pop('__metadata__')\n"
    "    assert meta['format'] == 'pt' and meta['origin'] == 'lockstep', meta\n"
    "    assert int(meta['lockstep_crc32'], 16) == zlib.crc32(data)\n"
    "    assert list(hdr) == ['w', 'b', 'k'], list(hdr)\n"
    "    for salt, (name, shape) in enumerate(shapes.items()):\n"
    "        e = hdr[name]\n"
    "        assert e['dtype'] == 'F32' and tuple(e['shape']) == shape, e\n"
    "        b, end = e['data_offsets']\n"
    "        t = torch.frombuffer(data[b:end], dtype=torch.float32).reshape(shape)\n"
    "        want = ref(t.numel(), salt).reshape(shape)\n"
    "        assert torch.equal(t, want), (name, t, want)\n"
    "else:\n"
    "    a = [0.5 * i - 1 for i in range(6)]\n"
    "    blobs = [('a', 'F32', [2, 3], struct.pack('<6f', *a)),\n"
    "             ('h', 'F16', [3], struct.pack('<3e', 1.5, -2.0, 0.25)),\n"
    "             ('q', 'I64', [3], struct.pack('<3q', 1, -2, 1 << 40))]\n"
    "    hdr, off = {'__metadata__': {'format': 'pt'}}, 0\n"
    "    for name, dt, shape, blob in blobs:\n"
    "        hdr[name] = {'dtype': dt, 'shape': shape, 'data_offsets': [off, off + len(blob)]}\n"
    "        off += len(blob)\n"
    "    h = json.dumps(hdr).encode()\n"
    "    h += b' ' * ((5 - len(h)) % 8)\n"
    "    with open(path, 'wb') as f:\n"
    "        f.write(struct.pack('<Q', len(h)) + h + b''.join(x[3] for x in blobs))\n";

static void test_pytorch_interop(void **state)
{
    (void)state;
    if (system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
        fprintf(stderr, "[  SKIPPED ] PyTorch is not importable by /usr/bin/python3\n");
        skip();
    }
    const char *script = tu_write("check_st.py", py_script, strlen(py_script));
    float w[12], b[4], k[18];
    fill(w, 12, 0);
    fill(b, 4, 1);
    fill(k, 18, 2);
    lk_st_tensor t[3] = {{"w", 2, {3, 4}, w}, {"b", 1, {4}, b}, {"k", 4, {2, 1, 3, 3}, k}};
    const char *key[] = {"origin"}, *val[] = {"lockstep"};
    const char *ours = tu_write("ours.safetensors", "", 0);
    TU_OK(lk_safetensors_write(ours, t, 3, key, val, 1));
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' read '%s'", script, ours);
    assert_int_equal(system(cmd), 0);

    const char *theirs = tu_write("theirs.safetensors", "", 0);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' write '%s'", script, theirs);
    assert_int_equal(system(cmd), 0);
    lk_safetensors *st = NULL;
    TU_OK(lk_safetensors_read(theirs, &st));
    assert_int_equal(lk_safetensors_count(st), 3);
    const lk_st_entry *a = lk_safetensors_find(st, "a");
    assert_non_null(a);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[1], 3);
    const float *af = a->data;
    for (int i = 0; i < 6; i++) assert_true(af[i] == 0.5f * (float)i - 1.0f);
    const lk_st_entry *h = lk_safetensors_find(st, "h");
    const uint16_t want_h[3] = {0x3e00, 0xc000, 0x3400}; /* 1.5, -2, 0.25 in IEEE half */
    assert_string_equal(h->dtype, "F16");
    assert_memory_equal(h->data, want_h, sizeof want_h);
    const lk_st_entry *q = lk_safetensors_find(st, "q");
    const int64_t want_q[3] = {1, -2, (int64_t)1 << 40};
    assert_memory_equal(q->data, want_q, sizeof want_q);
    lk_safetensors_free(st);
}

/* ---------- model-level checkpoints ---------- */

/* Linear(4,hidden), ReLU, Linear(hidden,2) [, Linear(2,2)] */
static lk_model *tiny_model(int hidden, int extra, uint64_t seed)
{
    lk_model *m = NULL;
    lk_shape in = {1, {4, 1, 1, 1}};
    TU_OK(lk_model_create(&m, tu_cpu(), &in));
    TU_OK(lk_model_add(m, lk_linear(4, hidden, 1)));
    TU_OK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0.0f)));
    TU_OK(lk_model_add(m, lk_linear(hidden, 2, 1)));
    if (extra) TU_OK(lk_model_add(m, lk_linear(2, 2, 0)));
    TU_OK(lk_model_build(m, 2));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, seed));
    return m;
}

/* Compares parameter slices of buffers a (model ma) and b; padding is ignored. */
static int same_slices(const lk_model *m, const float *a, const float *b)
{
    size_t n = m->nparams;
    float *ha = malloc(n * sizeof *ha), *hb = malloc(n * sizeof *hb);
    assert_true(ha && hb);
    lk_copy_to_host(m->dev, ha, a, n * sizeof *ha);
    lk_copy_to_host(m->dev, hb, b, n * sizeof *hb);
    int same = 1;
    for (int i = 0; i < lk_model_param_count(m); i++) {
        const lk_param *p = lk_model_param(m, i, NULL, 0);
        same &= !memcmp(ha + p->offset, hb + p->offset, lk_shape_numel(&p->shape) * 4);
    }
    free(ha);
    free(hb);
    return same;
}

static void test_checkpoint_weights(void **state)
{
    (void)state;
    lk_model *m1 = tiny_model(3, 0, 1), *m2 = tiny_model(3, 0, 2);
    lk_model *wide = tiny_model(5, 0, 3), *deep = tiny_model(3, 1, 4);
    const char *path = tu_write("model.safetensors", "", 0);
    const char *k[] = {"model"}, *v[] = {"tiny"};
    TU_OK(lk_checkpoint_save_weights(path, m1, k, v, 1));

    lk_safetensors *st = NULL;
    TU_OK(lk_safetensors_read(path, &st));
    static const char *names[] = {"0.weight", "0.bias", "2.weight", "2.bias"};
    assert_int_equal(lk_safetensors_count(st), 4);
    for (int i = 0; i < 4; i++) assert_string_equal(lk_safetensors_entry(st, i)->name, names[i]);
    const lk_st_entry *w = lk_safetensors_find(st, "0.weight");
    assert_int_equal(w->ndim, 2);
    assert_int_equal(w->shape[0], 3);
    assert_int_equal(w->shape[1], 4);
    float host[12];
    lk_copy_to_host(m1->dev, host, lk_model_param(m1, 0, NULL, 0)->w, sizeof host);
    assert_memory_equal(w->data, host, sizeof host);
    assert_string_equal(lk_safetensors_meta(st, "model"), "tiny");
    lk_safetensors_free(st);

    assert_false(same_slices(m1, m1->params, m2->params));
    TU_OK(lk_checkpoint_load_weights(path, m2));
    assert_true(same_slices(m1, m1->params, m2->params));

    /* mismatches are refused and leave the model as it was */
    float *before = malloc(wide->nparams * sizeof *before);
    assert_non_null(before);
    lk_copy_to_host(wide->dev, before, wide->params, wide->nparams * sizeof *before);
    TU_FAILS_WITH(lk_checkpoint_load_weights(path, wide), LK_ERR_SHAPE,
                  "'0.weight' has shape [3, 4] but the model expects [5, 4]");
    float *after = malloc(wide->nparams * sizeof *after);
    assert_non_null(after);
    lk_copy_to_host(wide->dev, after, wide->params, wide->nparams * sizeof *after);
    assert_memory_equal(before, after, wide->nparams * sizeof *after);
    free(before);
    free(after);
    TU_FAILS_WITH(lk_checkpoint_load_weights(path, deep), LK_ERR_FORMAT,
                  "'3.weight' (F32 [2, 2]) is missing");
    TU_OK(lk_checkpoint_save_weights(path, deep, NULL, NULL, 0));
    TU_FAILS_WITH(lk_checkpoint_load_weights(path, m1), LK_ERR_FORMAT,
                  "'3.weight' has no counterpart");
    assert_true(same_slices(m1, m1->params, m2->params));
    lk_model_destroy(m1);
    lk_model_destroy(m2);
    lk_model_destroy(wide);
    lk_model_destroy(deep);
}

static void test_checkpoint_optim(void **state)
{
    (void)state;
    lk_model *m = tiny_model(3, 0, 1);
    lk_optim *a1, *a2, *sgd;
    lk_optim_config ca = lk_optim_defaults(LK_OPT_ADAM), cs = lk_optim_defaults(LK_OPT_SGD);
    TU_OK(lk_optim_create(&a1, m->dev, &ca, m->nparams));
    TU_OK(lk_optim_create(&a2, m->dev, &ca, m->nparams));
    TU_OK(lk_optim_create(&sgd, m->dev, &cs, m->nparams));
    float *v = malloc(m->nparams * sizeof *v);
    assert_non_null(v);
    fill(v, m->nparams, 0);
    lk_copy_to_device(m->dev, a1->s1, v, m->nparams * sizeof *v);
    fill(v, m->nparams, 4);
    lk_copy_to_device(m->dev, a1->s2, v, m->nparams * sizeof *v);
    free(v);
    a1->step = 17;
    const char *path = tu_write("optim.safetensors", "", 0);
    TU_OK(lk_checkpoint_save_optim(path, m, a1));

    lk_safetensors *st = NULL;
    TU_OK(lk_safetensors_read(path, &st));
    assert_int_equal(lk_safetensors_count(st), 8);
    assert_string_equal(lk_safetensors_entry(st, 0)->name, "0.weight.state0");
    assert_string_equal(lk_safetensors_entry(st, 1)->name, "0.weight.state1");
    assert_string_equal(lk_safetensors_meta(st, "optimizer"), lk_optim_name(LK_OPT_ADAM));
    assert_string_equal(lk_safetensors_meta(st, "step"), "17");
    lk_safetensors_free(st);

    TU_OK(lk_checkpoint_load_optim(path, m, a2));
    assert_int_equal(a2->step, 17);
    assert_true(same_slices(m, a1->s1, a2->s1));
    assert_true(same_slices(m, a1->s2, a2->s2));
    TU_FAILS_WITH(lk_checkpoint_load_optim(path, m, sgd), LK_ERR_FORMAT,
                  "optimizer state is for 'adam' but the run uses 'sgd'");
    assert_int_equal(sgd->step, 0);

    /* SGD has no state: only the step travels */
    sgd->step = 5;
    TU_OK(lk_checkpoint_save_optim(path, m, sgd));
    sgd->step = 0;
    TU_OK(lk_checkpoint_load_optim(path, m, sgd));
    assert_int_equal(sgd->step, 5);
    lk_optim_destroy(a1);
    lk_optim_destroy(a2);
    lk_optim_destroy(sgd);
    lk_model_destroy(m);
}

/* Opens the device before tu_tmpdir() runs: testutil.c registers its atexit
 * cleanup twice (closing the device twice) when the directory comes first. */
static int open_device_first(void **state)
{
    (void)state;
    return tu_cpu() ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_spec_layout),
        cmocka_unit_test(test_checksum),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_header_length),
        cmocka_unit_test(test_garbage_header),
        cmocka_unit_test(test_overlap_and_gaps),
        cmocka_unit_test(test_bad_entries),
        cmocka_unit_test(test_foreign_files),
        cmocka_unit_test(test_write_rejects),
        cmocka_unit_test(test_atomic_write),
        cmocka_unit_test(test_pytorch_interop),
        cmocka_unit_test(test_checkpoint_weights),
        cmocka_unit_test(test_checkpoint_optim),
    };
    return cmocka_run_group_tests(tests, open_device_first, NULL);
}
