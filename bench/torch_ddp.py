#!/usr/bin/python3
"""PyTorch DistributedDataParallel (gloo, CPU) twin of lockstep's data-parallel training,
for the weak-scaling comparison in bench/scaling.sh.

    torch_ddp.py --model cnn --world 2 --batch 64 --threads 1 --steps 100 --warmup 20

Starts `world` processes on this host (torch.multiprocessing), each with `threads` threads
and `batch` samples per step (batch is per rank, as in lockstep), the same model
(bench/torch_ref.py), data and SGD momentum recipe. Each rank takes its slice of a shared
shuffled permutation. Prints one JSON line: samples/s over all ranks after warm-up.
"""
import argparse
import json
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref  # noqa: E402


def worker(rank, args, port, out):
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=args.world)
    torch.manual_seed(0)
    x, y = torch_ref.load_split(torch_ref.DEFAULT_DATA_DIR, "train")
    model = torch.nn.parallel.DistributedDataParallel(torch_ref.build_model(args.model))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    perm, pos, g = torch.randperm(x.shape[0], generator=gen), 0, args.batch * args.world
    times = []
    for step in range(args.warmup + args.steps):
        if pos + g > x.shape[0]:
            perm, pos = torch.randperm(x.shape[0], generator=gen), 0
        idx = perm[pos + rank * args.batch:pos + (rank + 1) * args.batch]
        pos += g
        t0 = time.perf_counter()
        xb, yb = x[idx], y[idx]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    t = torch.tensor([sum(times)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
    if rank == 0:
        out.put({"framework": "pytorch-ddp", "model": args.model, "world": args.world,
                 "batch": args.batch, "threads": args.threads, "steps": args.steps,
                 "samples_per_s": round(g * len(times) / t.item(), 2),
                 "step_ms_median": round(statistics.median(times) * 1e3, 4)})
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="cnn", choices=torch_ref.MODELS)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.05)
    args = p.parse_args()
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    mp.spawn(worker, args=(args, port, out), nprocs=args.world, join=True)
    print(json.dumps(out.get()), flush=True)


if __name__ == "__main__":
    main()
