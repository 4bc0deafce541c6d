#!/usr/bin/python3
"""PyTorch twin of lockstep's reference models, for speed and accuracy comparisons.

The models are nn.Sequential so parameter names ("1.weight", "3.bias", ...) are stable
and match the layer order of docs/DESIGN "Reference models":

  mlp       Flatten, Linear(784,128), ReLU, Linear(128,10)
  mlp-wide  Flatten, Linear(784,1024), ReLU, Linear(1024,1024), ReLU, Linear(1024,10)
  cnn       Conv2d(1,32,3,p=1), ReLU, MaxPool2d(2), Conv2d(32,64,3,p=1), ReLU, MaxPool2d(2),
            Flatten, Linear(3136,128), ReLU, Linear(128,10)
  lstm/gru  Rows (28 steps of 28 pixels), 2-layer LSTM/GRU(28->128) batch_first, the top
            layer's last hidden state, Linear(128,10)

Fashion-MNIST is read straight from Debian's IDX .gz files with gzip + numpy (no
torchvision); pixels are uint8/255 as float32 with no other normalisation.

Modes:
  --mode speed  time N training steps (zero_grad, forward, cross_entropy, backward,
                step) after W warm-up steps; print one JSON line.
  --mode train  the full recipe (shuffle each epoch, last partial batch kept, LR schedule
                stepped every iteration), evaluate on t10k after each epoch; print
                per-epoch lines and a final JSON line.

Run it with Debian's interpreter (/usr/bin/python3), which has python3-torch.
"""

import argparse
import gzip
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

DEFAULT_DATA_DIR = os.environ.get("LK_FASHION_MNIST_DIR",
                                  "/usr/share/datasets/fashion-mnist")
MODELS = ("mlp", "mlp-wide", "cnn", "cnn-bn", "lstm", "gru", "gpt", "autoencoder", "vae", "gan")
GAN_G_LAYERS = 6  # the generator is net[:6], the discriminator net[6:]
GPT_DEFAULTS = {"layers": 4, "heads": 4, "dim": 256, "ctx": 128, "vocab": 256, "gelu": "none"}


# ---------------------------------------------------------------- models

class Rows(nn.Module):
    """[B, C, H, W] images as H steps of C*W values (lockstep's reshape layer)."""

    def forward(self, x):
        return x.reshape(x.shape[0], x.shape[-2], -1)


class LSTMLast(nn.LSTM):
    """nn.LSTM (batch_first) returning the last step's hidden state of the top layer;
    a subclass, so its parameters keep nn.LSTM's names (weight_ih_l0, ...)."""

    def forward(self, x):
        return super().forward(x)[0][:, -1]


class GRULast(nn.GRU):
    def forward(self, x):
        return super().forward(x)[0][:, -1]


class TokenEmbedding(nn.Module):
    """lockstep's embedding layer: token table `weight` + learned positions `pos`."""

    def __init__(self, vocab, dim, ctx):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(vocab, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(ctx, dim) * 0.02)

    def forward(self, x):
        return F.embedding(x.long(), self.weight) + self.pos


class CausalSelfAttention(nn.Module):
    """GPT-2's attention: c_attn (q, k, v), a causal softmax per head, c_proj."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.heads)
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        y = F.softmax(s, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class GPT(nn.Module):
    """lockstep's `gpt`, layer for layer, with its parameter names: modules are registered
    under their index in lockstep's layer list ("0" the embedding, "2" the first block's
    ln_1, "3" its attention ...; the residual markers and GELU hold no parameters)."""

    def __init__(self, vocab, layers, heads, dim, ctx, gelu="none"):
        """gelu: "none" is the exact GELU (lockstep's --gelu erf), "tanh" GPT-2's."""
        super().__init__()
        plan = [("emb", TokenEmbedding(vocab, dim, ctx))]
        for _ in range(layers):
            plan += [("begin", None), ("f", nn.LayerNorm(dim)), ("f", CausalSelfAttention(dim, heads)),
                     ("end", None), ("begin", None), ("f", nn.LayerNorm(dim)),
                     ("f", nn.Linear(dim, 4 * dim)), ("f", nn.GELU(approximate=gelu)), ("f", nn.Linear(4 * dim, dim)),
                     ("end", None)]
        plan += [("f", nn.LayerNorm(dim)), ("head", None)]
        self.plan = []
        for i, (kind, mod) in enumerate(plan):
            if mod is not None:
                self.add_module(str(i), mod)
            self.plan.append((kind, mod))

    def forward(self, x):
        emb = self.plan[0][1]
        skips = []
        for kind, mod in self.plan:
            if kind in ("emb", "f"):
                x = mod(x)
            elif kind == "begin":
                skips.append(x)
            elif kind == "end":
                x = x + skips.pop()
            else:  # the head tied to the token embedding
                x = F.linear(x, emb.weight)
        return x


class Reparam(nn.Module):
    """The VAE's sampling layer: (mu, logvar) -> mu + exp(logvar/2) * noise, keeping the
    batch mean of the KL divergence from N(0,1) in .kl; noise is set by the caller
    (lockstep's Philox draws in the reference check), else drawn here."""

    def __init__(self):
        super().__init__()
        self.noise = None
        self.kl = None

    def forward(self, x):
        mu, logvar = x.chunk(2, dim=1)
        self.kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / x.shape[0]
        eps = self.noise if self.noise is not None else torch.randn_like(mu)
        return mu + eps * torch.exp(0.5 * logvar) if self.training else mu


def loss_of(name, model, out, x, labels):
    """The model's training loss, as lockstep defines it for the model."""
    if name == "autoencoder":
        return F.mse_loss(out, x.flatten(1))
    if name == "vae":
        bce = F.binary_cross_entropy_with_logits(out, x.flatten(1), reduction="sum")
        return bce / x.shape[0] + model[4].kl
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), labels.reshape(-1).long())


def build_model(name, arch=None):
    if name == "gan":  # G z(64)-256-512-784 tanh, then D 784-512-256-1 LeakyReLU(0.2): one chain
        return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                             nn.Linear(512, 784), nn.Tanh(),
                             nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256), nn.LeakyReLU(0.2),
                             nn.Linear(256, 1))
    if name == "autoencoder":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(),
                             nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 784), nn.Sigmoid())
    if name == "vae":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 40), Reparam(),
                             nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))
    if name == "gpt":
        a = dict(GPT_DEFAULTS, **{k: v for k, v in (arch or {}).items() if v})
        return GPT(a["vocab"], a["layers"], a["heads"], a["dim"], a["ctx"], a["gelu"])
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 128), nn.ReLU(),
            nn.Linear(128, 10))
    if name == "mlp-wide":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 1024), nn.ReLU(),
            nn.Linear(1024, 1024), nn.ReLU(),
            nn.Linear(1024, 10))
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(3136, 128), nn.ReLU(),
            nn.Linear(128, 10))
    if name == "cnn-bn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(3136, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(),
            nn.Linear(128, 10))
    if name in ("lstm", "gru"):
        cell = LSTMLast if name == "lstm" else GRULast
        return nn.Sequential(Rows(), cell(28, 128, 2, batch_first=True), nn.Linear(128, 10))
    raise SystemExit(f"torch_ref.py: unknown model '{name}' (choose from {', '.join(MODELS)})")


class View(nn.Module):
    """lockstep's reshape: each sample viewed as `shape` (no parameters)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


def _arith(node, names):
    """Only a spec's arithmetic (no Python beyond it): numbers, names, + - * /, calls."""
    import ast
    if isinstance(node, ast.Expression):
        return _arith(node.body, names)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.Name):
        return names[node.id]  # (KeyError: not a known name)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_arith(node.operand, names)
    ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b}
    if isinstance(node, ast.BinOp) and type(node.op) in ops:
        return ops[type(node.op)](_arith(node.left, names), _arith(node.right, names))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1:
        return names[node.func.id](_arith(node.args[0], names))
    raise SystemExit(f"spec: cannot evaluate {ast.dump(node)}")


def _spec_value(text, spec, classes, sample, cur):
    """A spec's number: a JSON number, or an expression over its vars, classes, input,
    shape(i) and sqrt (docs/model-spec.md)."""
    import ast
    if not isinstance(text, str):
        return text
    names = {"classes": classes, "input": math.prod(sample), "sqrt": math.sqrt,
             "shape": lambda i: cur[int(i)]}
    pending = {k: v for k, v in spec.get("vars", {}).items() if k != "gelu"}
    for _ in range(len(pending) + 1):  # vars may use vars: evaluated once their names are known
        for k, v in list(pending.items()):
            try:
                names[k] = v if not isinstance(v, str) else _arith(ast.parse(v, mode="eval"), names)
                del pending[k]
            except (KeyError, SystemExit):
                pass
    return _arith(ast.parse(text, mode="eval"), names)


def build_from_spec(spec, sample, classes):
    """The nn.Sequential a spec of PyTorch's layers maps to (names "3.weight" as lockstep's),
    or None when it has layers nn.Sequential cannot express (residuals, attention, ...)."""
    if "layers" not in spec:
        return None
    mods, cur = [], list(sample)

    def num(layer, key, default=None):
        v = layer.get(key, default)
        if v is None:
            raise SystemExit(f"spec: layer {layer} has no '{key}'")
        return _spec_value(v, spec, classes, sample, cur)

    for layer in spec["layers"]:
        t = layer["type"]
        if t == "linear":
            m = nn.Linear(cur[-1], int(num(layer, "out")), bias=layer.get("bias", True))
        elif t == "conv2d":
            k = int(num(layer, "kernel"))
            m = nn.Conv2d(cur[0], int(num(layer, "out")), k, stride=int(num(layer, "stride", 1)),
                          padding=int(num(layer, "padding", 0)), bias=layer.get("bias", True))
        elif t in ("maxpool2d", "avgpool2d"):
            k = int(num(layer, "kernel"))
            cls = nn.MaxPool2d if t == "maxpool2d" else nn.AvgPool2d
            m = cls(k, stride=int(num(layer, "stride", k)), padding=int(num(layer, "padding", 0)))
        elif t == "flatten":
            m = nn.Flatten()
        elif t == "reshape":
            m = View([int(num({"v": v}, "v")) for v in layer["shape"]])
        elif t in ("relu", "sigmoid", "tanh"):
            m = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[t]()
        elif t == "gelu":
            a = layer.get("approximate", "none")
            if a.startswith("$"):
                a = spec.get("vars", {}).get(a[1:], "none")
            m = nn.GELU(approximate="tanh" if a == "tanh" else "none")
        elif t == "leaky_relu":
            m = nn.LeakyReLU(float(num(layer, "slope", 0.01)))
        elif t == "dropout":
            m = nn.Dropout(float(num(layer, "p", 0.5)))
        elif t == "batchnorm":
            cls = nn.BatchNorm2d if len(cur) == 3 else nn.BatchNorm1d
            m = cls(cur[0], eps=float(num(layer, "eps", 1e-5)), momentum=float(num(layer, "momentum", 0.1)))
        elif t == "layernorm":
            m = nn.LayerNorm(cur[-1], eps=float(num(layer, "eps", 1e-5)))
        elif t in ("lstm", "gru") and not layer.get("sequences", False):
            cls = LSTMLast if t == "lstm" else GRULast
            m = cls(cur[-1], int(num(layer, "hidden")), int(num(layer, "layers", 1)), batch_first=True)
        else:
            return None
        mods.append(m)
        with torch.no_grad():
            cur = list(nn.Sequential(*mods).eval()(torch.zeros(2, *sample)).shape[1:])
    return nn.Sequential(*mods)


# ---------------------------------------------------------------- data

def read_idx(path):
    """Read an IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise SystemExit(f"torch_ref.py: cannot read {path}: {e} "
                         "(install dataset-fashion-mnist or set --data-dir)")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise SystemExit(f"torch_ref.py: {path}: not an IDX file (bad magic)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise SystemExit(f"torch_ref.py: {path}: IDX type 0x{dtype_code:02x} unsupported "
                         "(expected 0x08, unsigned byte)")
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    count = math.prod(dims)
    if len(raw) != header + count:
        raise SystemExit(f"torch_ref.py: {path}: expected {header + count} bytes for "
                         f"shape {dims}, found {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_split(data_dir, split, limit=0):
    """Return (images float32 [N,1,28,28] in [0,1], labels int64 [N])."""
    images = read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"))
    if images.shape[0] != labels.shape[0]:
        raise SystemExit(f"torch_ref.py: {split}: {images.shape[0]} images but "
                         f"{labels.shape[0]} labels")
    if limit > 0:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255.0))
    x = x.reshape(-1, 1, images.shape[1], images.shape[2])
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


# ---------------------------------------------------------------- optimiser

def build_optimizer(params, args):
    return make_optimizer(args.optim, params, args.lr, args.weight_decay)


def make_optimizer(name, params, lr, wd, decay="all"):
    """lockstep's --optim NAME as torch.optim (PyTorch's defaults for the rest). decay
    "matrices" is lockstep's --decay matrices: two parameter groups, weight decay on the
    tensors of 2 or more dimensions only (nanoGPT's grouping)."""
    if decay == "matrices":
        params = list(params)
        params = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": wd},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    if name == "nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    raise SystemExit(f"torch_ref.py: unknown optimizer '{name}'")


def build_scheduler(opt, args, total_iters):
    if args.schedule == "constant":
        return None
    if args.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_iters)
    raise SystemExit(f"torch_ref.py: unknown schedule '{args.schedule}'")


# ---------------------------------------------------------------- modes

def evaluate(model, x, y, batch=1000):
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out = model(x[i:i + batch])
            yb = y[i:i + batch]
            loss_sum += F.cross_entropy(out, yb, reduction="sum").item()
            correct += (out.argmax(dim=1) == yb).sum().item()
    model.train()
    n = x.shape[0]
    return loss_sum / n, correct / n


def load_text_windows(path, ctx):
    """lockstep's text:FILE training split: the first 90% of the bytes, in windows of ctx
    tokens and their next-token labels."""
    raw = open(path, "rb").read()
    raw = raw[:len(raw) - len(raw) // 10]
    t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()
    n = (len(t) - 1) // ctx
    x = t[:n * ctx].view(n, ctx).float()
    y = t[1:n * ctx + 1].view(n, ctx)
    return x, y


def mode_speed(args):
    torch.manual_seed(args.seed)
    if args.model == "gpt":
        if not args.text:
            raise SystemExit("torch_ref.py: --model gpt needs --text FILE")
        x, y = load_text_windows(args.text, GPT_DEFAULTS["ctx"])
    else:
        x, y = load_split(args.data_dir, "train", args.limit)
    n = x.shape[0]
    if n < args.batch:
        raise SystemExit(f"torch_ref.py: {n} training samples < batch {args.batch}")
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch_ref.py: --device cuda but torch sees no GPU")
    x, y = x.to(dev), y.to(dev)
    model = build_model(args.model).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    step_fn = model
    if args.compile:
        step_fn = torch.compile(model)

    gen = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(n, generator=gen).to(dev)
    pos = 0
    times = []
    total = args.warmup + args.steps
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    t_start = None
    for step in range(total):
        if step == args.warmup:
            sync()
            t_start = time.perf_counter()
        if pos + args.batch > n:  # next epoch: reshuffle, full batches only
            perm = torch.randperm(n, generator=gen).to(dev)
            pos = 0
        idx = perm[pos:pos + args.batch]
        pos += args.batch
        xb, yb = x[idx], y[idx]  # outside the per-step timer (inside the GPU wall time)

        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_of(args.model, model, step_fn(xb), xb, yb)
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        if step >= args.warmup:
            times.append(t1 - t0)
    sync()
    wall = time.perf_counter() - t_start

    if not math.isfinite(loss.item()):
        raise SystemExit(f"torch_ref.py: loss is {loss.item()} after {total} steps")
    # on a GPU the steps run asynchronously: throughput is over the whole timed loop
    timed = wall if dev.type == "cuda" else sum(times)
    result = {
        "framework": "pytorch" + (" (torch.compile)" if args.compile else ""),
        "model": args.model,
        "device": str(dev),
        "batch": args.batch,
        "threads": args.threads,
        "steps": len(times),
        "warmup": args.warmup,
        "samples_per_s": round(args.batch * len(times) / timed, 2),
        "step_ms_median": round(statistics.median(times) * 1e3, 4),
        "final_loss": round(loss.item(), 6),
        "torch": torch.__version__,
    }
    print(json.dumps(result), flush=True)


def mode_train(args):
    torch.manual_seed(args.seed)
    x, y = load_split(args.data_dir, "train", args.limit)
    xt, yt = load_split(args.data_dir, "t10k", args.test_limit)
    n = x.shape[0]
    model = build_model(args.model)
    opt = build_optimizer(model.parameters(), args)
    iters_per_epoch = math.ceil(n / args.batch)  # DataLoader drop_last=False
    total_iters = iters_per_epoch * args.epochs
    sched = build_scheduler(opt, args, total_iters)
    gen = torch.Generator().manual_seed(args.seed)

    print(f"torch_ref: model {args.model}, {sum(p.numel() for p in model.parameters())} "
          f"params, {n} train / {xt.shape[0]} test samples, batch {args.batch}, "
          f"{iters_per_epoch} steps/epoch, optim {args.optim}, lr {args.lr}, "
          f"schedule {args.schedule}, threads {args.threads}", flush=True)
    t_start = time.perf_counter()
    test_loss = test_acc = float("nan")
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            loss_sum += loss.item() * xb.shape[0]
        train_time = time.perf_counter() - t0
        test_loss, test_acc = evaluate(model, xt, yt)
        lr_now = opt.param_groups[0]["lr"]
        print(f"epoch {epoch}/{args.epochs}  train_loss {loss_sum / n:.4f}  "
              f"test_loss {test_loss:.4f}  test_acc {test_acc:.4f}  lr {lr_now:.6g}  "
              f"{train_time:.1f}s ({n / train_time:.0f} samples/s)", flush=True)

    result = {
        "framework": "pytorch",
        "model": args.model,
        "epochs": args.epochs,
        "batch": args.batch,
        "optim": args.optim,
        "lr": args.lr,
        "schedule": args.schedule,
        "seed": args.seed,
        "train_samples": n,
        "test_acc": round(test_acc, 6),
        "test_loss": round(test_loss, 6),
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    print(json.dumps(result), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("speed", "train"), required=True)
    p.add_argument("--model", choices=MODELS, required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help="folder with the Fashion-MNIST IDX .gz files "
                        "(default $LK_FASHION_MNIST_DIR or %(default)s)")
    p.add_argument("--limit", type=int, default=0,
                   help="use only the first N training samples (0 = all)")
    # speed
    p.add_argument("--steps", type=int, default=200, help="speed: timed steps")
    p.add_argument("--warmup", type=int, default=20, help="speed: untimed steps first")
    p.add_argument("--device", default="cpu", help="speed: cpu or cuda")
    p.add_argument("--compile", action="store_true", help="speed: torch.compile the model")
    p.add_argument("--text", help="speed: the text file gpt trains on (lockstep's text:FILE)")
    # train
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--optim", default="momentum",
                   choices=("sgd", "momentum", "nesterov", "adam", "adamw"),
                   help="train: momentum/nesterov use 0.9 (speed mode is always momentum)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", default="cosine", choices=("constant", "cosine"),
                   help="train: cosine = CosineAnnealingLR over all iterations, "
                        "stepped every iteration")
    p.add_argument("--test-limit", type=int, default=0,
                   help="train: evaluate on only the first N test samples (0 = all)")
    args = p.parse_args(argv)

    for name in ("batch", "threads", "epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    if args.mode == "speed":
        mode_speed(args)
    else:
        mode_train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
