"""Float32 matrix products in Debian's PyTorch (OpenBLAS), one thread: the GEMM the functorch peer runs on.

Usage: python3 bench/peer_gemm.py M,K,N [M,K,N ...]
Prints one JSON line per shape: {"peer": "openblas", "shape": "MxKxN", "gflops": ...} (best of 50 products).
"""
import json
import sys
import time

import torch

torch.set_num_threads(1)
for arg in sys.argv[1:]:
    m, k, n = (int(x) for x in arg.split(","))
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a.mm(b)
    best = float("inf")
    for _ in range(50):
        start = time.perf_counter()
        a.mm(b)
        best = min(best, time.perf_counter() - start)
    print(json.dumps({"peer": "openblas", "shape": f"{m}x{k}x{n}", "gflops": round(2 * m * k * n / best / 1e9, 1)}), flush=True)
