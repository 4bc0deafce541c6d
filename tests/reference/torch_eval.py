#!/usr/bin/python3
"""Loads a lockstep checkpoint into the PyTorch twin of its model (bench/torch_ref.py)
with load_state_dict(strict=True), so every name and shape must match PyTorch's,
evaluates it on the Fashion-MNIST test set and prints {"test_loss", "test_acc"}. The
twin is the nn.Sequential the checkpoint's spec (model.json) maps to where it maps to one,
else the built-in model's of that name."""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import torch_ref  # noqa: E402


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", (name, e["dtype"])
        b, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:end]), dtype=torch.float32)
        out[name] = t.reshape(e["shape"])
    return out


def main():
    ckpt = sys.argv[1]
    config = json.load(open(os.path.join(ckpt, "config.json")))
    model = None
    spec_path = os.path.join(ckpt, "model.json")
    if os.path.exists(spec_path):
        model = torch_ref.build_from_spec(json.load(open(spec_path)), config["input_shape"], config["classes"])
    if model is None:
        model = torch_ref.build_model(config["model"])
    model.load_state_dict(read_safetensors(os.path.join(ckpt, "model.safetensors")), strict=True)
    x, y = torch_ref.load_split(torch_ref.DEFAULT_DATA_DIR, "t10k")
    loss, acc = torch_ref.evaluate(model, x, y)
    print(json.dumps({"test_loss": loss, "test_acc": acc}))


if __name__ == "__main__":
    main()
