"""Evaluation during training: validation metrics and the per-epoch sample grid.

Both run the generator in eval mode, as it is exported (dropout off, BatchNorm's
running statistics), on the held-out pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from f2f_cam.atomic import write_bytes
from trainers.data import PairedDataset
from trainers.metrics import image_metrics
from trainers.step import autocast


@torch.no_grad()
def generate(G: nn.Module, a: torch.Tensor, device: torch.device, amp_dtype, fmt) -> torch.Tensor:
    """G in eval mode on a batch of sketches: (N, 3, S, S) in [-1, 1] -> float32 on the CPU."""
    was_training = G.training
    G.eval()
    try:
        with autocast(device, amp_dtype):
            out = G(a.to(device).contiguous(memory_format=fmt))
        return out.float().cpu()
    finally:
        G.train(was_training)


def _batch(val_set: PairedDataset, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Items start..stop-1 stacked: (sketches, photos), each (N, 3, S, S)."""
    items = [val_set[j] for j in range(start, min(stop, len(val_set)))]
    return torch.stack([x[0] for x in items]), torch.stack([x[1] for x in items])


def validate(G: nn.Module, val_set: PairedDataset, device, amp_dtype, fmt, batch: int = 8) -> dict:
    """Mean L1, PSNR, SSIM of G (eval mode) over the held-out pairs."""
    sums = {"l1": 0.0, "psnr": 0.0, "ssim": 0.0}
    for i in range(0, len(val_set), batch):
        a, b = _batch(val_set, i, i + batch)
        m = image_metrics(generate(G, a, device, amp_dtype, fmt), b)
        for k in sums:
            sums[k] += m[k].sum().item()
    n = len(val_set)
    return {f"val_{k}": round(v / n, 5) for k, v in sums.items()}


def save_grid(G: nn.Module, val_set: PairedDataset, device, amp_dtype, fmt, n: int, path: Path) -> None:
    """PNG at ``path`` and as latest.png beside it: one row per fixed validation pair,
    sketch | generated | real."""
    import cv2

    from f2f_cam.generator import to_image

    a, b = _batch(val_set, 0, n)
    fake = generate(G, a, device, amp_dtype, fmt)
    grid = np.concatenate([np.concatenate([to_image(a[i]), to_image(fake[i]), to_image(b[i])], 1)
                           for i in range(len(a))], 0)
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding of the sample grid failed")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, png.tobytes())
    write_bytes(path.with_name("latest.png"), png.tobytes())
