"""A real-time student: a cheaper generator taught to draw what the persona's draws.

Where the generator ``f2f-cam train`` makes by default cannot keep up with 30 frames a
second on the machine it trains on (an AVX2-only laptop CPU: the 512 px ngf 8 U-Net
takes ~47 ms a frame on one core), training ends by distilling it, as GAN Compression
does, into a ``StudentGenerator`` (``trainers.networks``): the image folded 2x2 into
channels, a U-Net at half the size. The student learns from the teacher alone: each
step the teacher draws the training sketches (moved and jittered as in training, so
the student sees the sketches live driving gives), and the student is fitted to those
outputs (L1). The runtime keeps the full generator where it is fast enough and uses
the student where it is not (``f2f_cam.generator``).

The student's state is saved next to the checkpoint it was taught by
(``checkpoints/student.pt``, with that checkpoint's step): ``f2f-cam export`` puts it
in the persona when the steps match.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from f2f_cam.atomic import atomic_path
from f2f_cam.generator import REAL_TIME_MS  # noqa: F401  (teach_student's threshold)
from trainers.networks import define_G

log = logging.getLogger(__name__)

STUDENT_FILE = "student.pt"
STUDENT = {"kind": "student", "ngf": 8}  # measured: README, "The real-time student"
STUDENT_INNER = 256  # the fold brings the student's U-Net to this size (512 px: 2x2; 256 px: none)


def generator_ms(net: nn.Module, size: int, runs: int = 12, threads: int = 1) -> float:
    """The median time of one frame through ``net`` (eager, channels-last, bf16 where
    the CPU has it natively, as the runtime runs it) with ``threads`` torch threads: the
    daemon gives the generator one of two cores."""
    from f2f_cam.system import native_bf16

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.zeros(1, 3, size, size).contiguous(memory_format=torch.channels_last)
        times = []
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=native_bf16("cpu")):
            for _ in range(runs + 3):
                t = time.perf_counter()
                net(x)
                times.append(time.perf_counter() - t)
        return statistics.median(times[3:]) * 1e3
    finally:
        torch.set_num_threads(old)


def student_args(size: int, norm: str = "instance") -> dict:
    """The student's ``model_args`` for a teacher of ``size`` px: folded 2x2 at 512 px,
    not folded at 256 px and below (folded there, the astronaut's student drew a
    blurred face 28.6 dB from her generator; not folded, 32.9 dB: README)."""
    return {**STUDENT, "factor": max(1, size // STUDENT_INNER), "size": size, "norm": norm}


def edge_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical pixel differences of two image batches:
    what an L1 on the pixels alone lets blur away (lids, lashes, teeth, hair edges)."""
    return ((a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])).abs().mean() + \
        ((a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])).abs().mean()


def decayed_lr(lr: float, done: float, share: float) -> float:
    """``lr`` until the last ``share`` of the run, then linearly down to 0 at its end
    (``done``: the share of the run behind, 0 to 1); ``lr`` throughout when share is 0."""
    if share <= 0:
        return lr
    return lr * min(1.0, max(0.0, (1.0 - done) / share))


def distil(teacher: nn.Module, meta: dict, *, minutes: float, seed: int = 0, batch_size: int = 4,
           lr: float = 2e-3, max_steps: int | None = None, progress: bool = True,
           should_stop=lambda: False, lambda_edge: float = 0.0, discriminator: nn.Module | None = None,
           lambda_gan: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
           decay_share: float = 0.5, arch: dict | None = None) -> tuple[nn.Module, dict]:
    """A student of ``teacher`` (fp32, eval) fitted on the dataset ``meta``'s training
    sketches for ``minutes`` (or ``max_steps``); (student in eval mode, facts: steps,
    seconds, and on the held-out sketches the student's PSNR against the teacher's
    output and both against the real photos). ``should_stop``: polled each step (Ctrl-C).

    The loss: L1 to the teacher's output, plus ``lambda_edge`` x ``edge_l1``, plus
    ``lambda_gan`` x a GAN loss from ``discriminator`` (the run's PatchGAN, trained on
    here with the teacher's outputs as the real side, as GAN Compression does).
    Adam at ``lr`` with ``betas``, the rate going down linearly to 0 over the last
    ``decay_share`` of the budget: a plain regression, not a GAN's (0.5, 0.999) at 2e-4,
    which left the student 5 dB further from the generator in the same 8 minutes
    (README, "The real-time student"). ``arch``: ``ngf`` and ``factor`` other than
    ``STUDENT``'s (``scripts/add_student.py``)."""
    from tqdm import tqdm

    from trainers.data import PairedDataset
    from trainers.networks import StudentGenerator  # noqa: F401  (define_G's "student")

    size = int(meta["image_size"])
    torch.manual_seed(seed)
    student = define_G(**_kind({**student_args(size), **(arch or {})}))
    opt = torch.optim.Adam(student.parameters(), lr=lr, betas=betas, fused=True)
    data = PairedDataset(meta, "train", augment=True, seed=seed + 1, jitter=1.0)
    if discriminator is not None and lambda_gan:
        from trainers.step import gan_loss

        discriminator.train()
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
        crit = gan_loss("vanilla")
    teacher = teacher.eval()
    cl = torch.channels_last
    rng = np.random.default_rng(seed)
    step, epoch, t0 = 0, 0, time.monotonic()
    budget = minutes * 60
    order: list[int] = []
    bar = tqdm(total=max_steps, unit="step", desc="real-time student", disable=None if progress else True,
               dynamic_ncols=True)
    with bar:
        while (max_steps is None or step < max_steps) and time.monotonic() - t0 < budget and not should_stop():
            if len(order) < batch_size:
                data.set_epoch(epoch)
                epoch += 1
                order = rng.permutation(len(data)).tolist()
            batch, order = order[:batch_size], order[batch_size:]
            a = torch.stack([data[i][0] for i in batch]).contiguous(memory_format=cl)
            done = step / max_steps if max_steps else (time.monotonic() - t0) / budget
            for group in opt.param_groups:
                group["lr"] = decayed_lr(lr, done, decay_share)
            with torch.inference_mode():
                target = teacher(a).clone()
            student.train()
            fake = student(a)
            loss = (fake - target).abs().mean()
            if lambda_edge:
                loss = loss + lambda_edge * edge_l1(fake, target)
            if discriminator is not None and lambda_gan:
                for p in discriminator.parameters():
                    p.requires_grad_(False)
                loss = loss + lambda_gan * crit(discriminator(torch.cat([a, fake], 1)), True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if discriminator is not None and lambda_gan:  # D: the teacher's output against the student's
                for p in discriminator.parameters():
                    p.requires_grad_(True)
                d_loss = 0.5 * (crit(discriminator(torch.cat([a, target], 1)), True)
                                + crit(discriminator(torch.cat([a, fake.detach()], 1)), False))
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
            step += 1
            bar.update(1)
            bar.set_postfix(L1=f"{loss.item():.4f}")
    student.eval()
    facts = {"steps": step, "seconds": round(time.monotonic() - t0, 1),
             **{k: v for k, v in student.args.items() if k in ("ngf", "factor")},
             **held_out_figures(student, teacher, meta)}
    return student, facts


def held_out_figures(student: nn.Module, teacher: nn.Module, meta: dict) -> dict:
    """On the held-out pairs: the student's PSNR and SSIM against the teacher's output,
    the PSNR of each against the real photos (dB), and the student's sharpness over the
    teacher's (Laplacian variance of the face, as ``bench --quality`` measures it)."""
    from f2f_cam.generator import to_image
    from f2f_cam.quality import face_crop, sharpness
    from trainers.data import PairedDataset
    from trainers.metrics import image_metrics

    val = PairedDataset(meta, "val")
    if len(val) == 0:
        return {}
    rows, sharp = [], []
    with torch.inference_mode():
        for i in range(0, len(val), 8):
            a, b = (torch.stack(x) for x in zip(*(val[j] for j in range(i, min(i + 8, len(val))))))
            t, s = teacher(a).float(), student(a).float()
            vs_t, s_r, t_r = image_metrics(s, t), image_metrics(s, b), image_metrics(t, b)
            rows += zip(vs_t["psnr"].tolist(), vs_t["ssim"].tolist(), s_r["psnr"].tolist(), t_r["psnr"].tolist())
            for j, (si, ti) in enumerate(zip(to_image(s), to_image(t)), i):
                sharp.append((sharpness(face_crop(si, val.points[j])), sharpness(face_crop(ti, val.points[j]))))
    mean = np.mean(np.array(rows), axis=0)
    return {"psnr_vs_generator": round(float(mean[0]), 2), "ssim_vs_generator": round(float(mean[1]), 4),
            "val_psnr": round(float(mean[2]), 2), "generator_val_psnr": round(float(mean[3]), 2),
            "sharpness_vs_generator": round(float(np.mean([s for s, _ in sharp]) / max(np.mean([t for _, t in sharp]),
                                                                                       1e-9)), 3)}


def _kind(args: dict) -> dict:
    out = dict(args)
    out["name"] = out.pop("kind")
    return out


def build_student(args: dict) -> nn.Module:
    return define_G(**_kind(args))


def save_student(path: Path, student: nn.Module, facts: dict, teacher_step: int) -> None:
    """The student beside its teacher's checkpoint: weights, arguments, the teacher's step."""
    with atomic_path(path) as tmp:
        torch.save({"model_args": student.args, "state": student.state_dict(), "facts": facts,
                    "teacher_step": int(teacher_step)}, tmp)


def load_student(path: Path, teacher_step: int) -> tuple[nn.Module, dict] | None:
    """The student saved beside a checkpoint, if it was taught by that checkpoint's
    generator (the same step); else None."""
    if not Path(path).is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("teacher_step") != int(teacher_step):
        log.info("%s was distilled from another checkpoint (step %s, not %s): not used", path,
                 saved.get("teacher_step"), teacher_step)
        return None
    student = build_student(saved["model_args"])
    student.load_state_dict(saved["state"])
    return student.eval(), saved["facts"]
