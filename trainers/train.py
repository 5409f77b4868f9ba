"""pix2pix training: U-Net G, PatchGAN D, loss = GAN + lambda * L1.

Reads top to bottom: ``train`` sets a run up (``Trainer.__init__``: data, networks,
optimizers), resumes it, and runs the loop (``Trainer.run``: epochs of steps, each a
discriminator step then a generator step; at each epoch's end validation, sample grid,
logs, checkpoint). Runs on one CPU, one GPU, or many processes under ``torchrun``
(DistributedDataParallel: gloo on CPU, nccl on GPU); rank 0 alone writes checkpoints,
samples and logs. The pieces live beside it: the step (step.py), checkpoints
(checkpoint.py), ranks (distributed.py), validation (evaluate.py), metrics (logs.py).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from f2f_cam import sketch
from f2f_cam.errors import UserError
from trainers import runs
from trainers.checkpoint import (CHECKPOINT_VERSION, build_networks, check_resumable, dataset_facts,
                                 load_checkpoint, restore_rng, rng_states, save_checkpoint)
from trainers.config import TrainConfig, model_args
from trainers.data import PairedDataset
from trainers.distributed import (Dist, broadcast_ints, gather_objects, init_distributed, params_hash, unwrap,
                                  wrap)
from trainers.evaluate import save_grid, validate
from trainers.logs import MetricsLog
from trainers.step import (autocast, default_ndf, default_ngf, ema_decay, ema_update, gan_loss, make_optimizers, pick_precision,
                           precision_name, prepare_models, train_step)

log = logging.getLogger(__name__)

STOP_REASONS = (None, "time budget", "max steps", "interrupted")  # broadcast by index under DDP


def train(cfg: TrainConfig, meta: dict, run_dir: Path, resume: bool = False, progress: bool = True,
          dd: Dist | None = None) -> dict:
    """Train on the dataset ``meta`` (from ``trainers.dataset.load_dataset``) in ``run_dir``.

    Writes checkpoints/last.pt, samples/epoch_NNN.png, metrics.csv and metrics.png.
    ``dd``: this process's place in the run, from ``init_distributed`` (made here when
    not given). Returns facts for the persona: steps, epochs, seconds, device, precision,
    validation metrics, and ``stopped``: "done" | "time budget" | "max steps" | "interrupted".
    """
    if cfg.size != meta["image_size"]:
        raise UserError(f"--size {cfg.size} but the dataset was built at {meta['image_size']} px; "
                        "rebuild it or change --size")
    if resume:
        cfg = _widths_of_checkpoint(cfg, Path(run_dir))
    trainer = Trainer(cfg, meta, Path(run_dir), dd or init_distributed(cfg.device))
    if resume:
        trainer.resume()
    else:
        trainer.start()
    return trainer.run(progress)


def _widths_of_checkpoint(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    """A resumed run's default widths are its checkpoint's, not this machine's: a run begun
    where training runs bf16 (ngf 16, ndf 32) goes on where it runs fp32 (8, 16), as a
    Slurm job requeued on another kind of node does. Widths given are left to
    ``check_resumable`` to compare."""
    path = run_dir / "checkpoints" / "last.pt"
    if (cfg.ngf is not None and cfg.ndf is not None) or not path.exists():
        return cfg
    old = load_checkpoint(path)["config"]
    return dataclasses.replace(cfg, ngf=cfg.ngf if cfg.ngf is not None else old.get("ngf"),
                               ndf=cfg.ndf if cfg.ndf is not None else old.get("ndf"))


def reconstructed(meta: dict) -> np.ndarray:
    """``--recon-share``'s landmarks: every pair's as the expression model redraws them
    (``trainers.export.reconstruct_frames``); a one-line error when the dataset cannot
    make an expression model."""
    from trainers.export import reconstruct_frames

    try:
        return reconstruct_frames(meta)
    except ValueError as e:  # e.g. fewer than 10 frames
        raise UserError(f"--recon-share needs the dataset's expression model, which it cannot make ({e}); "
                        "use --recon-share 0") from None


class Trainer:
    """One run: its data, networks, optimizers and counters."""

    def __init__(self, cfg: TrainConfig, meta: dict, run_dir: Path, dd: Dist):
        self.device = dd.device
        self.amp_dtype = pick_precision(cfg.precision, self.device)  # None: fp32
        if cfg.ngf is None:  # the defaults for this hardware, from here on (checkpoints record them)
            cfg = dataclasses.replace(cfg, ngf=default_ngf(self.device, self.amp_dtype))
        if cfg.ndf is None:
            cfg = dataclasses.replace(cfg, ndf=default_ndf(self.device, self.amp_dtype))
        self.cfg, self.meta, self.run_dir, self.dd = cfg, meta, run_dir, dd
        self.fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.ckpt_path = run_dir / "checkpoints" / "last.pt"
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank

        # Data: DistributedSampler splits the global order across ranks (one rank: all of it).
        self.train_set = PairedDataset(meta, "train", augment=cfg.augment, seed=cfg.seed, jitter=cfg.jitter,
                                       parts=cfg.lambda_parts > 0, face=cfg.lambda_face > 0,
                                       part_squares=cfg.lambda_parts_gan > 0,
                                       recon=reconstructed(meta) if cfg.recon_share > 0 else None,
                                       recon_share=cfg.recon_share)
        self.val_set = PairedDataset(meta, "val")
        if len(self.train_set) < cfg.batch_size * dd.world:
            raise UserError(f"{len(self.train_set)} training pairs are fewer than one global batch "
                            f"({cfg.batch_size} x {dd.world} processes); lower --batch-size or add --frames")
        self.sampler = torch.utils.data.distributed.DistributedSampler(
            self.train_set, num_replicas=dd.world, rank=dd.rank, shuffle=True, seed=cfg.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size
        self.loader_gen = torch.Generator()  # keeps DataLoader from drawing on the global RNG

        # Networks from their constructor arguments (saved in every checkpoint).
        if cfg.sync_bn and self.device.type != "cuda":
            raise UserError("--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm is GPU-only); on CPUs use "
                            "--norm instance for batch-independent normalisation")
        self.model_args = model_args(cfg)
        G, D = build_networks(self.model_args)
        if dd.world > 1 and cfg.sync_bn:  # batch statistics over the global batch
            G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
        self.G, self.D = prepare_models(G, D, self.device, self.amp_dtype)
        # With --ema: the generator that is validated, sampled and exported (same weights to start).
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if cfg.ema else None
        self.base_lr = {"G": cfg.lr, "D": cfg.lr if cfg.lr_d is None else cfg.lr_d}  # the schedules scale these
        self.opt_G, self.opt_D = make_optimizers(self.G, self.D, cfg.lr, cfg.beta1, self.device, self.base_lr["D"])
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.crit = gan_loss(cfg.gan_mode)

        # Where the run is: epoch, the batch to start it at, steps so far, time so far.
        self.epoch, self.skip, self.step, self.seconds_before = 0, 0, 0, 0.0
        self.logs = MetricsLog(run_dir)
        self.last_losses: dict = {}
        self.t0 = time.monotonic()
        self.budget_scale = 1.0  # the time-budget schedule's lr factor, as rank 0 last said
        self.rank_hashes: list[str] | None = None  # every rank's SHA-1 of G at the last checkpoint

    def start(self) -> None:
        """A new run: dropout masks differ per rank, like more data."""
        torch.manual_seed(self.cfg.seed + self.dd.rank)

    def resume(self) -> None:
        """Continue from checkpoints/last.pt: weights, optimizers, counters, RNG, history."""
        if not self.ckpt_path.exists():
            if self.dd.main:
                log.warning("nothing to resume in %s; starting a new run", self.run_dir)
            return self.start()
        ckpt = load_checkpoint(self.ckpt_path)
        check_resumable(ckpt, self.cfg, self.meta["video_sha256"], self.ckpt_path)
        self.G.load_state_dict(ckpt["G"])
        self.D.load_state_dict(ckpt["D"])
        if self.G_ema is not None:  # a run made without --ema: its average starts here
            self.G_ema.load_state_dict(ckpt.get("G_ema", ckpt["G"]))
        self.opt_G.load_state_dict(ckpt["opt_G"])
        self.opt_D.load_state_dict(ckpt["opt_D"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.skip, self.step = ckpt["epoch"], ckpt["step_in_epoch"], ckpt["step"]
        self.seconds_before = ckpt["seconds"]
        self.logs = MetricsLog(self.run_dir, ckpt["history"])
        restore_rng(ckpt, self.device, self.dd)
        if self.dd.main:
            log.info("resuming at epoch %d, step %d", self.epoch + 1, self.step)

    # -- the loop -----------------------------------------------------------------------

    def run(self, progress: bool = True) -> dict:
        """Epochs until the config's end (or a stop: time budget, max steps, Ctrl-C)."""
        from tqdm import tqdm

        cfg = self.cfg
        self.G, self.D = wrap(self.G, self.dd), wrap(self.D, self.dd)  # DDP broadcasts rank 0's weights
        self.t0 = time.monotonic()
        total = None if cfg.epochs is None else cfg.epochs * self.steps_per_epoch
        bar = tqdm(total=total, initial=self.step, unit="step", disable=not (progress and self.dd.main),
                   dynamic_ncols=True)
        stopped = None
        if self.dd.main:
            runs.update(self.run_dir, state="running", epoch=self.epoch, epochs=cfg.epochs, step=self.step,
                        steps=total, world_size=self.dd.world, device=str(self.device))
        beat = runs.Heartbeat(self.run_dir, lambda: {"step": self.step, "epoch": self.epoch}) \
            if self.dd.main else contextlib.nullcontext()
        # Every rank catches the signals (a Slurm job's tasks all get them); rank 0 decides.
        with bar, beat, CtrlC() as ctrl_c:
            while stopped is None and (cfg.epochs is None or self.epoch < cfg.epochs):
                stopped = self.train_epoch(bar, ctrl_c)
        if self.dd.main:
            self.logs.write(plot=True)
        if stopped == "interrupted" and self.dd.main:
            log.warning("interrupted (%s) at epoch %d, step %d; checkpoint saved to %s", ctrl_c.signal,
                        self.epoch + 1, self.step, self.ckpt_path)
        return {**self.result(stopped or "done"), "signal": ctrl_c.signal}

    def train_epoch(self, bar, ctrl_c: CtrlC) -> str | None:
        """The rest of this epoch (from batch ``skip`` when resumed mid-epoch), then its
        end. Returns why the run stops (None: go on)."""
        cfg = self.cfg
        self.sampler.set_epoch(self.epoch)
        self.train_set.set_epoch(self.epoch)
        self.set_lr(lr_factor(cfg, self.epoch) * self.budget_scale)
        loader = torch.utils.data.DataLoader(
            self.train_set, batch_size=cfg.batch_size, sampler=SkipSampler(self.sampler, self.skip * cfg.batch_size),
            num_workers=cfg.workers, drop_last=True, generator=self.loader_gen,
            pin_memory=self.device.type == "cuda")
        bar.set_description(f"epoch {self.epoch + 1}" + (f"/{cfg.epochs}" if cfg.epochs else ""))
        k, stopped = self.skip, None  # k: batches of this epoch done
        for real_A, real_B, *extra in loader:
            # (B, 3, S, S) in [-1, 1]: sketch A, photo B; with --lambda-parts, (B, 1, S, S) the eyes
            # and mouth; with --lambda-face, (B, 3) the face's square; with --lambda-parts-gan,
            # (B, 3, 3) the eyes' and the mouth's
            real_A = real_A.to(self.device, non_blocking=True).contiguous(memory_format=self.fmt)
            real_B = real_B.to(self.device, non_blocking=True).contiguous(memory_format=self.fmt)
            extra = [t.to(self.device, non_blocking=True) for t in extra]
            parts = extra.pop(0) if cfg.lambda_parts > 0 else None
            boxes = extra.pop(0) if cfg.lambda_face > 0 else None
            part_boxes = extra.pop(0) if cfg.lambda_parts_gan > 0 else None
            losses = train_step(self.G, self.D, self.opt_G, self.opt_D, self.scaler, self.crit, real_A, real_B,
                                lambda: autocast(self.device, self.amp_dtype), cfg.lambda_l1, cfg.lambda_feat,
                                parts, cfg.lambda_parts, boxes, cfg.lambda_face, part_boxes, cfg.lambda_parts_gan,
                                cfg.lambda_grid)
            self.step += 1
            k += 1
            if self.G_ema is not None:
                ema_update(self.G_ema, unwrap(self.G), ema_decay(cfg.ema, self.step))
            self.last_losses = {name: v.item() for name, v in losses.items()}
            bar.update(1)
            bar.set_postfix(D=f"{self.last_losses['loss_D']:.3f}", G=f"{self.last_losses['loss_G_gan']:.3f}",
                            L1=f"{self.last_losses['loss_G_l1']:.3f}", refresh=False)
            stopped, factor = self.stop_reason(ctrl_c.pressed)
            if stopped:
                break
            if factor is not None:
                self.budget_scale = factor
                self.set_lr(lr_factor(cfg, self.epoch) * factor)
            if cfg.save_every and self.step % cfg.save_every == 0 and k < self.steps_per_epoch:
                self.checkpoint(self.epoch, k)
        if stopped and k < self.steps_per_epoch:
            self.checkpoint(self.epoch, k)  # mid-epoch: resume continues with batch k
            return stopped
        self.skip = 0
        if self.dd.main:
            self.end_epoch(bar)
        self.epoch += 1
        self.checkpoint(self.epoch, 0)
        return stopped

    def end_epoch(self, bar) -> None:
        """Rank 0, after an epoch's last step: validate, log, sample grid."""
        metrics = validate(self.shown_G, self.val_set, self.device, self.amp_dtype, self.fmt)
        self.logs.add({"epoch": self.epoch + 1, "step": self.step, "seconds": round(self.seconds, 1),
                       "lr": self.opt_G.param_groups[0]["lr"], **self.last_losses, **metrics})
        save_grid(self.shown_G, self.val_set, self.device, self.amp_dtype, self.fmt, self.cfg.val_samples,
                  self.run_dir / "samples" / f"epoch_{self.epoch + 1:03d}.png")
        runs.update(self.run_dir, epoch=self.epoch + 1, step=self.step, val=metrics,
                    samples=str(self.run_dir / "samples" / f"epoch_{self.epoch + 1:03d}.png"))
        bar.write(f"epoch {self.epoch + 1}: val L1 {metrics['val_l1']:.4f}, PSNR {metrics['val_psnr']:.2f} dB, "
                  f"SSIM {metrics['val_ssim']:.3f}")

    def set_lr(self, factor: float) -> None:
        """Both optimisers at ``factor`` times their configured rates (the schedules' factor)."""
        for opt, lr in ((self.opt_G, self.base_lr["G"]), (self.opt_D, self.base_lr["D"])):
            for g in opt.param_groups:
                g["lr"] = lr * factor

    def stop_reason(self, interrupted: bool) -> tuple[str | None, float | None]:
        """Why to stop now, and the budget schedule's lr factor (None: no budget
        schedule), agreed by all ranks (rank 0 decides)."""
        cfg, reason = self.cfg, 0
        if cfg.max_steps is not None and self.step >= cfg.max_steps:
            reason = 2
        elif cfg.minutes is not None and time.monotonic() - self.t0 >= cfg.minutes * 60:
            reason = 1
        elif interrupted:
            reason = 3
        scheduled = cfg.minutes is not None and cfg.decay_share > 0
        reason, micro = broadcast_ints([reason, round(budget_factor(cfg, time.monotonic() - self.t0) * 1e6)], self.dd)
        return STOP_REASONS[reason], micro / 1e6 if scheduled else None

    @property
    def shown_G(self) -> nn.Module:
        """The generator the run is judged by and exports: the average with --ema."""
        return unwrap(self.G) if self.G_ema is None else self.G_ema

    @property
    def seconds(self) -> float:
        """Training time over all sessions of this run."""
        return self.seconds_before + time.monotonic() - self.t0

    # -- checkpoints and the result ---------------------------------------------------------

    def checkpoint(self, epoch: int, k: int) -> None:
        """Save the run as at batch ``k`` of ``epoch``. Every rank calls it (its state
        gathers all ranks' RNG); rank 0 writes."""
        state = self.state(epoch, k)
        self.rank_hashes = state["rank_G_sha1"]
        if self.dd.main:
            save_checkpoint(self.ckpt_path, state)
            runs.update(self.run_dir, step=self.step, checkpoint_step=self.step,
                        ranks_in_sync=len(set(self.rank_hashes)) == 1)

    def state(self, epoch: int, k: int) -> dict:
        G = unwrap(self.G)
        return {
            "version": CHECKPOINT_VERSION, "sketch_version": sketch.SKETCH_VERSION,
            "config": dataclasses.asdict(self.cfg), "model_args": self.model_args,
            "G": G.state_dict(), "D": unwrap(self.D).state_dict(),
            **({"G_ema": self.G_ema.state_dict()} if self.G_ema is not None else {}),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "epoch": epoch, "step_in_epoch": k, "step": self.step, "seconds": self.seconds,
            **rng_states(self.device, self.dd),
            "history": self.logs.history, "world_size": self.dd.world, "device": str(self.device),
            "rank_G_sha1": gather_objects(params_hash(G), self.dd),  # DDP keeps ranks identical: recorded to check
            "precision": precision_name(self.amp_dtype),
            **dataset_facts(self.meta),
        }

    def result(self, stopped: str) -> dict:
        final = self.logs.history[-1] if self.logs.history else {}
        if self.dd.main and not final:  # stopped before the first epoch ended: still measure it
            final = validate(self.shown_G, self.val_set, self.device, self.amp_dtype, self.fmt)
        return {
            "stopped": stopped, "steps": self.step, "epochs": self.epoch, "seconds": round(self.seconds, 1),
            "device": str(self.device), "precision": precision_name(self.amp_dtype),
            "world_size": self.dd.world, "checkpoint": str(self.ckpt_path),
            "rank_G_sha1": self.rank_hashes,
            **{k: final[k] for k in ("val_l1", "val_psnr", "val_ssim") if k in final},
        }


def budget_factor(cfg: TrainConfig, elapsed_s: float) -> float:
    """The time-budget schedule: 1, then down linearly to 0 over the last
    ``decay_share`` of ``minutes`` (1 without a budget or decay)."""
    if cfg.minutes is None or not cfg.decay_share:
        return 1.0
    left = 1.0 - elapsed_s / (cfg.minutes * 60)
    return float(min(1.0, max(left, 0.0) / cfg.decay_share))


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """Constant, then linear decay to 0 over the last ``decay_epochs`` epochs."""
    if not cfg.decay_epochs or not cfg.epochs:
        return 1.0
    start = cfg.epochs - cfg.decay_epochs
    return 1.0 - max(0, epoch - start) / (cfg.decay_epochs + 1)


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


class CtrlC:
    """Ctrl-C, SIGTERM (``kill``, ``scancel``, a preemption) or SIGUSR1 (Slurm's warning
    before a time limit, ``--signal``) sets ``pressed`` instead of raising, so the loop
    finishes its step, saves, and says how to resume; ``signal`` says which came. Every
    rank listens (a signal reaches all of a job's processes; none may die of it), rank
    0's decision is broadcast; only the main thread can."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.pressed = False
        self.signal: str | None = None  # "SIGINT" | "SIGTERM" | "SIGUSR1", once pressed
        self._old: dict = {}

    pending: str | None = None  # a signal that came before the loop started (``catch_early``)

    def __enter__(self) -> CtrlC:
        if self.enabled:
            self._old = {sig: signal.signal(sig, self._press) for sig in self.SIGNALS}
            if CtrlC.pending:
                self.pressed, self.signal = True, CtrlC.pending
        return self

    @classmethod
    def catch_early(cls) -> None:
        """A Slurm job's SIGUSR1 or SIGTERM before the loop starts (loading, the
        dataset) is kept for it instead of killing the process."""
        def early(signum, _frame):
            cls.pending = cls.pending or signal.Signals(signum).name

        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, early)

    def _press(self, signum, _frame) -> None:
        self.pressed = True
        self.signal = self.signal or signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
