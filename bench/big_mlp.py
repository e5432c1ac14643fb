#!/usr/bin/python3
"""Exports a 36 MB MLP (256 -> 2048 -> 2048 -> 2048 -> 8, tanh; PyTorch Linear, so Gemm with transB) to ONNX, for
measuring what a model version holds (bench/version_memory.sh, JacService.Bench --version-memory). The fixtures'
weights are a few KB, too small to see.
With INPUTS (256 by default) the first layer takes that many: 3 makes a wide PINN, whose second derivatives the
server compiles and warms up. WIDTH (2048) and HIDDEN (2, the square layers) make it larger: 64 4096 3 is a 200 MB
model (bench/warmup_ab.sh).
Usage: /usr/bin/python3 bench/big_mlp.py OUT.onnx [INPUTS] [WIDTH] [HIDDEN] (Debian's python3 with torch)."""
import sys

import torch

torch.manual_seed(0)
inputs = int(sys.argv[2]) if len(sys.argv) > 2 else 256
width = int(sys.argv[3]) if len(sys.argv) > 3 else 2048
hidden = int(sys.argv[4]) if len(sys.argv) > 4 else 2
layers = [torch.nn.Linear(inputs, width), torch.nn.Tanh()]
for _ in range(hidden):
    layers += [torch.nn.Linear(width, width), torch.nn.Tanh()]
model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 8))
torch.onnx.export(model, torch.randn(4, inputs), sys.argv[1], input_names=["x"], output_names=["y"],
                  dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=13)
