"""GPT-2 as llm.c lays it out, in PyTorch: the reference tests/e2e/convert.sh holds
lockstep's converted checkpoints to. Written from llm.c's format (train_gpt2.c, version 3),
not from lockstep's code.

  llmc_gpt2.py write OUT.bin L NH C T V SEED   a random GPT-2 in llm.c's format
  llmc_gpt2.py loss IN.bin SHARD               the mean cross-entropy over SHARD's windows of T
  llmc_gpt2.py hf IN.bin OUT.safetensors       the same weights as Hugging Face's GPT2LMHeadModel
                                               saves them (Conv1D weights in x out)
  llmc_gpt2.py bf16 IN.bin OUT5.bin OUT3.bin   IN's weights rounded to bf16 as llm.c's version 5
                                               writes them, and the same values in version 3
"""
import struct
import sys

import torch


def sizes(L, C, T, Vp):
    return [("wte", (Vp, C)), ("wpe", (T, C)), ("ln1w", (L, C)), ("ln1b", (L, C)), ("qkvw", (L, 3 * C, C)),
            ("qkvb", (L, 3 * C)), ("attprojw", (L, C, C)), ("attprojb", (L, C)), ("ln2w", (L, C)), ("ln2b", (L, C)),
            ("fcw", (L, 4 * C, C)), ("fcb", (L, 4 * C)), ("fcprojw", (L, C, 4 * C)), ("fcprojb", (L, C)),
            ("lnfw", (C,)), ("lnfb", (C,))]


def write(path, L, NH, C, T, V, seed):
    Vp = (V + 127) // 128 * 128
    g = torch.Generator().manual_seed(seed)
    head = [20240326, 3, T, V, L, NH, C, Vp] + [0] * 248
    parts = []
    for name, shape in sizes(L, C, T, Vp):
        t = torch.randn(shape, generator=g) * 0.1
        if name.startswith("ln") and name.endswith("w"):
            t = 1.0 + t
        if name == "wte":
            t[V:] = 0.0  # llm.c's padding rows
        parts.append(t.float().contiguous().numpy().tobytes())
    open(path, "wb").write(struct.pack("<256i", *head) + b"".join(parts))


def load(path):
    b = open(path, "rb").read()
    h = struct.unpack("<256i", b[:1024])
    assert h[0] == 20240326 and h[1] == 3, h[:2]
    T, V, L, NH, C, Vp = h[2:8]
    p, at = {}, 1024
    for name, shape in sizes(L, C, T, Vp):
        n = 1
        for d in shape:
            n *= d
        p[name] = torch.frombuffer(bytearray(b[at:at + 4 * n]), dtype=torch.float32).reshape(shape)
        at += 4 * n
    assert at == len(b), (at, len(b))
    return p, (T, V, L, NH, C)


def forward(p, dims, idx):
    T, V, L, NH, C = dims
    B, t = idx.shape
    ln = torch.nn.functional.layer_norm
    x = p["wte"][idx] + p["wpe"][:t]
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for l in range(L):
        h = ln(x, (C,), p["ln1w"][l], p["ln1b"][l], 1e-5)
        q, k, v = (h @ p["qkvw"][l].T + p["qkvb"][l]).split(C, dim=2)
        q, k, v = (z.view(B, t, NH, C // NH).transpose(1, 2) for z in (q, k, v))
        a = (q @ k.transpose(-2, -1)) / (C // NH) ** 0.5
        a = a.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (a @ v).transpose(1, 2).reshape(B, t, C)
        x = x + y @ p["attprojw"][l].T + p["attprojb"][l]
        h = ln(x, (C,), p["ln2w"][l], p["ln2b"][l], 1e-5)
        h = torch.nn.functional.gelu(h @ p["fcw"][l].T + p["fcb"][l], approximate="tanh")
        x = x + h @ p["fcprojw"][l].T + p["fcprojb"][l]
    x = ln(x, (C,), p["lnfw"], p["lnfb"], 1e-5)
    return x @ p["wte"][:V].T


def loss(path, shard):
    torch.set_grad_enabled(False)
    p, dims = load(path)
    T = dims[0]
    b = open(shard, "rb").read()
    n = struct.unpack("<3i", b[:12])[2]
    tok = torch.tensor(struct.unpack(f"<{n}H", b[1024:1024 + 2 * n]), dtype=torch.long)
    w = (n - 1) // T
    x = tok[:w * T].view(w, T)
    y = tok[1:w * T + 1].view(w, T)
    logits = forward(p, dims, x)
    print(f"{torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item():.6f}")


def hf(path, out):
    import json
    p, (T, V, L, NH, C) = load(path)
    t = {"transformer.wte.weight": p["wte"][:V], "transformer.wpe.weight": p["wpe"],
         "transformer.ln_f.weight": p["lnfw"], "transformer.ln_f.bias": p["lnfb"]}
    conv = {"attn.c_attn": ("qkvw", "qkvb"), "attn.c_proj": ("attprojw", "attprojb"),
            "mlp.c_fc": ("fcw", "fcb"), "mlp.c_proj": ("fcprojw", "fcprojb")}
    for l in range(L):
        h = f"transformer.h.{l}."
        t[h + "ln_1.weight"], t[h + "ln_1.bias"] = p["ln1w"][l], p["ln1b"][l]
        t[h + "ln_2.weight"], t[h + "ln_2.bias"] = p["ln2w"][l], p["ln2b"][l]
        for name, (w, b) in conv.items():
            t[h + name + ".weight"] = p[w][l].T  # Conv1D: in x out
            t[h + name + ".bias"] = p[b][l]
    header, blobs, at = {}, [], 0
    for name in sorted(t):
        x = t[name].contiguous().float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t[name].shape), "data_offsets": [at, at + len(x)]}
        blobs.append(x)
        at += len(x)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(out, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def bf16(path, out5, out3):
    b = open(path, "rb").read()
    h = list(struct.unpack("<256i", b[:1024]))
    x = torch.frombuffer(bytearray(b[1024:]), dtype=torch.float32)
    r = x.to(torch.bfloat16)  # (round to nearest even)
    h[1] = 5
    open(out5, "wb").write(struct.pack("<256i", *h) + r.view(torch.int16).numpy().tobytes())
    h[1] = 3
    open(out3, "wb").write(struct.pack("<256i", *h) + r.float().numpy().tobytes())


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], *map(int, sys.argv[3:9]))
    elif sys.argv[1] == "hf":
        hf(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "bf16":
        bf16(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        loss(sys.argv[2], sys.argv[3])
