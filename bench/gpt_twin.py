#!/usr/bin/python3
"""gpt against its PyTorch twin over a real run: lk_refdump trains lockstep's gpt for N
steps on consecutive windows of an English text (AdamW), writing the initial weights,
every batch and every step's loss; the twin loads those weights and trains on the same
batches with torch.optim.AdamW. Prints both loss curves side by side (every 20 steps)
and the relative difference of the mean loss over the last 10 steps (the issue's bar:
within 2% after 200 steps).

  bench/gpt_twin.py --refdump build/tests/lk_refdump --text runs/fortunes.txt
      [--steps 200] [--layers 4 --heads 4 --dim 256 --ctx 128 --batch 16] [--lr 3e-4]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "tests", "reference"))
import torch_ref  # noqa: E402
from check import read_safetensors  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--refdump", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--ctx", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gpt.safetensors")
        t0 = time.perf_counter()
        subprocess.run([a.refdump, "gpt", path, "--data", "text:" + a.text, "--optim", "adamw",
                        "--lr", repr(a.lr), "--batch", str(a.batch), "--steps", str(a.steps),
                        "--weight-decay", "0.01", "--layers", str(a.layers), "--heads", str(a.heads),
                        "--dim", str(a.dim), "--ctx", str(a.ctx), "--weights-every", str(a.steps)],
                       check=True, env=dict(os.environ, OMP_NUM_THREADS=str(a.threads)))
        t_ours = time.perf_counter() - t0
        t, _ = read_safetensors(path)
    arch = {"layers": a.layers, "heads": a.heads, "dim": a.dim, "ctx": a.ctx, "vocab": 256}
    net = torch_ref.build_model("gpt", arch)
    net.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("init.")}, strict=True)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=0.01)
    ours, theirs = [], []
    t0 = time.perf_counter()
    for s in range(1, a.steps + 1):
        opt.zero_grad(set_to_none=True)
        x = t[f"step{s}.input"]
        loss = torch_ref.loss_of("gpt", net, net(x), x, t[f"step{s}.labels"])
        loss.backward()
        opt.step()
        ours.append(t[f"step{s}.loss"].item())
        theirs.append(loss.item())
    t_torch = time.perf_counter() - t0
    print(f"{'step':>5} {'lockstep':>9} {'pytorch':>9}")
    for s in range(0, a.steps, 20):
        print(f"{s + 1:5d} {ours[s]:9.4f} {theirs[s]:9.4f}")
    tail_ours = sum(ours[-10:]) / 10
    tail_theirs = sum(theirs[-10:]) / 10
    rel = abs(tail_ours - tail_theirs) / tail_theirs
    w_diff = max((t[f"step{a.steps}.{k}"] - v.detach()).abs().max().item() for k, v in net.named_parameters())
    print(json.dumps({"steps": a.steps, "loss_lockstep": round(tail_ours, 5), "loss_pytorch": round(tail_theirs, 5),
                      "relative_difference": round(rel, 6), "max_weight_difference": w_diff,
                      "seconds_lockstep_incl_dump": round(t_ours, 1), "seconds_pytorch": round(t_torch, 1)}))
    return 0 if rel <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
