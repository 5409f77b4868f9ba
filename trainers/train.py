"""pix2pix training: U-Net G, PatchGAN D, loss = GAN + lambda * L1.

Reads top to bottom: config, set-up (devices, DDP, data, models), resume, the loop
(a discriminator step, then a generator step), validation, checkpoints. Runs on one
CPU, one GPU, or many processes under ``torchrun`` (DistributedDataParallel: gloo on
CPU, nccl on GPU); rank 0 alone writes checkpoints, samples and logs.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from f2f_cam import sketch
from f2f_cam.errors import UserError
from trainers import fastconv
from trainers.data import PairedDataset
from trainers.metrics import image_metrics
from trainers.networks import define_D, define_G

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
# Config fields that change the networks: a checkpoint made with other values cannot resume.
ARCH_FIELDS = ("size", "ngf", "ndf", "norm", "gan_mode", "dropout")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
GAN_MODES = ("vanilla", "lsgan")


@dataclass(frozen=True)
class TrainConfig:
    size: int = 256  # image size (px); the dataset must have been built at this size
    ngf: int = 32  # generator base filters: 64 is the paper's, 32 runs in real time on a CPU
    ndf: int = 64  # discriminator base filters
    norm: str = "batch"  # batch (pix2pix) | instance (per image; DDP on CPUs then equals one process)
    epochs: int | None = 30  # passes over the training pairs (None: until --minutes)
    minutes: float | None = None  # time budget: stop cleanly at it (checkpoint, then export)
    batch_size: int = 4  # per process
    lr: float = 2e-4  # Adam, as in pix2pix
    beta1: float = 0.5
    lambda_l1: float = 100.0  # weight of L1 against the GAN loss (pix2pix)
    gan_mode: str = "vanilla"  # vanilla (BCE with logits) | lsgan (MSE)
    decay_epochs: int = 0  # linear lr decay to 0 over the last N epochs (0: constant lr)
    dropout: bool = True  # dropout in the first decoder blocks (pix2pix's noise)
    augment: bool = True  # same small rotation/scale/shift on sketch and photo
    save_every: int = 500  # steps between checkpoints (also one at every epoch end)
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (auto: bf16 where the hardware has it)
    channels_last: bool = True  # NHWC activations (parameters stay contiguous): faster convolutions
    workers: int = 0  # DataLoader worker processes (0: load in the main process)
    sync_bn: bool = False  # SyncBatchNorm across DDP processes (batch statistics over the global batch)
    seed: int = 0
    val_samples: int = 4  # validation pairs shown in the per-epoch sample grid
    max_steps: int | None = None  # stop after this many steps in total (tests, smoke runs)


# -- set-up -------------------------------------------------------------------------

def pick_device(want: str, local_rank: int = 0) -> torch.device:
    if want not in DEVICES:
        raise UserError(f"unknown device '{want}'; choose one of: {', '.join(DEVICES)}")
    if want in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if want == "cuda":
        raise UserError("--device cuda: no CUDA GPU is visible to torch (see README: install the CUDA build)")
    mps = getattr(torch.backends, "mps", None)
    if want in ("auto", "mps") and mps is not None and mps.is_available():
        return torch.device("mps")
    if want == "mps":
        raise UserError("--device mps: Apple Metal is not available here")
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """Native bf16 on this CPU (AVX512-BF16 / AMX): where bf16 autocast is a win."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


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


def make_optimizers(G: nn.Module, D: nn.Module, lr: float, beta1: float, device: torch.device):
    """pix2pix's Adam for G and D; PyTorch's fused kernel on CPU and CUDA (one pass over
    the parameters instead of several: 150 -> 17 ms for G at ngf 64 on this CPU).
    It is the same update rule, and it keeps the optimizer state format."""
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    return (torch.optim.Adam(G.parameters(), lr=lr, betas=(beta1, 0.999), **fused),
            torch.optim.Adam(D.parameters(), lr=lr, betas=(beta1, 0.999), **fused))


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


def pick_precision(want: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if want not in PRECISIONS:
        raise UserError(f"unknown precision '{want}'; choose one of: {', '.join(PRECISIONS)}")
    if want == "fp32":
        return None
    if want == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None
    if want == "fp16" and device.type == "cpu":
        raise UserError("--precision fp16 needs a GPU; on a CPU use bf16 or fp32")
    return torch.bfloat16 if want == "bf16" else torch.float16


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> Dist:
    """Join the process group when started by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def finish_distributed() -> None:
    """Leave the process group: every rank, after its last collective. Exiting with it
    still open tears gloo's threads down mid-flight (an abort in about 1 run in 8)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class SkipSampler(torch.utils.data.Sampler):
    """The first ``skip`` indices of ``base`` dropped: resuming in the middle of an epoch."""

    def __init__(self, base, skip: int):
        self.base, self.skip = base, skip

    def __iter__(self):
        for k, idx in enumerate(self.base):
            if k >= self.skip:
                yield idx

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


def gan_loss(mode: str):
    if mode not in GAN_MODES:
        raise UserError(f"unknown GAN loss '{mode}'; choose one of: {', '.join(GAN_MODES)}")
    crit = nn.BCEWithLogitsLoss() if mode == "vanilla" else nn.MSELoss()

    def loss(pred: torch.Tensor, real: bool) -> torch.Tensor:
        return crit(pred.float(), torch.full_like(pred, 1.0 if real else 0.0, dtype=torch.float32))

    return loss


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """Constant, then linear decay to 0 over the last ``decay_epochs`` epochs."""
    if not cfg.decay_epochs or not cfg.epochs:
        return 1.0
    start = cfg.epochs - cfg.decay_epochs
    return 1.0 - max(0, epoch - start) / (cfg.decay_epochs + 1)


# -- checkpoints --------------------------------------------------------------------

def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: a kill at any moment leaves the previous good checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Load with ``weights_only=True`` (no arbitrary unpickling) and check it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such checkpoint: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, garbage, a foreign pickle: many exception types
        raise UserError(f"checkpoint {path} is corrupt or truncated ({str(e).splitlines()[0][:120]}); "
                        "use an earlier one or train again") from e
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION or "G" not in ckpt:
        raise UserError(f"{path} is not an f2f-cam checkpoint")
    if ckpt.get("sketch_version") != sketch.SKETCH_VERSION:
        raise UserError(f"checkpoint {path} was trained on sketch version {ckpt.get('sketch_version')}, "
                        f"this f2f-cam draws version {sketch.SKETCH_VERSION}; train again")
    return ckpt


def check_resumable(ckpt: dict, cfg: TrainConfig, dataset_sha: str, path: Path) -> None:
    old = ckpt["config"]
    diff = [f"{k}={old.get(k)!r} (now {getattr(cfg, k)!r})" for k in ARCH_FIELDS if old.get(k) != getattr(cfg, k)]
    if diff:
        raise UserError(f"checkpoint {path} was made with another config: {', '.join(diff)}; "
                        "use the same options, or start without --resume in a new folder")
    if ckpt["dataset"]["video_sha256"] != dataset_sha:
        raise UserError(f"checkpoint {path} was trained on another video; start a new run")


# -- the loop -----------------------------------------------------------------------

def train(cfg: TrainConfig, meta: dict, run_dir: Path, resume: bool = False, progress: bool = True) -> dict:
    """Train on the dataset ``meta`` (from ``trainers.dataset.load_dataset``) in ``run_dir``.

    Writes checkpoints/last.pt, samples/epoch_NNN.png, metrics.csv and metrics.png.
    Returns facts for the persona: steps, epochs, seconds, device, validation metrics,
    and ``stopped``: "done" | "time budget" | "max steps" | "interrupted".
    """
    from tqdm import tqdm

    if cfg.size != meta["image_size"]:
        raise UserError(f"--size {cfg.size} but the dataset was built at {meta['image_size']} px; "
                        "rebuild it or change --size")
    if cfg.epochs is None and cfg.minutes is None and cfg.max_steps is None:
        raise UserError("give --epochs or --minutes (or both)")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    dd = init_distributed(device.type)
    amp_dtype = pick_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format

    # Data: DistributedSampler splits the global order across ranks (one rank: all of it).
    train_set = PairedDataset(meta, "train", augment=cfg.augment, seed=cfg.seed)
    val_set = PairedDataset(meta, "val")
    if len(train_set) < cfg.batch_size * dd.world:
        raise UserError(f"{len(train_set)} training pairs are fewer than one global batch "
                        f"({cfg.batch_size} x {dd.world} processes); lower --batch-size or add --frames")
    sampler = torch.utils.data.distributed.DistributedSampler(
        train_set, num_replicas=dd.world, rank=dd.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    steps_per_epoch = len(sampler) // cfg.batch_size

    # Models. DDP broadcasts rank 0's weights; SyncBN shares batch statistics.
    G = define_G("unet", size=cfg.size, ngf=cfg.ngf, n_dropout=3 if cfg.dropout else 0, norm=cfg.norm)
    D = define_D("patch", ndf=cfg.ndf, norm=cfg.norm)
    if cfg.sync_bn and device.type != "cuda":
        raise UserError("--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm is GPU-only); on CPUs use "
                        "--norm instance for batch-independent normalisation")
    if dd.world > 1 and cfg.sync_bn:
        G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
    G, D = prepare_models(G, D, device, amp_dtype)
    opt_G, opt_D = make_optimizers(G, D, cfg.lr, cfg.beta1, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    crit = gan_loss(cfg.gan_mode)

    epoch, skip, step, seconds_before, history = 0, 0, 0, 0.0, []
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        check_resumable(ckpt, cfg, meta["video_sha256"], ckpt_path)
        G.load_state_dict(ckpt["G"])
        D.load_state_dict(ckpt["D"])
        opt_G.load_state_dict(ckpt["opt_G"])
        opt_D.load_state_dict(ckpt["opt_D"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        epoch, skip, step = ckpt["epoch"], ckpt["step_in_epoch"], ckpt["step"]
        seconds_before, history = ckpt["seconds"], list(ckpt["history"])
        torch.set_rng_state(ckpt["rng_cpu"][dd.rank % len(ckpt["rng_cpu"])])
        if device.type == "cuda" and ckpt.get("rng_cuda"):
            torch.cuda.set_rng_state(ckpt["rng_cuda"][dd.rank % len(ckpt["rng_cuda"])])
        if dd.main:
            log.info("resuming at epoch %d, step %d", epoch + 1, step)
    elif resume and dd.main:
        log.warning("nothing to resume in %s; starting a new run", run_dir)
    else:
        torch.manual_seed(cfg.seed + dd.rank)  # dropout masks differ per rank, like more data
    if dd.world > 1:
        kw = {"device_ids": [device.index]} if device.type == "cuda" else {}
        G, D = nn.parallel.DistributedDataParallel(G, **kw), nn.parallel.DistributedDataParallel(D, **kw)
    G_core = G.module if dd.world > 1 else G

    # Ctrl-C: finish the current step, save, say how to resume (rank 0 prints).
    interrupted = {"flag": False}
    old_handler = None
    if dd.main and threading_main():
        old_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.update(flag=True))

    def state(ep: int, k: int) -> dict:
        rng_cpu = [torch.get_rng_state()]
        rng_cuda = [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []
        rank_hashes = [params_hash(G_core)]
        if dd.world > 1:  # every rank's RNG, so dropout continues exactly on each one
            rng_cpu = gather_tensors(rng_cpu[0], dd)
            rng_cuda = gather_tensors(rng_cuda[0], dd) if rng_cuda else []
            rank_hashes = gather_objects(rank_hashes[0], dd)  # DDP keeps ranks identical: recorded to check
        return {
            "version": CHECKPOINT_VERSION, "sketch_version": sketch.SKETCH_VERSION,
            "config": dataclasses.asdict(cfg),
            "G": G_core.state_dict(), "D": (D.module if dd.world > 1 else D).state_dict(),
            "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "epoch": ep, "step_in_epoch": k, "step": step,
            "seconds": seconds_before + (time.monotonic() - t0),
            "rng_cpu": rng_cpu, "rng_cuda": rng_cuda,
            "history": history, "world_size": dd.world, "device": str(device), "rank_G_sha1": rank_hashes,
            "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
            "dataset": {"folder": meta["folder"], "video_sha256": meta["video_sha256"],
                        "video": meta["video"], "frames": meta["frames_kept"], "train": meta["train"],
                        "val": meta["val"]},
            "persona": {"crop": meta["crop"], "canonical": meta["canonical_landmarks"],
                        "neutral": meta["neutral_landmarks"]},
        }

    def checkpoint(ep: int, k: int) -> None:
        s = state(ep, k)  # collective under DDP: every rank takes part
        if dd.main:
            save_checkpoint(ckpt_path, s)

    t0 = time.monotonic()
    stopped = "done"
    autocast = lambda: torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)  # noqa: E731
    loader_gen = torch.Generator()  # keeps DataLoader from drawing on the global RNG
    bar = tqdm(total=None if cfg.epochs is None else cfg.epochs * steps_per_epoch, initial=step,
               unit="step", disable=not (progress and dd.main), dynamic_ncols=True)
    last_losses: dict = {}
    last_plot = -1e9
    try:
        while cfg.epochs is None or epoch < cfg.epochs:
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            for g in (*opt_G.param_groups, *opt_D.param_groups):
                g["lr"] = cfg.lr * lr_factor(cfg, epoch)
            loader = torch.utils.data.DataLoader(
                train_set, batch_size=cfg.batch_size, sampler=SkipSampler(sampler, skip * cfg.batch_size),
                num_workers=cfg.workers, drop_last=True, generator=loader_gen,
                pin_memory=device.type == "cuda")
            bar.set_description(f"epoch {epoch + 1}" + (f"/{cfg.epochs}" if cfg.epochs else ""))
            k = skip
            for real_A, real_B in loader:
                # (B, 3, S, S) in [-1, 1]: sketch A, photo B
                real_A = real_A.to(device, non_blocking=True).contiguous(memory_format=fmt)
                real_B = real_B.to(device, non_blocking=True).contiguous(memory_format=fmt)
                losses = train_step(G, D, opt_G, opt_D, scaler, crit, real_A, real_B, autocast, cfg.lambda_l1)

                step += 1
                k += 1
                last_losses = {name: v.item() for name, v in losses.items()}
                bar.update(1)
                bar.set_postfix(D=f"{last_losses['loss_D']:.3f}", G=f"{last_losses['loss_G_gan']:.3f}",
                                L1=f"{last_losses['loss_G_l1']:.3f}", refresh=False)
                reason = stop_reason(cfg, step, t0, interrupted["flag"], dd)
                if reason:
                    stopped = reason
                    break
                if cfg.save_every and step % cfg.save_every == 0 and k < steps_per_epoch:
                    checkpoint(epoch, k)
            if stopped != "done" and k < steps_per_epoch:
                checkpoint(epoch, k)  # mid-epoch: resume continues with batch k
                break
            # End of epoch: validate, sample grid, log, checkpoint.
            skip = 0
            if dd.main:
                metrics = validate(G_core, val_set, device, amp_dtype, fmt)
                row = {"epoch": epoch + 1, "step": step,
                       "seconds": round(seconds_before + time.monotonic() - t0, 1),
                       "lr": cfg.lr * lr_factor(cfg, epoch), **last_losses, **metrics}
                history.append(row)
                # The plot costs ~0.3 s: at most every 30 s here, and once more at the end.
                plot_now = time.monotonic() - last_plot >= 30
                write_logs(run_dir, history, plot=plot_now)
                if plot_now:
                    last_plot = time.monotonic()
                save_grid(G_core, val_set, device, amp_dtype, fmt, cfg.val_samples,
                          run_dir / "samples" / f"epoch_{epoch + 1:03d}.png")
                bar.write(f"epoch {epoch + 1}: val L1 {metrics['val_l1']:.4f}, PSNR {metrics['val_psnr']:.2f} dB, "
                          f"SSIM {metrics['val_ssim']:.3f}")
            epoch += 1
            checkpoint(epoch, 0)
            if stopped != "done":
                break
    finally:
        bar.close()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    if dd.main and history:
        write_logs(run_dir, history)
    if stopped == "interrupted" and dd.main:
        log.warning("interrupted at epoch %d, step %d; checkpoint saved to %s", epoch + 1, step, ckpt_path)
    final = history[-1] if history else {}
    if dd.main and not history:  # stopped before the first epoch ended: still measure it
        final = validate(G_core, val_set, device, amp_dtype, fmt)
    return {
        "stopped": stopped, "steps": step, "epochs": epoch,
        "seconds": round(seconds_before + time.monotonic() - t0, 1), "device": str(device),
        "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        "world_size": dd.world, "checkpoint": str(ckpt_path),
        **{k: final[k] for k in ("val_l1", "val_psnr", "val_ssim") if k in final},
    }


def train_step(G, D, opt_G, opt_D, scaler, crit, real_A, real_B, autocast, lambda_l1: float) -> dict:
    """One pix2pix step on a batch: the discriminator, then the generator.

    real_A (sketch), real_B (photo): (B, 3, S, S) in [-1, 1]. Returns the losses
    (tensors; call .item() only when logging, it synchronises a GPU).
    """
    with autocast():
        fake_B = G(real_A)  # (B, 3, S, S)

    # Discriminator step: real pairs -> 1, generated pairs -> 0.
    with autocast():
        pred_real = D(torch.cat([real_A, real_B], 1))
        pred_fake = D(torch.cat([real_A, fake_B.detach()], 1))  # no gradient into G
        loss_D = 0.5 * (crit(pred_real, True) + crit(pred_fake, False))
    opt_D.zero_grad(set_to_none=True)
    scaler.scale(loss_D).backward()
    scaler.step(opt_D)

    # Generator step: fool D, and stay close to the photo (L1). As in the reference, D's
    # weights take no gradient here; under DDP its bare module runs (no D gradients to
    # reduce), so DDP's bookkeeping is not left waiting for them.
    D_fixed = D.module if isinstance(D, nn.parallel.DistributedDataParallel) else D
    D_fixed.requires_grad_(False)
    try:
        with autocast():
            pred_fake = D_fixed(torch.cat([real_A, fake_B], 1))
            loss_G_gan = crit(pred_fake, True)
            loss_G_l1 = (fake_B.float() - real_B).abs().mean()
            loss_G = loss_G_gan + lambda_l1 * loss_G_l1
        opt_G.zero_grad(set_to_none=True)
        scaler.scale(loss_G).backward()
    finally:
        D_fixed.requires_grad_(True)
    scaler.step(opt_G)
    scaler.update()
    return {"loss_D": loss_D.detach(), "loss_G_gan": loss_G_gan.detach(), "loss_G_l1": loss_G_l1.detach()}


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def gather_objects(obj, dd: Dist) -> list:
    """Every rank's copy of a small picklable object, in rank order."""
    out = [None] * dd.world
    dist.all_gather_object(out, obj)
    return out


def gather_tensors(t: torch.Tensor, dd: Dist) -> list[torch.Tensor]:
    """Every rank's copy of a small CPU tensor (RNG states), in rank order."""
    return [o.cpu() for o in gather_objects(t.cpu(), dd)]


def params_hash(model: nn.Module) -> str:
    """SHA-1 of the model's parameter bytes: equal on every rank iff DDP kept them in sync."""
    import hashlib

    h = hashlib.sha1()
    for p in model.parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def stop_reason(cfg: TrainConfig, step: int, t0: float, interrupted: bool, dd: Dist) -> str | None:
    """Why to stop now, agreed by all ranks (rank 0 decides)."""
    reason = 0
    if cfg.max_steps is not None and step >= cfg.max_steps:
        reason = 2
    elif cfg.minutes is not None and time.monotonic() - t0 >= cfg.minutes * 60:
        reason = 1
    elif interrupted:
        reason = 3
    if dd.world > 1:
        flag = torch.tensor([reason], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.broadcast(flag, 0)
        reason = int(flag.item())
    return {0: None, 1: "time budget", 2: "max steps", 3: "interrupted"}[reason]


@torch.no_grad()
def generate(G: nn.Module, a: torch.Tensor, device, amp_dtype, fmt) -> torch.Tensor:
    """G in eval mode (as exported) on a batch: (N, 3, S, S) -> float32 on the CPU."""
    was_training = G.training
    G.eval()
    try:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = G(a.to(device).contiguous(memory_format=fmt))
        return out.float().cpu()
    finally:
        G.train(was_training)


def validate(G: nn.Module, val_set: PairedDataset, device, amp_dtype, fmt, batch: int = 8) -> dict:
    """Mean L1, PSNR, SSIM of G (eval mode) over the held-out pairs."""
    sums = {"l1": 0.0, "psnr": 0.0, "ssim": 0.0}
    for i in range(0, len(val_set), batch):
        items = [val_set[j] for j in range(i, min(i + batch, len(val_set)))]
        a = torch.stack([x[0] for x in items])
        b = torch.stack([x[1] for x in items])
        m = image_metrics(generate(G, a, device, amp_dtype, fmt), b)
        for k in sums:
            sums[k] += m[k].sum().item()
    n = len(val_set)
    return {f"val_{k}": round(v / n, 5) for k, v in sums.items()}


def save_grid(G, val_set: PairedDataset, device, amp_dtype, fmt, n: int, path: Path) -> None:
    """PNG: one row per fixed validation pair, sketch | generated | real."""
    import cv2

    from f2f_cam.generator import to_image

    n = min(n, len(val_set))
    items = [val_set[j] for j in range(n)]
    a = torch.stack([x[0] for x in items])
    b = torch.stack([x[1] for x in items])
    fake = generate(G, a, device, amp_dtype, fmt)
    rows = [np.concatenate([to_image(a[i]), to_image(fake[i]), to_image(b[i])], 1) for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.concatenate(rows, 0)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(path.with_name("latest.png")), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def write_logs(run_dir: Path, history: list[dict], plot: bool = True) -> None:
    """metrics.csv (all epochs so far) and metrics.png (losses and validation curves)."""
    fields = list(dict.fromkeys(k for row in history for k in row))
    tmp = run_dir / ".metrics.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(history)
    os.replace(tmp, run_dir / "metrics.csv")
    if plot:
        plot_metrics(history, run_dir / "metrics.png")


def plot_metrics(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key in ("loss_D", "loss_G_gan"):
        axes[0].plot(ep, [r.get(key, math.nan) for r in history], marker=".", label=key)
    axes[0].plot(ep, [r.get("loss_G_l1", math.nan) * 10 for r in history], marker=".", label="loss_G_l1 x10")
    axes[0].set_title("training losses (last step of each epoch)")
    axes[1].plot(ep, [r["val_psnr"] for r in history], marker=".", color="tab:green")
    axes[1].set_title("validation PSNR (dB)")
    axes[2].plot(ep, [r["val_ssim"] for r in history], marker=".", color="tab:purple", label="SSIM")
    axes[2].plot(ep, [r["val_l1"] for r in history], marker=".", color="tab:red", label="L1")
    axes[2].set_title("validation SSIM and L1")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def build_generator_from_checkpoint(ckpt: dict) -> nn.Module:
    """A checkpoint rebuilds its own generator from the config saved with it."""
    c = ckpt["config"]
    G = define_G("unet", size=c["size"], ngf=c["ngf"], n_dropout=3 if c.get("dropout", True) else 0,
                 norm=c.get("norm", "batch"))
    G.load_state_dict(ckpt["G"])
    return G.eval()
