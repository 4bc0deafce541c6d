#!/usr/bin/python3
"""PyTorch twin of lockstep's gpt2 (GPT-2 124M), for bench/gpt2.sh's speed comparison.

    bench/gpt2_torch.py --data DIR [--batch 4] [--ctx 64] [--steps 10] [--warmup W]
                        [--threads N] [--device cpu|cuda] [--seed 0]

The same definition as `lockstep train --model gpt2` (src/models/zoo.c build_transformer,
src/core/layers/attention.c), written as nanoGPT writes it:
  token + learned position embeddings (N(0, 0.02^2)), 12 pre-LayerNorm blocks
    x = x + c_proj(attn(c_attn(ln_1(x))))        12 heads, causal softmax(q k^T / sqrt(64)) v
    x = x + c_proj(gelu_tanh(c_fc(ln_2(x))))     MLP 4x wide
  (LayerNorm eps 1e-5, every Linear with a bias, weights N(0, 0.02^2), the two residual
  projections N(0, (0.02 / sqrt(24))^2), biases 0), a final LayerNorm and the head tied to
  the token embedding; vocabulary 50257 (no padding to 50304), dim 768, context up to 1024.
  Attention is computed as lockstep computes it: the T x T scores of every (head, sample)
  materialised, masked, softmaxed, times v (no fused/flash kernel, also not on a GPU).
  Loss: cross-entropy over every token of the window. AdamW lr 3e-4, betas (0.9, 0.999),
  eps 1e-8, weight decay 0.1 on the 2-D tensors only (nanoGPT's two groups: the matrices
  and both embeddings decay, biases and LayerNorms do not), as lockstep's default
  `--decay matrices` for gpt2*; PyTorch's default AdamW implementation otherwise.

Data: an llm.c token shard, DIR/gpt2_train_*.bin (the first, sorted): a header of 256
int32 (magic 20240520, version 1, the token count) then uint16 tokens. Each sample is a
random window of ctx + 1 tokens (inputs the first ctx, labels the last ctx), drawn with
a seeded generator before the clock starts.

Timing: `--warmup` untimed steps (default: lockstep's, the first 10% of --steps, at most
20), then the rest timed one by one (zero_grad, forward, loss, backward, step; on a GPU
synchronised before each clock reading). Prints one JSON line: step_ms (median of the timed
steps), tokens_per_s (batch x ctx x timed steps / their summed time: the mean, as
lockstep's summary computes it), flops_per_token, model_flops_per_s, the first and last
step's loss, threads as torch sees them, BLAS.

Threads: --threads N calls torch.set_num_threads(N); Debian's torch does its matrix
products in OpenBLAS, which follows OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set before
Python starts, not set_num_threads: the caller (bench/gpt2.sh) sets those to N too.

Run it with Debian's interpreter (/usr/bin/python3), which has python3-torch.
"""

import argparse
import glob
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, LAYERS, HEADS, DIM, MAX_CTX = 50257, 12, 12, 768, 1024
MAGIC, VERSION = 20240520, 1


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, heads, ctx):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.register_buffer("mask", torch.ones(ctx, ctx, dtype=torch.bool).triu(1), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        hd = C // self.heads
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, hd).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        s = s.masked_fill(self.mask[:T, :T], float("-inf"))
        y = F.softmax(s, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.c_fc = nn.Linear(dim, 4 * dim)
        self.c_proj = nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, dim, heads, ctx):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = CausalSelfAttention(dim, heads, ctx)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = MLP(dim)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, vocab=VOCAB, layers=LAYERS, heads=HEADS, dim=DIM, ctx=MAX_CTX):
        super().__init__()
        self.layers, self.dim = layers, dim
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(ctx, dim)
        self.h = nn.ModuleList(Block(dim, heads, ctx) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim, eps=1e-5)
        # GPT-2's initialisation, as lockstep's gpt2_init
        proj_std = 0.02 / math.sqrt(2 * layers)
        for name, p in self.named_parameters():
            if "ln_" in name:
                continue  # LayerNorms keep ones and zeros
            if name.endswith(".bias"):
                nn.init.zeros_(p)
            elif name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, proj_std)
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe.weight[:T]
        for block in self.h:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)  # the head tied to wte

    def matmul_params(self):
        """N of the 6N + 12 L C T convention: the weights of every matrix product, the tied
        token embedding once (it is the head's matrix), not the position table, biases or
        norms."""
        return sum(p.numel() for n, p in self.named_parameters() if p.dim() == 2 and n != "wpe.weight")

    def flops_per_token(self, T):
        """Model FLOPs of one token's training step, lockstep's (and PaLM's, llm.c's)
        convention: 2 per multiply-add of every product, the attention scores and their
        weighted sum over all T x T pairs, backward twice forward: 6N + 12 L C T.
        For gpt2 (N = 123 532 032) at T = 64: 748 270 080 per token, lockstep's summary
        model_flops_per_sample at --ctx 64 (4.78893e+10) / 64; at T = 256: 769 503 744
        (lockstep's 1.96993e+11 / 256), checked by hand against `lockstep train --model
        gpt2` and by bench/gpt2.sh on every run (it fails if the two differ)."""
        return 6 * self.matmul_params() + 12 * self.layers * self.dim * T


def loaded_blas():
    """The BLAS library this process has mapped (Debian's torch says BLAS_INFO=generic: it
    links libblas.so.3, which the alternatives system points at OpenBLAS or another)."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if "blas" in os.path.basename(path).lower() and path.startswith("/"):
                    libs.add("/".join(os.path.realpath(path).split("/")[-2:]))
    except OSError:
        pass
    name = " + ".join(sorted(libs)) or "?"
    try:  # OpenBLAS says which kernels it picked for this CPU (Prescott: SSE3 only)
        import ctypes
        ob = ctypes.CDLL("libopenblas.so.0")
        ob.openblas_get_corename.restype = ctypes.c_char_p
        name += " (core " + ob.openblas_get_corename().decode() + ")"
    except (OSError, AttributeError):
        pass
    return name


def load_shard(data):
    files = sorted(glob.glob(os.path.join(data, "gpt2_train_*.bin"))) if os.path.isdir(data) else [data]
    if not files:
        raise SystemExit(f"gpt2_torch.py: no gpt2_train_*.bin in {data}")
    path = files[0]
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size < 1024:
        raise SystemExit(f"gpt2_torch.py: {path}: shorter than llm.c's 1024-byte header")
    header = raw[:1024].view("<i4")
    if header[0] != MAGIC or header[1] != VERSION:
        raise SystemExit(f"gpt2_torch.py: {path}: magic {header[0]} version {header[1]}, "
                         f"expected {MAGIC} and {VERSION} (an llm.c token shard)")
    count = int(header[2])
    if raw.size < 1024 + 2 * count:
        raise SystemExit(f"gpt2_torch.py: {path}: truncated ({count} tokens announced)")
    tokens = raw[1024:1024 + 2 * count].view("<u2")
    if tokens.size and int(tokens.max()) >= VOCAB:
        raise SystemExit(f"gpt2_torch.py: {path}: token {int(tokens.max())} >= {VOCAB}")
    return path, torch.from_numpy(tokens.astype(np.int64))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="folder with gpt2_train_*.bin (or one shard)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--ctx", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="all steps, warm-up included (as lockstep's --steps)")
    p.add_argument("--warmup", type=int, default=-1,
                   help="untimed steps first (default: lockstep's, min(20, steps / 10))")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.batch < 1 or a.threads < 1 or a.steps < 1:
        p.error("--batch, --threads and --steps must be >= 1")
    if not 1 <= a.ctx <= MAX_CTX:
        p.error(f"--ctx must be in 1..{MAX_CTX}")
    warmup = a.warmup if a.warmup >= 0 else min(20, a.steps // 10)
    if warmup >= a.steps:
        p.error("--warmup must be below --steps")

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    dev = torch.device(a.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("gpt2_torch.py: --device cuda but torch sees no GPU")
        # float32 as lockstep computes it: no TF32 in the products or convolutions
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    torch.manual_seed(a.seed)
    path, tokens = load_shard(a.data)
    T, B = a.ctx, a.batch
    if tokens.numel() < T + 1:
        raise SystemExit(f"gpt2_torch.py: {path}: {tokens.numel()} tokens, fewer than ctx + 1 = {T + 1}")
    gen = torch.Generator().manual_seed(a.seed)
    starts = torch.randint(0, tokens.numel() - T, (a.steps, B), generator=gen)
    windows = torch.stack([tokens[s:s + T + 1] for s in starts.flatten().tolist()]).view(a.steps, B, T + 1)
    windows = windows.to(dev)

    model = GPT2(ctx=max(T, 1)).to(dev)
    model.train()
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), eps=1e-8)

    times, losses = [], []
    for step in range(a.steps):
        x, y = windows[step, :, :T], windows[step, :, 1:]
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        opt.step()
        sync()
        t1 = time.perf_counter()
        losses.append(loss.item())  # after the clock: the GPU's copy back is not a step's
        if step >= warmup:
            times.append(t1 - t0)

    if not all(math.isfinite(v) for v in losses):
        raise SystemExit(f"gpt2_torch.py: non-finite loss: {losses}")
    fpt = model.flops_per_token(T)
    tps = B * T * len(times) / sum(times)
    blas = loaded_blas() if dev.type == "cpu" else "cuBLAS"
    print(json.dumps({
        "framework": "pytorch",
        "model": "gpt2",
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "batch": B,
        "ctx": T,
        "steps": a.steps,
        "warmup": warmup,
        "step_ms": round(statistics.median(times) * 1e3, 3),
        "tokens_per_s": round(tps, 2),
        "params": sum(q.numel() for q in model.parameters()),
        "matmul_params": model.matmul_params(),
        "flops_per_token": fpt,
        "model_flops_per_s": tps * fpt,
        "first_loss": round(losses[0], 6),
        "loss": round(losses[-1], 6),
        "threads": torch.get_num_threads(),
        "env_threads": {k: os.environ.get(k, "") for k in
                        ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "blas": blas,
        "torch": torch.__version__,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
