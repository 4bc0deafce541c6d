#!/usr/bin/env python3
"""Seed corpora for the libFuzzer targets: a valid example of each format and hand-made
adversarial ones (sizes that overflow when multiplied, huge or negative dimensions,
offsets past the end, overlapping or out-of-order tensors, duplicate or NUL-containing
names, truncated headers).

    tests/fuzz/seeds.py OUTDIR      writes OUTDIR/<target>/<name> for every target
"""
import gzip
import json
import os
import struct
import sys


def split(a, b):
    """an input of the two-file targets: 4 bytes of a's length, a, b"""
    return struct.pack("<I", len(a)) + a + b


def idx_images(n, rows, cols, pixels=None, kind=0x08):
    head = struct.pack(">I", (kind << 8) | 3) + struct.pack(">III", n, rows, cols)
    body = pixels if pixels is not None else bytes((i * 37) & 255 for i in range(n * rows * cols))
    return head + body


def idx_labels(n, labels=None):
    return struct.pack(">II", 0x0801, n) + (labels if labels is not None else bytes(i % 10 for i in range(n)))


def idx():
    img, lab = idx_images(3, 4, 5), idx_labels(3)
    return {
        "valid": split(img, lab),
        "valid-gzip": split(gzip.compress(img), gzip.compress(lab)),
        "gzip-images-plain-labels": split(gzip.compress(img), lab),
        "count-mismatch": split(img, idx_labels(2)),
        "dims-overflow": split(struct.pack(">IIII", 0x0803, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF) + b"\0" * 16, lab),
        "dims-overflow-32": split(struct.pack(">IIII", 0x0803, 0x10000, 0x10000, 0x10000) + b"\0" * 16, lab),
        "high-bit-count": split(struct.pack(">IIII", 0x0803, 0x80000001, 2, 2) + b"\0" * 16, idx_labels(0x80000001, b"")),
        "zero-dims": split(struct.pack(">IIII", 0x0803, 3, 0, 5), lab),
        "truncated-header": split(img[:9], lab[:5]),
        "truncated-pixels": split(img[:-7], lab),
        "float-type": split(struct.pack(">I", 0x0D03) + img[4:], lab),
        "labels-as-images": split(lab, img),
        "label-out-of-range": split(img, idx_labels(3, bytes([0, 200, 255]))),
        "gzip-truncated": split(gzip.compress(img)[:-10], lab),
        "gzip-bomb-header": split(gzip.compress(struct.pack(">IIII", 0x0803, 1 << 20, 1 << 10, 1 << 10)), lab),
        "empty": b"",
    }


def cifar():
    rec = bytes([3]) + bytes((i * 11) & 255 for i in range(3072))
    return {
        "one-record": rec,
        "two-records": rec + bytes([9]) + rec[1:],
        "truncated-record": rec + rec[:1000],
        "label-10": bytes([10]) + rec[1:],
        "label-255": bytes([255]) + rec[1:],
        "empty": b"",
        "header-only": rec[:1],
    }


def shard(ntok, tokens=None, magic=20240520, version=1, extra=b""):
    h = [0] * 256
    h[0], h[1], h[2] = magic, version, ntok
    toks = tokens if tokens is not None else [(i * 97) % 50257 for i in range(max(ntok, 0))]
    return struct.pack("<256i", *h) + struct.pack(f"<{len(toks)}H", *toks) + extra


def shards():
    good = shard(300)
    return {
        "valid": split(good, shard(120)),
        "ntok-negative": split(shard(-5, []), good),
        "ntok-huge": split(shard(0x7FFFFFFF, list(range(10))), good),
        "ntok-short": split(shard(300)[:-100], good),
        "ntok-long": split(shard(10, extra=b"\0\0\0\0"), good),
        "token-outside-vocab": split(shard(3, [1, 50257, 65535]), good),
        "bad-magic": split(shard(3, magic=1), good),
        "bad-version": split(shard(3, version=2), good),
        "header-truncated": split(good[:1000], good),
        "too-few-for-ctx": split(shard(1, [7]), shard(1, [8])),
        "empty": split(b"", b""),
    }


def text():
    return {
        "prose": b"\x08" + b"The quick brown fox jumps over the lazy dog.\n" * 20,
        "one-char": b"\x3f" + b"a",
        "nul-and-binary": b"\x05" + bytes(range(256)) * 3,
        "utf8": b"\x10" + "naive cafe \u00e9\u00e8 \u4e2d\u6587 \U0001F600\n".encode() * 10,
        "empty": b"",
    }


def st_file(entries, meta=None, data=b"", header_len=None, raw_header=None):
    h = {}
    if meta is not None:
        h["__metadata__"] = meta
    h.update(entries)
    js = raw_header if raw_header is not None else json.dumps(h).encode()
    js += b" " * (-len(js) % 8)
    n = len(js) if header_len is None else header_len
    return struct.pack("<Q", n) + js + data


def safetensors():
    a = {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    b = {"dtype": "F32", "shape": [4], "data_offsets": [24, 40]}
    data = struct.pack("<10f", *[float(i) for i in range(10)])
    return {
        "valid": st_file({"a": a, "b": b}, {"format": "pt"}, data),
        "bf16-and-i64": st_file({"h": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]},
                                 "i": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}}, None, bytes(16)),
        "header-len-huge": st_file({"a": a}, None, data, header_len=1 << 62),
        "header-len-past-end": st_file({"a": a}, None, data, header_len=4096),
        "offsets-past-end": st_file({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 4000]}}, None, data),
        "offsets-reversed": st_file({"a": {"dtype": "F32", "shape": [0], "data_offsets": [24, 0]}}, None, data),
        "overlapping": st_file({"a": a, "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, None, data),
        "out-of-order": st_file({"b": b, "a": a}, None, data),
        "gap": st_file({"a": a, "b": {"dtype": "F32", "shape": [2], "data_offsets": [32, 40]}}, None, data),
        "duplicate-names": st_file({}, None, data,
                                   raw_header=b'{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},'
                                              b'"a":{"dtype":"F32","shape":[4],"data_offsets":[24,40]}}'),
        "nul-in-name": st_file({}, None, data,
                               raw_header=b'{"a\\u0000b":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}'),
        "shape-overflow": st_file({"a": {"dtype": "F32", "shape": [1 << 40, 1 << 40, 1 << 40],
                                         "data_offsets": [0, 24]}}, None, data),
        "shape-negative": st_file({"a": {"dtype": "F32", "shape": [-2, -3], "data_offsets": [0, 24]}}, None, data),
        "shape-too-many-dims": st_file({"a": {"dtype": "F32", "shape": [1] * 40, "data_offsets": [0, 4]}}, None, data),
        "dtype-unknown": st_file({"a": {"dtype": "Q4", "shape": [6], "data_offsets": [0, 24]}}, None, data),
        "bytes-mismatch": st_file({"a": {"dtype": "F32", "shape": [5], "data_offsets": [0, 24]}}, None, data),
        "long-name": st_file({"n" * 300: a}, None, data),
        "metadata-not-strings": st_file({"a": a}, {"format": 5, "x": [1]}, data),
        "not-json": st_file({}, None, data, raw_header=b"{\"a\": [1, 2"),
        "truncated-header": st_file({"a": a}, None, data)[:20],
        "empty": b"",
        "len-only": struct.pack("<Q", 2),
    }


CONFIG = {  # as `lockstep train --save` writes it
    "format": "lockstep-checkpoint", "version": 1, "model": "mlp",
    "arch": {"layers": 0, "heads": 0, "dim": 0, "ctx": 128},
    "data": "fashion-mnist", "input_shape": [1, 28, 28], "classes": 10,
    "class_names": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                    "Ankle boot"],
    "epoch": 1, "step": 2, "seed": "0", "batch": 16, "world": 1, "accum": 1, "epoch_step": 2,
    "train_samples": 60000,
    "optimizer": {"name": "momentum", "lr": 0.01, "momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 0,
                  "alpha": 0.99, "weight_decay": 0, "l1": 0, "clip_norm": 0, "schedule": "constant",
                  "warmup": 0, "total_steps": 2, "step_size": 0, "gamma": 0.1, "decay": "all"},
}


def config(valid):
    base = json.dumps(valid).encode()
    def edit(**kw):
        c = json.loads(base)
        c.update(kw)
        return json.dumps(c).encode()
    return {
        "valid": base,
        "shape-huge": edit(input_shape=[1 << 31, 1 << 31, 1 << 31]),
        "shape-negative": edit(input_shape=[-1, 28, 28]),
        "shape-many-dims": edit(input_shape=[1] * 50),
        "classes-huge": edit(classes=1 << 40),
        "class-names-many": edit(class_names=["x"] * 1000),
        "class-name-long": edit(class_names=["y" * 5000]),
        "model-long": edit(model="m" * 10000),
        "types-wrong": edit(epoch="one", step=[1], seed=-1, batch=0, world=None),
        "seed-not-a-number": edit(seed="0x12junk"),
        "seed-overflow": edit(seed="999999999999999999999999"),
        "counts-negative": edit(epoch=-1, step=-5, batch=-16, world=-2),
        # (found by fuzzing: a cast of 2.2e32 to long is undefined)
        "counts-huge": edit(step=2.22222e32, epoch_step=1e300, train_samples=-1e19),
        "counts-fraction": edit(step=2.5, epoch_step=0.5, accum=1.5),
        "schedule-huge": edit(optimizer=dict(CONFIG["optimizer"], warmup=1e30, total_steps=-1e30,
                                             step_size=3.7)),
        "optimizer-unknown": edit(optimizer={"name": "nosuch"}),
        "optimizer-missing": edit(optimizer=None),
        "nul-in-model": base.replace(b'"mlp"', b'"ml\\u0000p"'),
        "truncated": base[: len(base) // 2],
        "not-object": b"[1, 2, 3]",
        "empty": b"",
    }


def image():
    return {
        "pgm": b"P5\n5 4\n255\n" + bytes(range(20)),
        "pgm-comments": b"P5 # c\n# more\n5 4 # x\n200\n" + bytes(range(20)),
        "pgm-huge": b"P5\n999999999 999999999\n255\n" + bytes(10),
        "pgm-zero": b"P5\n0 4\n255\n",
        "pgm-maxval-16bit": b"P5\n2 2\n65535\n" + bytes(8),
        "pgm-truncated": b"P5\n5 4\n255\n" + bytes(7),
        "pgm-header-cut": b"P5\n5 ",
        "idx": idx_images(2, 3, 3),
        "idx-gzip": gzip.compress(idx_images(2, 3, 3)),
        "empty": b"",
    }


def gpt2_char(b):
    """GPT-2's character for byte b (encoder.py's bytes_to_unicode)"""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    if b in printable:
        return chr(b)
    return chr(256 + [c for c in range(256) if c not in printable].index(b))


def bpe():
    """ENCODER \0 MERGES \0 TEXT: a small byte-level vocabulary and its merges, and text"""
    vocab = {gpt2_char(b): b for b in range(256)}
    merges = ["a a", "aa aa", "Ġ t", "Ġt h", "Ġth e", "# #"]
    for m in merges:
        vocab[m.replace(" ", "")] = len(vocab)
    enc = json.dumps(vocab).encode()
    mer = ("#version: 0.2\n" + "\n".join(merges) + "\n").encode()
    def case(text, e=enc, m=mer):
        return e + b"\0" + m + b"\0" + text
    no_byte = dict(vocab)
    del no_byte[gpt2_char(0)]
    return {
        "text": case("the theory, aaaaa!  ## héllo 日本 👍\n\n  x".encode()),
        "not-utf8": case(b"\xff\xfe abc \xc3\x28 \xe2\x82 aa"),
        "long-word": case(b"a" * 3000),
        "merge-unknown": case(b"x", m=b"q q\n"),
        "merge-three": case(b"x", m=b"a a a\n"),
        "id-duplicate": case(b"x", e=enc[:-1] + b', "zz": 3}'),
        "id-huge": case(b"x", e=enc[:-1] + b', "zz": 1e300}'),
        "byte-missing": case(b"x", e=json.dumps(no_byte).encode()),
        "not-object": case(b"x", e=b"[1,2]"),
        "empty": b"\0\0",
    }


def llmc():
    """b"\\0" + an llm.c checkpoint, or b"\\5" (odd: Hugging Face; 2 heads in bits 1-3) + a
    Hugging Face GPT-2 model.safetensors"""
    L, NH, C, T, V = 1, 2, 4, 3, 5
    Vp = (V + 127) // 128 * 128
    n = Vp * C + T * C + L * (2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + 4 * C * C + 4 * C + 4 * C * C + C) + 2 * C
    def head(version=3, t=T, v=V, l=L, nh=NH, c=C, vp=Vp):
        return struct.pack("<256i", 20240326, version, t, v, l, nh, c, vp, *[0] * 248)
    body = struct.pack(f"<{n}f", *[((i * 37) % 19 - 9) / 10 for i in range(n)])
    body16 = struct.pack(f"<{n}H", *[0x3f80] * n)
    def tensor(shape):
        k = 1
        for d in shape:
            k *= d
        return shape, struct.pack(f"<{k}f", *[0.01 * (i % 7) for i in range(k)])
    hf = {"wte.weight": tensor([V, C]), "wpe.weight": tensor([T, C]), "ln_f.weight": tensor([C]),
          "ln_f.bias": tensor([C])}
    for name, shape in (("ln_1.weight", [C]), ("ln_1.bias", [C]), ("attn.c_attn.weight", [C, 3 * C]),
                        ("attn.c_attn.bias", [3 * C]), ("attn.c_proj.weight", [C, C]), ("attn.c_proj.bias", [C]),
                        ("ln_2.weight", [C]), ("ln_2.bias", [C]), ("mlp.c_fc.weight", [C, 4 * C]),
                        ("mlp.c_fc.bias", [4 * C]), ("mlp.c_proj.weight", [4 * C, C]), ("mlp.c_proj.bias", [C])):
        hf[f"h.0.{name}"] = tensor(shape)
    header, blob, at = {}, b"", 0
    for k, (shape, data) in hf.items():
        header[k] = {"dtype": "F32", "shape": shape, "data_offsets": [at, at + len(data)]}
        blob += data
        at += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    hf_file = struct.pack("<Q", len(h)) + h + blob
    return {
        "llmc-valid": b"\0" + head() + body,
        "llmc-bf16": b"\0" + head(5) + body16,
        "llmc-truncated": b"\0" + head() + body[:100],
        "llmc-huge": b"\0" + head(t=1 << 30, v=1 << 30, c=1 << 30),
        "llmc-heads": b"\0" + head(nh=3) + body,
        "llmc-vp-small": b"\0" + head(vp=1) + body,
        "llmc-magic": b"\0" + b"\x00" * 1024,
        "hf-valid": b"\5" + hf_file,
        "hf-no-heads": b"\1" + hf_file,
        "hf-no-layer": b"\5" + hf_file.replace(b"h.0.ln_1.weight", b"h.9.ln_1.weight"),
        "hf-bad-shape": b"\5" + hf_file.replace(b'"shape": [4, 12]', b'"shape": [12, 4]'),
    }


def spec():
    """Model specs (the first byte: the sample shape and the classes), from the built-in
    ones (src/models/specs) and a few bad ones."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "models", "specs")
    out = {}
    for name in sorted(os.listdir(here)):
        text = open(os.path.join(here, name), "rb").read()
        first = {"gpt": 1, "gpt2": 1, "lstm": 0, "gru": 2, "gan": 0}.get(name.split("-")[0].split(".")[0], 0)
        out["builtin-" + name] = bytes([first | 9 << 2]) + text
    out["cycle"] = b"\0" + b'{"name": "c", "blocks": {"a": [{"type": "block", "name": "b"}], "b": [{"type": "block", ' \
        b'"name": "a"}]}, "layers": [{"type": "block", "name": "a"}]}'
    out["expressions"] = b"\3" + b'{"name": "e", "vars": {"w": "2 * h", "h": "sqrt(16) * classes"}, "layers": [' \
        b'{"type": "linear", "out": "w / 2 + shape(-1) - 784", "init": {"std": "0.02 / sqrt(w)"}}]}'
    # (found by the first campaign: shape() of a number no int holds was cast before the check)
    out["shape-huge"] = b"\3" + b'{"name": "s", "layers": [{"type": "linear", "out": "shape(-888888888888888888881)"}]}'
    # (found by the second: a var naming itself three times was worked out 3^16 times; now once,
    # and a var that needs itself is a cycle)
    out["vars-cycle"] = b"\3" + b'{"name": "v", "vars": {"w": "w * w + w", "u": "2 * k", "k": "u"}, "layers": [' \
        b'{"type": "linear", "out": "w"}]}'
    # (and the third: the worked-out vars' names pointed into a buffer gone by the next lookup)
    out["vars-twice"] = b"\3" + b'{"name": "v", "vars": {"w": "2 * h", "h": "sqrt(8) * classes"}, "layers": [' \
        b'{"type": "linear", "out": "(w / 2 + shape(-1) - 784) * 0 + w / (h / 4)"}]}'
    out["float-huge"] = b"\3" + b'{"name": "f", "layers": [{"type": "dropout", "p": 1e300}, {"type": "linear", ' \
        b'"out": 4, "init": {"std": "1e39 * 1e39"}}]}'
    out["nested-repeat"] = b"\3" + b'{"name": "r", "layers": [{"type": "repeat", "times": 3, "layers": [' \
        b'{"type": "residual", "layers": [{"type": "linear", "out": 784}, {"type": "tanh"}]}]}]}'
    out["gan-reshape"] = b"\0" + b'{"name": "g", "latent": 8, "generator": [{"type": "linear", "out": "input"}, ' \
        b'{"type": "reshape", "shape": [1, 28, -1]}], "discriminator": [{"type": "conv2d", "out": 2, "kernel": 3}, ' \
        b'{"type": "flatten"}, {"type": "linear", "out": 1}]}'
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    valid_config = CONFIG
    sets = {"idx": idx(), "cifar": cifar(), "shard": shards(), "text": text(), "safetensors": safetensors(),
            "config": config(valid_config), "image": image(), "bpe": bpe(), "llmc": llmc(), "spec": spec()}
    for target, seeds in sets.items():
        os.makedirs(os.path.join(out, target), exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(out, target, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
