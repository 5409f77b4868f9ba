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
    of slightly noisy landmarks it gets live. With ``parts``, an item is (A, B, M): M
    (1, S, S) is 1 on the eyes and the mouth (``parts_mask``), for ``--lambda-parts``.
    With ``face``, the face's square (``face_box``, (3,)) follows, for ``--lambda-face``;
    with ``part_squares``, the eyes' and the mouth's (``part_boxes``, (3, 3)), for
    ``--lambda-parts-gan``. With ``recon`` ((N, 478, 2) for every pair of ``meta``, in
    its order: ``trainers.export.reconstruct_frames``), an item's sketch is drawn from
    the expression model's redrawing of its landmarks instead of the real ones with
    probability ``recon_share`` (drawn from (seed, epoch, index) too): the kind of
    sketch the runtime draws in ``expression`` mode, against the real photo.
    """

    def __init__(self, meta: dict, split: str, augment: bool = False, seed: int = 0,
                 rotate: float = 4.0, scale: float = 0.05, shift: float = 0.03, jitter: float = 0.0,
                 parts: bool = False, face: bool = False, part_squares: bool = False,
                 recon: np.ndarray | None = None, recon_share: float = 0.0):
        folder = Path(meta["folder"])
        self.size = int(meta["image_size"])
        pairs = [p for p in meta["pairs"] if p["split"] == split]
        self.files = [p["file"] for p in pairs]
        self.points = np.array([p["landmarks"] for p in pairs], np.float32)  # (N, 478, 2)
        if recon is not None and len(recon) != len(meta["pairs"]):
            raise ValueError(f"recon has {len(recon)} shapes for {len(meta['pairs'])} pairs")
        self.recon = None if recon is None or recon_share <= 0 else np.asarray(recon, np.float32)[
            [i for i, p in enumerate(meta["pairs"]) if p["split"] == split]]
        self.recon_share = recon_share
        self.photos = np.stack([read_image(folder / "B" / f) for f in self.files])  # (N, S, S, 3) uint8
        self.augment, self.seed = augment, seed
        self.rotate, self.scale, self.shift = rotate, scale, shift
        self.jitter = jitter * self.size / 256
        self.parts, self.face, self.part_squares = parts, face, part_squares
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def pair(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """(A, B) uint8 (S, S, 3) for item ``idx``, transformed when augmenting."""
        return self._item(idx)[:2]

    def _item(self, idx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(A, B, the landmarks the photo has) for item ``idx``."""
        pts, photo = self.points[idx], self.photos[idx]
        drawn = pts  # the landmarks the sketch is drawn from
        if self.recon is not None:  # its own stream: the augmentation's draws stay as without it
            if np.random.default_rng([self.seed, self.epoch, idx, 1]).random() < self.recon_share:
                drawn = self.recon[idx]
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, idx])
            s = self.size
            m = cv2.getRotationMatrix2D((s / 2, s / 2), rng.uniform(-self.rotate, self.rotate),
                                        1 + rng.uniform(-self.scale, self.scale))
            m[:, 2] += rng.uniform(-self.shift, self.shift, 2) * s
            photo = cv2.warpAffine(photo, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            pts, drawn = pts @ m[:, :2].T + m[:, 2], drawn @ m[:, :2].T + m[:, 2]
            if self.jitter > 0:  # the sketch only: the photo's landmarks stay where they are
                return sketch.render(drawn + rng.normal(0, self.jitter, drawn.shape).astype(np.float32),
                                     self.size), photo, pts
        return sketch.render(drawn, self.size), photo, pts

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, ...]:
        a, b, pts = self._item(idx)
        item = [to_input(a)[0], to_input(b)[0]]
        if self.parts:
            item.append(torch.from_numpy(parts_mask(pts, self.size))[None])
        if self.face:
            item.append(torch.from_numpy(face_box(pts, self.size)))
        if self.part_squares:
            item.append(torch.from_numpy(part_boxes(pts, self.size)))
        return tuple(item)


FACE_MARGIN = 1.2  # the face square's side over the landmarks' larger extent


def face_box(points: np.ndarray, size: int) -> np.ndarray:
    """(3,) float32: the square around these (478, 2) landmarks (the photo's), its side
    ``FACE_MARGIN`` x their larger extent so that it holds the jaw's and the hairline's
    edges, as (centre x, centre y, half side) in the image's [-1, 1] coordinates (what
    ``networks.crop_faces`` takes)."""
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    centre = (lo + hi) / 2
    half = FACE_MARGIN * float((hi - lo).max()) / 2
    return np.array([*((centre + 0.5) / size * 2 - 1), max(half / size * 2, 0.05)], np.float32)


# The parts ``--lambda-parts`` weighs: each eye (both lids) and the mouth (the outer lips).
EYE_OUTLINES = ((sketch.EYES[0], sketch.EYES[1]), (sketch.EYES[2], sketch.EYES[3]))
PART_OUTLINES = (*EYE_OUTLINES, (sketch.OUTER_LIPS[0], sketch.OUTER_LIPS[1]))

PART_MARGIN = 1.6  # an eye's or the mouth's square side over its outline's larger extent
PART_LEAST = 1 / 32  # the least half side of a part's square, of the image's (a closed or tiny mouth)


def part_boxes(points: np.ndarray, size: int, outlines=PART_OUTLINES) -> np.ndarray:
    """(K, 3) float32: one square per part of these (478, 2) landmarks (the photo's), each
    eye and the mouth (``PART_OUTLINES``) by default, as ``face_box`` gives the face's:
    (centre x, centre y, half side) in [-1, 1], the side ``PART_MARGIN`` x the outline's
    larger extent (lids and lashes, the lips' edges), at least ``PART_LEAST`` of the image."""
    boxes = []
    for lower, upper in outlines:
        pts = points[np.concatenate([lower, upper])][:, :2]
        lo, hi = pts.min(0), pts.max(0)
        centre = (lo + hi) / 2
        half = max(PART_MARGIN * float((hi - lo).max()) / 2 / size * 2, PART_LEAST * 2)
        boxes.append([*((centre + 0.5) / size * 2 - 1), half])
    return np.array(boxes, np.float32)


def parts_mask(points: np.ndarray, size: int, outlines=PART_OUTLINES) -> np.ndarray:
    """(S, S) float32: 1 inside the eyes and the mouth (or ``outlines``: e.g. the eyes
    alone, ``EYE_OUTLINES``) of these (478, 2) landmarks, each outline (its two chains)
    widened by 1/64 of the image (lashes, lip edges), else 0."""
    mask = np.zeros((size, size), np.uint8)
    for lower, upper in outlines:
        outline = np.concatenate([points[lower], points[upper][::-1]])[:, :2]
        cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 1)
    k = max(3, 2 * (size // 128) + 1)
    return cv2.dilate(mask, np.ones((k, k), np.uint8)).astype(np.float32)
