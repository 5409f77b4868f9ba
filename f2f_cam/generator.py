"""The persona's generator as a pipeline stage: sketch (uint8) -> face (uint8)."""

from __future__ import annotations

import numpy as np

from f2f_cam.persona import Persona
from f2f_cam.registry import PRECISIONS, check_device
from f2f_cam.system import native_bf16


def to_input(images: np.ndarray, dtype=None):
    """uint8 (H, W, 3) or (N, H, W, 3) -> torch float (N, 3, H, W) in [-1, 1]."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x[None]
    x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return x if dtype is None else x.to(dtype)


def to_image(x) -> np.ndarray:
    """torch (N, 3, H, W) or (3, H, W) in [-1, 1] -> uint8 (N, H, W, 3) or (H, W, 3)."""
    import torch

    x = x.detach().float().clamp(-1, 1).add(1.0).mul(127.5).round().to(torch.uint8)
    return x.permute(*range(x.ndim - 3), -2, -1, -3).cpu().numpy()


class Generator:
    """Runs a persona's TorchScript generator on one sketch at a time.

    ``Generator(persona)(sketch)`` with sketch RGB uint8 (S, S, 3) -> RGB uint8 (S, S, 3).
    precision "auto" runs under bf16 autocast where the hardware has native bf16
    (about 2x faster on this project's CPUs, within ~1/255 of fp32 on the output);
    "fp32" runs the exported weights as they are.
    """

    def __init__(self, persona: Persona, device: str = "cpu", precision: str = "auto"):
        import torch

        PRECISIONS.check(precision)
        if check_device(device) == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.persona = persona
        self.size = persona.image_size
        self.device = device
        self.dtype = getattr(torch, persona.dtype)
        self.autocast = (precision == "bf16" or (precision == "auto" and native_bf16(device))) \
            and self.dtype == torch.float32
        self.precision = "bf16" if self.autocast or self.dtype == torch.bfloat16 else persona.dtype
        self.module = persona.load_generator(device)

    def forward(self, x):
        """(N, 3, S, S) float in [-1, 1] -> (N, 3, S, S) float32 in [-1, 1]."""
        import torch

        # channels_last: oneDNN's convolutions run NHWC without reordering each layer.
        x = x.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16,
                                                    enabled=self.autocast):
            return self.module(x).float()

    def __call__(self, sketch: np.ndarray) -> np.ndarray:
        if sketch.shape != (self.size, self.size, 3):
            raise ValueError(f"sketch must be ({self.size}, {self.size}, 3), got {sketch.shape}")
        return to_image(self.forward(to_input(sketch)))[0]
