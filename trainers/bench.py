"""Training speed: images/s of a pix2pix step, ours against the reference way.

The reference implementation (pytorch-CycleGAN-and-pix2pix) runs an eager fp32 step
on NCHW tensors. Ours is the same networks and the same step, with channels_last
memory and bf16 autocast where the CPU (AVX512-BF16/AMX) or GPU has it.
"""

from __future__ import annotations

import time

import torch

from trainers.networks import define_D, define_G
from trainers.train import cpu_has_bf16, gan_loss, train_step

MODES = {
    # name: (channels_last, autocast dtype)
    "reference fp32 NCHW": (False, None),
    "fp32 channels_last": (True, None),
    "bf16 channels_last": (True, torch.bfloat16),
}


def time_steps(ngf: int, size: int, batch_size: int, channels_last: bool, amp_dtype, steps: int,
               device: str = "cpu") -> float:
    """Seconds per training step (mean of ``steps`` after one warm-up step)."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    G = define_G("unet", size=size, ngf=ngf).to(device, memory_format=fmt)
    D = define_D("patch", ndf=64).to(device, memory_format=fmt)
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    scaler = torch.amp.GradScaler(device, enabled=False)
    a = (torch.rand(batch_size, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=fmt)
    b = (torch.rand(batch_size, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=fmt)
    autocast = lambda: torch.autocast(device, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)  # noqa: E731
    crit = gan_loss("vanilla")
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        train_step(G, D, opt_G, opt_D, scaler, crit, a, b, autocast, 100.0)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sum(times[1:]) / steps


def bench_training(size: int = 256, batch_size: int = 4, ngfs=(64, 32), steps: int = 3,
                   progress: bool = True) -> list[dict]:
    """One row per (ngf, mode): seconds/step, images/s, speed-up over the reference."""
    from tqdm import tqdm

    modes = {k: v for k, v in MODES.items() if v[1] is None or cpu_has_bf16()}
    rows = []
    todo = [(ngf, m) for ngf in ngfs for m in modes]
    for ngf, mode in tqdm(todo, desc="bench", disable=not progress):
        cl, dtype = modes[mode]
        sec = time_steps(ngf, size, batch_size, cl, dtype, steps)
        rows.append({"ngf": ngf, "mode": mode, "size": size, "batch_size": batch_size,
                     "s_per_step": round(sec, 3), "images_per_s": round(batch_size / sec, 2)})
    for r in rows:
        ref = next(x for x in rows if x["ngf"] == r["ngf"] and x["mode"] == "reference fp32 NCHW")
        r["speedup"] = round(r["images_per_s"] / ref["images_per_s"], 2)
    return rows


def format_table(rows: list[dict]) -> str:
    out = [f"{'ngf':>4}  {'mode':<22} {'s/step':>7} {'images/s':>9} {'vs reference':>13}"]
    for r in rows:
        out.append(f"{r['ngf']:>4}  {r['mode']:<22} {r['s_per_step']:>7.3f} {r['images_per_s']:>9.2f} "
                   f"{r['speedup']:>12.2f}x")
    out.append(f"({rows[0]['size']} px, batch {rows[0]['batch_size']}, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads)")
    return "\n".join(out)
