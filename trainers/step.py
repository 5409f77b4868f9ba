"""One pix2pix training step, and the engine it runs on: precision, kernels, optimizers.

Shared by the training loop (trainers/train.py) and the speed benchmark
(trainers/bench.py), so the benchmark measures exactly the step that trains.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from f2f_cam.errors import UserError
from f2f_cam.system import native_bf16
from trainers import fastconv
from trainers.config import GAN_MODES, PRECISIONS
from trainers.distributed import unwrap


def pick_precision(want: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if want not in PRECISIONS:
        raise UserError(f"unknown precision '{want}'; choose one of: {', '.join(PRECISIONS)}")
    if want == "fp32":
        return None
    if want == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if native_bf16("cuda") else torch.float16
        return torch.bfloat16 if device.type == "cpu" and native_bf16("cpu") else None
    if want == "fp16" and device.type == "cpu":
        raise UserError("--precision fp16 needs a GPU; on a CPU use bf16 or fp32")
    return torch.bfloat16 if want == "bf16" else torch.float16


def default_ndf(device: torch.device, amp_dtype: torch.dtype | None) -> int:
    """The discriminator's width when none is given: 32, or 16 where the step runs fp32
    on a CPU. There the PatchGAN is ~3.4 GMAC an image at 512 px against the ngf 8
    U-Net's ~0.45, so it is most of a step: on an AVX2-only Zen 2, ndf 16 ran a step in
    0.90 s against 2.42 s, and 30 minutes gave 1920 steps against 573 and a better
    persona (README). With bf16 (AVX512-BF16, AMX, GPUs) 32 is what was measured."""
    return 16 if device.type == "cpu" and amp_dtype is None else 32


def default_ngf(device: torch.device, amp_dtype: torch.dtype | None) -> int:
    """The generator's width when none is given: 16 where the step runs bf16 or on a GPU,
    8 where it runs fp32 on a CPU. On a Zen 5 (AVX512-BF16) 30 minutes at 16 made 5-8 %
    fewer steps than at 8 (the discriminators are most of a step there) and a better persona
    on both clips measured (README); the 512 px ngf 16 U-Net still runs in real time on
    such a CPU. Where the step runs fp32 the wider generator was not measured, and the
    narrow one is what was."""
    return 8 if device.type == "cpu" and amp_dtype is None else 16


def precision_name(amp_dtype: torch.dtype | None) -> str:
    """"bfloat16", "float16" or "fp32", as checkpoints, personas and the CLI say it."""
    return str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32"


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``amp_dtype`` on ``device``; a no-op for fp32 (None)."""
    return torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)


def prepare_models(G: nn.Module, D: nn.Module, device: torch.device, amp_dtype) -> tuple[nn.Module, nn.Module]:
    """Move to the device; use GEMM convolutions where they are faster (bf16 on a CPU
    without AMX: trainers/fastconv.py). Parameters stay contiguous even when the
    activations are channels-last: the fused optimizer copies channels-last parameters
    in and out (3x slower at ngf 64), and the convolutions take either layout."""
    G, D = G.to(device), D.to(device)
    if fastconv.worthwhile(device, amp_dtype):
        fastconv.enable(G)
        fastconv.enable(D)
    return G, D


def ema_decay(decay: float, step: int) -> float:
    """The EMA's decay at ``step`` (counted from 1): ``decay``, less at first, so the
    average does not drag the random initial weights along (TensorFlow's
    ExponentialMovingAverage with num_updates)."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema``'s parameters move ``1 - decay`` of the way to ``model``'s; its buffers
    (BatchNorm's running statistics) are ``model``'s."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def make_optimizers(G: nn.Module, D: nn.Module, lr: float, beta1: float, device: torch.device,
                    lr_d: float | None = None):
    """pix2pix's Adam for G and D (D at ``lr_d`` when given); PyTorch's fused kernel on
    CPU and CUDA (one pass over the parameters instead of several: 150 -> 17 ms for G at
    ngf 64 on this CPU). It is the same update rule, and it keeps the optimizer state format."""
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    return (torch.optim.Adam(G.parameters(), lr=lr, betas=(beta1, 0.999), **fused),
            torch.optim.Adam(D.parameters(), lr=lr if lr_d is None else lr_d, betas=(beta1, 0.999), **fused))


def tune_malloc() -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the system.

    A training step allocates and frees the same large tensors (8 M-value weights
    and their gradients) every time; by default each one above 32 MB is a fresh mmap,
    page-faulted in on every step (a 34 MB copy then takes 8 ms instead of 1.5).
    Process-wide, so only the training command calls it. Returns whether it applied.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # glibc's mallopt parameter numbers
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


def gan_loss(mode: str):
    """The GAN criterion on D's logits: ``loss(pred, real)`` against all-1 or all-0 targets."""
    if mode not in GAN_MODES:
        raise UserError(f"unknown GAN loss '{mode}'; choose one of: {', '.join(GAN_MODES)}")
    crit = nn.BCEWithLogitsLoss() if mode == "vanilla" else nn.MSELoss()

    def loss(pred: torch.Tensor, real: bool) -> torch.Tensor:
        return crit(pred.float(), torch.full_like(pred, 1.0 if real else 0.0, dtype=torch.float32))

    return loss


def scales(pred) -> list[list[torch.Tensor]]:
    """A discriminator's output as per-scale feature lists: a PatchGAN's logits tensor
    is one scale with no features; a ``MultiscaleDiscriminator`` gives them already."""
    return [[pred]] if isinstance(pred, torch.Tensor) else pred


def gan_loss_scales(crit, pred, real: bool) -> torch.Tensor:
    """The GAN loss averaged over the discriminator's scales (each scale's last entry is
    its logits)."""
    per_scale = scales(pred)
    return sum(crit(s[-1], real) for s in per_scale) / len(per_scale)


def feature_matching_loss(pred_fake, pred_real) -> torch.Tensor:
    """pix2pixHD's feature-matching loss: L1 between the discriminator's intermediate
    features (not its logits) on the generated and the real pair, each layer weighted
    4 / (layers + 1) and each scale 1 / scales; the real side is a fixed target.

    0 for a discriminator without features (a plain PatchGAN)."""
    fake_s, real_s = scales(pred_fake), scales(pred_real)
    total = fake_s[0][-1].new_zeros((), dtype=torch.float32)
    for fake, real in zip(fake_s, real_s):
        layers = len(fake) - 1  # the last is the logits
        for f, r in zip(fake[:-1], real[:-1]):
            total = total + (4.0 / (layers + 1)) / len(fake_s) * (f.float() - r.detach().float()).abs().mean()
    return total


def parts_l1(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the pixels where ``mask`` (B, 1, S, S) is 1 (the eyes
    and the mouth, ``data.parts_mask``): (B, 3, S, S) images -> a scalar (0 without any).

    Per image, then the mean over the batch: each image weighs the same whatever the size
    of its eyes and mouth, so a batch split over DDP processes (which average their
    gradients) trains exactly as one process with the whole batch does."""
    m = mask.float()
    error = ((fake.float() - real.float()).abs() * m).sum((1, 2, 3))
    return (error / (m.sum((1, 2, 3)) * fake.shape[1]).clamp_min(1.0)).mean()


GRID_FACTORS = (2, 4)  # the periods (px) of the last two transposed convolutions' checkerboard
GRID_POOL = 8  # each phase's mean is taken over this many of its pixels square (16 and 32 px)


def grid_phases(image: torch.Tensor, factor: int, pool: int = GRID_POOL) -> torch.Tensor:
    """How far each of the ``factor`` x ``factor`` sub-pixel phases of ``image`` (B, C, S, S)
    sits above the mean of all of them, averaged over ``pool`` x ``pool`` of its own pixels:
    (B, C, factor², S / factor / pool, ...). A stride-``factor`` transposed convolution's
    checkerboard is exactly such an offset held over a region; a photo's phases average
    out to its edges' share."""
    b, c, _, _ = image.shape
    u = F.pixel_unshuffle(image.float(), factor)  # (B, C * f², S / f, S / f), channel-major
    u = u.unflatten(1, (c, factor * factor))
    dev = (u - u.mean(2, keepdim=True)).flatten(1, 2)
    return F.avg_pool2d(dev, pool).unflatten(1, (c, factor * factor))


def grid_l1(fake: torch.Tensor, real: torch.Tensor, factors=GRID_FACTORS) -> torch.Tensor:
    """L1 between the generated and the real image's ``grid_phases`` at the transposed
    convolutions' periods, averaged over them: the checkerboard the generator adds where the
    photo has none, and nothing a photo's own edges have. (B, 3, S, S) -> a scalar."""
    total = fake.new_zeros((), dtype=torch.float32)
    for f in factors:
        total = total + (grid_phases(fake, f) - grid_phases(real, f)).abs().mean()
    return total / len(factors)


def train_step(G, D, opt_G, opt_D, scaler, crit, real_A, real_B, autocast, lambda_l1: float,
               lambda_feat: float = 0.0, parts=None, lambda_parts: float = 0.0, boxes=None,
               lambda_face: float = 0.0, part_boxes=None, lambda_parts_gan: float = 0.0,
               lambda_grid: float = 0.0) -> dict:
    """One pix2pix step on a batch: the discriminator, then the generator.

    real_A (sketch), real_B (photo): (B, 3, S, S) in [-1, 1]; ``autocast``: a callable
    returning the autocast context; ``lambda_feat`` > 0 adds pix2pixHD's feature
    matching (with a multi-scale D); ``parts`` (B, 1, S, S) with ``lambda_parts`` > 0
    adds ``lambda_l1 * lambda_parts`` times the L1 over the eyes and mouth; ``boxes``
    (B, 3) with ``lambda_face`` > 0 (and a ``FaceDiscriminator``) adds its face GAN,
    ``lambda_face`` times its loss in G's (in D's at weight 1, like the whole image's);
    ``part_boxes`` (B, K, 3) with ``lambda_parts_gan`` > 0 (and a ``FaceDiscriminator``
    with a parts D) adds the eyes' and mouth's GAN the same way; ``lambda_grid`` > 0 adds
    ``lambda_l1 * lambda_grid`` times ``grid_l1`` (the checkerboard).
    Returns the losses (tensors; call .item() only when logging, it synchronises a GPU).
    """
    if boxes is None or lambda_face <= 0:
        boxes = None
    if part_boxes is None or lambda_parts_gan <= 0:
        part_boxes = None

    def judge(net, pair):
        """(the whole image's verdict, the face's or None, the parts' or None)."""
        if boxes is None and part_boxes is None:
            return net(pair), None, None
        return net(pair, boxes, part_boxes)

    with autocast():
        fake_B = G(real_A)  # (B, 3, S, S)

    # Discriminator step: real pairs -> 1, generated pairs -> 0.
    with autocast():
        pred_real, face_real, parts_real = judge(D, torch.cat([real_A, real_B], 1))
        pred_fake, face_fake, parts_fake = judge(D, torch.cat([real_A, fake_B.detach()], 1))  # no gradient into G
        loss_D = 0.5 * (gan_loss_scales(crit, pred_real, True) + gan_loss_scales(crit, pred_fake, False))
        if face_real is not None:
            loss_D_face = 0.5 * (crit(face_real, True) + crit(face_fake, False))
            loss_D = loss_D + loss_D_face
        if parts_real is not None:
            loss_D_parts = 0.5 * (crit(parts_real, True) + crit(parts_fake, False))
            loss_D = loss_D + loss_D_parts
    opt_D.zero_grad(set_to_none=True)
    scaler.scale(loss_D).backward()
    scaler.step(opt_D)

    # Generator step: fool D, and stay close to the photo (L1; and to D's view of it,
    # with feature matching). As in the reference, D's weights take no gradient here;
    # under DDP its bare module runs (no D gradients to reduce), so DDP's bookkeeping
    # is not left waiting for them.
    D_fixed = unwrap(D)
    D_fixed.requires_grad_(False)
    try:
        with autocast():
            pred_fake, face_fake, parts_fake = judge(D_fixed, torch.cat([real_A, fake_B], 1))
            loss_G_gan = gan_loss_scales(crit, pred_fake, True)
            loss_G_l1 = (fake_B.float() - real_B).abs().mean()
            loss_G = loss_G_gan + lambda_l1 * loss_G_l1
            loss_G_face = None
            if face_fake is not None:
                loss_G_face = crit(face_fake, True)
                loss_G = loss_G + lambda_face * loss_G_face
            loss_G_parts_gan = None
            if parts_fake is not None:
                loss_G_parts_gan = crit(parts_fake, True)
                loss_G = loss_G + lambda_parts_gan * loss_G_parts_gan
            loss_G_parts = None
            if lambda_parts > 0 and parts is not None:
                loss_G_parts = parts_l1(fake_B, real_B, parts)
                loss_G = loss_G + lambda_l1 * lambda_parts * loss_G_parts
            loss_G_grid = None
            if lambda_grid > 0:
                loss_G_grid = grid_l1(fake_B, real_B)
                loss_G = loss_G + lambda_l1 * lambda_grid * loss_G_grid
            loss_G_feat = None
            if lambda_feat > 0:
                # The real pair's features from the D step above, as pix2pixHD does
                # (one D forward fewer); detached inside: a fixed target.
                loss_G_feat = feature_matching_loss(pred_fake, pred_real)
                loss_G = loss_G + lambda_feat * loss_G_feat
        opt_G.zero_grad(set_to_none=True)
        scaler.scale(loss_G).backward()
    finally:
        D_fixed.requires_grad_(True)
    scaler.step(opt_G)
    scaler.update()
    losses = {"loss_D": loss_D.detach(), "loss_G_gan": loss_G_gan.detach(), "loss_G_l1": loss_G_l1.detach()}
    if loss_G_feat is not None:
        losses["loss_G_feat"] = loss_G_feat.detach()
    if loss_G_parts is not None:
        losses["loss_G_parts"] = loss_G_parts.detach()
    if loss_G_grid is not None:
        losses["loss_G_grid"] = loss_G_grid.detach()
    if loss_G_face is not None:
        losses["loss_D_face"], losses["loss_G_face"] = loss_D_face.detach(), loss_G_face.detach()
    if loss_G_parts_gan is not None:
        losses["loss_D_parts"], losses["loss_G_parts_gan"] = loss_D_parts.detach(), loss_G_parts_gan.detach()
    return losses
