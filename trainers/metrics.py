"""Validation metrics on images in [-1, 1]: L1, PSNR and SSIM (as on [0, 1] images)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian_window(size: int = 11, sigma: float = 1.5, channels: int = 3) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    w = (g[:, None] @ g[None, :])[None, None]  # (1, 1, size, size)
    return w.expand(channels, 1, size, size).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image (Wang et al. 2004: 11x11 Gaussian, sigma 1.5, K1 .01, K2 .03).

    a, b: (N, C, H, W) in [0, 1]. Returns (N,).
    """
    c = a.shape[1]
    w = _gaussian_window(channels=c).to(a.device, a.dtype)
    mu_a = F.conv2d(a, w, groups=c)
    mu_b = F.conv2d(b, w, groups=c)
    var_a = F.conv2d(a * a, w, groups=c) - mu_a ** 2
    var_b = F.conv2d(b * b, w, groups=c) - mu_b ** 2
    cov = F.conv2d(a * b, w, groups=c) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def image_metrics(fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image L1, PSNR (dB) and SSIM; fake, real: (N, 3, H, W) in [-1, 1]."""
    a = (fake.float().clamp(-1, 1) + 1) / 2
    b = (real.float() + 1) / 2
    l1 = (a - b).abs().flatten(1).mean(1)
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return {"l1": l1, "psnr": 10 * torch.log10(1.0 / mse), "ssim": ssim(a, b)}
