"""The paired dataset: (A sketch, B photo) with the same random transform on both.

As in pix2pix's aligned dataset, both halves get the same jitter; here the sketch is
re-drawn from the transformed landmarks instead of resampled, so its lines stay crisp.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from f2f_cam import sketch
from f2f_cam.generator import to_input
from f2f_cam.sources import read_image


class PairedDataset(torch.utils.data.Dataset):
    """One split of a dataset folder, held in memory (uint8).

    Item: (A, B), each float (3, S, S) in [-1, 1]. With ``augment``, a small random
    similarity (rotation, scale, shift) is drawn from (seed, epoch, index) alone, so
    the data order and content do not depend on workers or on resuming. ``jitter``
    (px at 256 px, scaled with the image) moves each landmark of the sketch only by
    Gaussian noise of that size: the generator learns to draw the photo from the kind
    of slightly noisy landmarks it gets live.
    """

    def __init__(self, meta: dict, split: str, augment: bool = False, seed: int = 0,
                 rotate: float = 4.0, scale: float = 0.05, shift: float = 0.03, jitter: float = 0.0):
        folder = Path(meta["folder"])
        self.size = int(meta["image_size"])
        pairs = [p for p in meta["pairs"] if p["split"] == split]
        self.files = [p["file"] for p in pairs]
        self.points = np.array([p["landmarks"] for p in pairs], np.float32)  # (N, 478, 2)
        self.photos = np.stack([read_image(folder / "B" / f) for f in self.files])  # (N, S, S, 3) uint8
        self.augment, self.seed = augment, seed
        self.rotate, self.scale, self.shift = rotate, scale, shift
        self.jitter = jitter * self.size / 256
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def pair(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """(A, B) uint8 (S, S, 3) for item ``idx``, transformed when augmenting."""
        pts, photo = self.points[idx], self.photos[idx]
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, idx])
            s = self.size
            m = cv2.getRotationMatrix2D((s / 2, s / 2), rng.uniform(-self.rotate, self.rotate),
                                        1 + rng.uniform(-self.scale, self.scale))
            m[:, 2] += rng.uniform(-self.shift, self.shift, 2) * s
            photo = cv2.warpAffine(photo, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            pts = pts @ m[:, :2].T + m[:, 2]
            if self.jitter > 0:
                pts = pts + rng.normal(0, self.jitter, pts.shape).astype(np.float32)
        return sketch.render(pts, self.size), photo

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.pair(idx)
        return to_input(a)[0], to_input(b)[0]
