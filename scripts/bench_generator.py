"""The generator alone: the runtime configuration (compiled for this CPU, bf16 where
native) against the reference way of running pix2pix (the same TorchScript network
eager, fp32, NCHW), timed in turns so that both see the same machine load.

    python scripts/bench_generator.py [--persona ngf32,ngf64,ngf8x512]

The personas are freshly initialised generators exported through the real export path
(speed does not depend on training), made and compiled in a temporary folder. Each line
also gives the network's work per frame (GFLOP, a multiply-add counted as 2) and the
rates both ways reach, beside what this CPU's own GEMM reaches (a 2048^3 matrix product
in fp32 and in bf16, the first line): how far each way is from the machine's ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def gemm_gflops(dtype, n: int = 2048, reps: int = 10) -> float:
    """The best of 5 timings of an n^3 matrix product in ``dtype``, as GFLOPS."""
    import time

    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, (time.perf_counter() - t) / reps)
    return 2 * n ** 3 / best / 1e9


def network_gflop(size: int, ngf: int) -> float:
    """GFLOP of one frame through the U-Net of this size and width."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from trainers.networks import define_G

    net = define_G("unet", size=size, ngf=ngf, norm="batch").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persona", default="ngf32,ngf64,ngf8x512", help="comma-separated names of bench_daemon.py")
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="f2f-bench-gen-"))
    for var in ("DATA", "CONFIG", "CACHE", "RUNTIME", "LOG"):
        os.environ[f"F2F_CAM_{var}_DIR"] = str(work / var.lower())

    import torch

    import bench_daemon
    from f2f_cam import sketch
    from f2f_cam.system import native_bf16
    from f2f_cam.bench import _generator_pair_ms
    from f2f_cam.generator import Generator

    for threads in (2, 1):
        torch.set_num_threads(threads)
        # Without native bf16 (AVX2-only CPUs) a bf16 product is emulated, ~100x slower:
        # minutes for nothing the runtime uses there (it runs fp32).
        bf16 = round(gemm_gflops(torch.bfloat16)) if native_bf16() else None
        print(json.dumps({"threads": threads, "gemm_fp32_gflops": round(gemm_gflops(torch.float32)),
                          "gemm_bf16_gflops": bf16}), flush=True)
    clip = work / "clip.mp4"
    bench_daemon.make_clip(clip, 3.0)
    for name in args.persona.split(","):
        p = bench_daemon.make_persona(name, clip, work, "float32")
        gflop = network_gflop(*bench_daemon.PERSONAS[name])
        for threads in (2, 1):
            torch.set_num_threads(threads)
            fast, eager = Generator(p, compile="now"), Generator(p, compile="off")
            s = sketch.render(p.neutral, p.image_size)
            fast_ms, ref_ms = _generator_pair_ms(fast, s, args.runs)
            eager_ms, ref2_ms = _generator_pair_ms(eager, s, args.runs)
            print(json.dumps({"persona": name, "threads": threads, "engine": f"{fast.precision} {fast.engine}",
                              "generator_ms": round(fast_ms, 2), "reference_ms": round(ref_ms, 2),
                              "speedup": round(ref_ms / fast_ms, 2), "eager_ms": round(eager_ms, 2),
                              "eager_speedup": round(ref2_ms / eager_ms, 2), "gflop": round(gflop, 2),
                              "generator_gflops": round(gflop / fast_ms * 1e3),
                              "reference_gflops": round(gflop / ref_ms * 1e3)}), flush=True)


if __name__ == "__main__":
    main()
