#!/usr/bin/python3
"""Reference check against PyTorch, family by family.

For each model, lk_refdump (tests/reference/refdump.c) writes what lockstep computed:
the initial weights, one batch, the training-mode output, the loss and every gradient,
then K optimizer steps on the following batches with the loss before and the weights
after each. Here the PyTorch twin (bench/torch_ref.py) loads those initial weights with
load_state_dict(strict=True), recomputes all of it from the same batches with
torch.optim, and compares:

  output, loss        |ours - torch| <= 1e-4 * max(1, max|torch|)      (per tensor)
  gradients           |ours - torch| <= 1e-4 * max|torch grad| + 1e-7  (per tensor)
  losses of steps     relative 1e-4
  weights after steps |ours - torch| <= 1e-4 * max(1, max|torch w|)    (per tensor)
                      + 0.05 lr for Adam, RMSprop and AdaGrad (2 lr per step
                      where the gradient is float32 noise: see `normalised` below)

The differences come from float32 summation order only, so they are far below these
bounds when the model is the same; a wrong gate order, a missing bias or a different
optimizer constant is far above them.

  check.py --refdump build/tests/lk_refdump [--model M ...] [--keep DIR]
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "bench"))
import torch_ref  # noqa: E402

# model -> the runs to check: (optimizer, lr, weight decay, batch, steps[, options]), the
# options being lk_refdump's --gelu, --decay and --precision. A bf16 run (mixed
# precision) is checked against the twin under torch.autocast("cpu", dtype=torch.bfloat16):
# the losses within BF16_LOSS of PyTorch's at the start and after every step. The two
# round differently (autocast rounds the products' outputs to bf16 as well, lockstep keeps
# them in float32), so only the losses are compared: a bf16 product differs from float32
# by some 2^-9 of its scale either way.
RUNS = {
    "mlp": [("sgd", 0.1, 0.0, 16, 3), ("adamw", 1e-3, 0.01, 16, 3),
            ("adamw", 1e-3, 0.01, 16, 5, {"precision": "bf16"})],
    "mlp-wide": [("momentum", 0.05, 0.0, 8, 2)],
    "cnn": [("momentum", 0.05, 0.0, 8, 2), ("momentum", 0.05, 0.0, 16, 5, {"precision": "bf16"})],
    "cnn-bn": [("momentum", 0.05, 0.0, 8, 3)],
    "lstm": [("adam", 1e-3, 0.0, 16, 3), ("rmsprop", 1e-3, 0.0, 8, 2)],
    "gru": [("adam", 1e-3, 0.0, 16, 3), ("adagrad", 1e-2, 1e-4, 8, 2)],
    "gpt": [("adamw", 1e-3, 0.01, 4, 3), ("nesterov", 0.05, 0.0, 3, 2),
            ("adamw", 1e-3, 0.1, 4, 3, {"gelu": "tanh", "decay": "matrices"}),  # GPT-2's recipe
            ("adamw", 1e-3, 0.01, 4, 5, {"precision": "bf16"})],
    "autoencoder": [("adam", 1e-3, 0.0, 8, 3)],
    "vae": [("adam", 1e-3, 0.0, 8, 3), ("sgd", 1e-4, 0.0, 8, 2)],
    "gan": [("adam", 2e-4, 0.0, 8, 3), ("sgd", 0.05, 0.0, 8, 2)],
}
# data and sizes other than Fashion-MNIST and the defaults
TEXT = "/usr/share/common-licenses/GPL-3"  # English text on every Debian system
EXTRA = {
    "gpt": ["--data", "text:" + TEXT, "--layers", "2", "--heads", "2", "--dim", "32", "--ctx", "16"],
}
BF16_LOSS = 2e-3  # relative (measured: at most 4e-4)
ARCH = {"gpt": {"layers": 2, "heads": 2, "dim": 32, "ctx": 16, "vocab": 256}}


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", (name, e["dtype"])
        b, end = e["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[b:end]), dtype=torch.float32).reshape(e["shape"])
    return out, meta


class Report:
    def __init__(self):
        self.failures = []

    def close(self, what, ours, theirs, rel, floor=1.0, extra=0.0):
        """Largest |ours - theirs| / tolerance over the tensor; tolerance = rel * scale +
        extra, with scale = max(floor, max|theirs|); extra may be per element."""
        if not theirs.numel():
            return 0.0
        scale = max(floor, theirs.abs().max().item())
        tol = rel * scale + (extra if torch.is_tensor(extra) else torch.full_like(theirs, extra))
        ratio = ((ours - theirs).abs() / tol.clamp_min(1e-30)).max().item()
        if not ratio <= 1.0:
            err = (ours - theirs).abs().max().item()
            self.failures.append(f"{what}: max |diff| {err:.3g}, {ratio:.3g} x its tolerance")
        return ratio


def check_gan(t, optim, lr, wd, batch, steps, rep):
    """The GAN's alternating steps: D on reals (1) and on G(z_d) (0), then G through D (1),
    each network with its own optimizer (both step once an iteration, as lockstep's one
    optimizer over both parts)."""
    net = torch_ref.build_model("gan")
    net.load_state_dict({k[len("init."):]: v for k, v in t.items() if k.startswith("init.")}, strict=True)
    G, D = net[:torch_ref.GAN_G_LAYERS], net[torch_ref.GAN_G_LAYERS:]
    opt_d = torch_ref.make_optimizer(optim, D.parameters(), lr, wd)
    opt_g = torch_ref.make_optimizer(optim, G.parameters(), lr, wd)
    bce = F.binary_cross_entropy_with_logits
    worst, first = 0.0, None
    for s in range(1, steps + 1):
        real = t[f"step{s}.input"].flatten(1) * 2 - 1
        ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)
        opt_d.zero_grad()
        loss_d = bce(D(real), ones) + bce(D(G(t[f"step{s}.z_d"]).detach()), zeros)
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = bce(D(G(t[f"step{s}.z_g"])), ones)
        loss_g.backward()
        opt_g.step()
        first = first if first is not None else loss_d.item()
        worst = max(worst, rep.close(f"gan: step {s} D loss", t[f"step{s}.loss_d"] / batch,
                                     loss_d.detach().reshape(1), 1e-4))
        worst = max(worst, rep.close(f"gan: step {s} G loss", t[f"step{s}.loss_g"] / batch,
                                     loss_g.detach().reshape(1), 1e-4))
        for name, p in net.named_parameters():
            extra = 0.05 * lr if optim in ("adam", "adamw", "rmsprop", "adagrad") else 0.0
            worst = max(worst, rep.close(f"gan: step {s} {name}", t[f"step{s}.{name}"], p.detach(),
                                         1e-4, extra=extra))
    print(f"  gan       {optim:8s} lr {lr:<7g} batch {batch:3d} steps {steps}: "
          f"{len(list(net.parameters()))} tensors, D loss {t['step1.loss_d'].item() / batch:.6f} "
          f"(torch {first:.6f}), worst diff/tolerance {worst:.3g}", flush=True)


def check_run(refdump, model, optim, lr, wd, batch, steps, tmp, rep, opts=None):
    opts = opts or {}
    tag = "".join(f"-{v}" for v in opts.values())
    path = os.path.join(tmp, f"{model}-{optim}{tag}.safetensors")
    cmd = [refdump, model, path, "--optim", optim, "--lr", repr(lr), "--batch", str(batch),
           "--steps", str(steps), "--weight-decay", repr(wd)] + EXTRA.get(model, [])
    for k, v in opts.items():
        cmd += ["--" + k, v]
    subprocess.run(cmd, check=True)
    t, meta = read_safetensors(path)
    assert meta["model"] == model and int(meta["steps"]) == steps, meta
    if model == "gan":
        return check_gan(t, optim, lr, wd, batch, steps, rep)

    if opts.get("precision") == "bf16":
        return check_bf16(t, model, optim, lr, wd, batch, steps, tag, rep, opts)
    arch = dict(ARCH.get(model, {}))
    if opts.get("gelu") == "tanh":
        arch["gelu"] = "tanh"
    net = torch_ref.build_model(model, arch or None)
    init = {k[len("init."):]: v for k, v in t.items() if k.startswith("init.")}
    net.load_state_dict(init, strict=True)  # every name and shape must be PyTorch's
    net.train()
    params = dict(net.named_parameters())

    worst = 0.0
    for k, v in t.items():  # lockstep's draws for its sampling layers
        if k.startswith("noise."):
            net[int(k.split(".")[1])].noise = v
    x, y = t["input"], t["labels"]
    out = net(x)
    loss = torch_ref.loss_of(model, net, out, x, y)
    loss.backward()
    first_loss = loss.item()
    worst = max(worst, rep.close(f"{model}: output", t["out"], out.detach(), 1e-4))
    worst = max(worst, rep.close(f"{model}: loss", t["loss"], loss.detach().reshape(1), 1e-4))
    for name, p in params.items():
        worst = max(worst, rep.close(f"{model}: grad {name}", t["grad." + name], p.grad, 1e-4,
                                     floor=0.0, extra=1e-7))

    opt = torch_ref.make_optimizer(optim, net.parameters(), lr, wd, opts.get("decay", "all"))
    # Adam, RMSprop and AdaGrad divide by the gradient's own size, so an element whose
    # gradient is float32 noise (1e-10 where the true value is 0: the key bias of
    # attention, say) moves by up to lr in a direction the noise picks. Such elements
    # (|grad| below 1e-6 of the tensor's largest at some step) may differ by 2 lr a
    # step; every other element by 5% of lr (eps-level differences).
    normalised = optim in ("adam", "adamw", "rmsprop", "adagrad")
    noisy = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in params.items()}
    for s in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        xs = t[f"step{s}.input"]
        loss = torch_ref.loss_of(model, net, net(xs), xs, t[f"step{s}.labels"])
        loss.backward()
        for name, p in params.items():
            noisy[name] |= p.grad.abs() < 1e-6 * p.grad.abs().max()
        opt.step()
        worst = max(worst, rep.close(f"{model}: step {s} loss", t[f"step{s}.loss"],
                                     loss.detach().reshape(1), 1e-4))
        for name, b in net.named_buffers():  # batch norm's running statistics
            worst = max(worst, rep.close(f"{model}: step {s} {name}", t[f"step{s}.{name}"],
                                         b.float().reshape(t[f"step{s}.{name}"].shape), 1e-4))
        for name, p in params.items():
            extra = (noisy[name] * (2.0 * lr * s) + 0.05 * lr) if normalised else 0.0
            worst = max(worst, rep.close(f"{model}: step {s} {name}", t[f"step{s}.{name}"],
                                         p.detach(), 1e-4, extra=extra))
    print(f"  {model + tag:9s} {optim:8s} lr {lr:<7g} batch {batch:3d} steps {steps}: "
          f"{len(params)} tensors, loss {t['loss'].item():.6f} (torch {first_loss:.6f}), "
          f"worst diff/tolerance {worst:.3g}", flush=True)


def check_bf16(t, model, optim, lr, wd, batch, steps, tag, rep, opts):
    """lockstep's bf16 run against the twin under autocast: the losses only (see RUNS)."""
    net = torch_ref.build_model(model, dict(ARCH.get(model, {})) or None)
    net.load_state_dict({k[len("init."):]: v for k, v in t.items() if k.startswith("init.")}, strict=True)
    net.train()
    opt = torch_ref.make_optimizer(optim, net.parameters(), lr, wd, opts.get("decay", "all"))

    def loss_at(xs, ys):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(xs)
            return torch_ref.loss_of(model, net, out.float(), xs, ys)

    worst = 0.0
    first = loss_at(t["input"], t["labels"]).detach().float().reshape(1)
    worst = max(worst, rep.close(f"{model} bf16: loss", t["loss"], first, BF16_LOSS))
    for s in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        xs = t[f"step{s}.input"]
        loss = loss_at(xs, t[f"step{s}.labels"])
        loss.backward()
        opt.step()
        worst = max(worst, rep.close(f"{model} bf16: step {s} loss", t[f"step{s}.loss"],
                                     loss.detach().float().reshape(1), BF16_LOSS))
    print(f"  {model + tag:9s} {optim:8s} lr {lr:<7g} batch {batch:3d} steps {steps}: bf16 against "
          f"autocast, loss {t['loss'].item():.6f} (torch {first.item():.6f}), last step "
          f"{t[f'step{steps}.loss'].item():.6f} (torch {loss.item():.6f}), worst diff/tolerance "
          f"{worst:.3g}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--refdump", required=True, help="the lk_refdump binary")
    p.add_argument("--model", action="append", choices=sorted(RUNS), help="default: all")
    p.add_argument("--keep", help="write the dumps here instead of a temporary folder")
    a = p.parse_args()
    torch.set_num_threads(1)
    rep = Report()
    with tempfile.TemporaryDirectory() as tmp:
        where = a.keep or tmp
        os.makedirs(where, exist_ok=True)
        for model in a.model or list(RUNS):
            for run in RUNS[model]:
                check_run(a.refdump, model, *run[:5], where, rep, *run[5:])
    if rep.failures:
        print("FAIL:")
        for f in rep.failures[:40]:
            print("  " + f)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
