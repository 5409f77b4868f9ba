"""Training speed: images/s of a pix2pix step, ours against the reference way.

The reference implementation (pytorch-CycleGAN-and-pix2pix) runs an eager fp32 step on
NCHW tensors with torch.optim.Adam's defaults, in a plain Python process. Ours runs
the same networks and the same step the way ``f2f-cam train`` does: channels-last
activations, bf16 autocast where the CPU (AVX512-BF16/AMX) or GPU has it, GEMM
convolutions where oneDNN's bf16 ones are slow (trainers/fastconv.py), the fused Adam
kernel, and glibc's allocator told to keep freed memory (``tune_malloc``).

Each setting runs in a fresh process, so none inherits another's heap, threads or
allocator setting. The reference is measured twice: as it runs, and with our
allocator setting too, so the speed-up owed to the allocator alone is visible. The
last rows add the losses `f2f-cam train` uses by default (the face discriminator of
``--lambda-face``, the eyes' and mouth's L1 of ``--lambda-parts``): not the reference's
networks, but what a default step costs.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass

import torch

from f2f_cam.system import native_bf16
from trainers.networks import define_D, define_G
from trainers.step import gan_loss, make_optimizers, prepare_models, train_step, tune_malloc


@dataclass(frozen=True)
class Mode:
    name: str
    ours: bool  # our engine: fused Adam, contiguous parameters, GEMM convolutions where worthwhile
    channels_last: bool
    amp_dtype: torch.dtype | None
    tuned_malloc: bool
    default_losses: bool = False  # train's default losses: the face discriminator and the parts' L1


REFERENCE = "reference: eager fp32, NCHW"
MODES = (
    Mode(REFERENCE, False, False, None, False),
    Mode("reference + tuned allocator", False, False, None, True),
    Mode("ours, fp32", True, True, None, True),
    Mode("ours, bf16", True, True, torch.bfloat16, True),
    # Not the reference's networks and losses: what `f2f-cam train` runs by default, so
    # that its cost beside the rows above is in the same table.
    Mode("ours, fp32, train's defaults", True, True, None, True, default_losses=True),
    Mode("ours, bf16, train's defaults", True, True, torch.bfloat16, True, default_losses=True),
)


def time_steps(mode: Mode, ngf: int, size: int, batch_size: int, steps: int, device: str = "cpu") -> float:
    """Seconds per training step (the median of ``steps``, after two warm-up steps), in
    this process as it is (see ``_measure`` for the allocator)."""
    torch.manual_seed(0)
    dev = torch.device(device)
    fmt = torch.channels_last if mode.channels_last else torch.contiguous_format
    G = define_G("unet", size=size, ngf=ngf)
    D = define_D("face", ndf=64, crop=size // 2) if mode.default_losses else define_D("patch", ndf=64)
    if mode.ours:
        G, D = prepare_models(G, D, dev, mode.amp_dtype)
        opt_G, opt_D = make_optimizers(G, D, 2e-4, 0.5, dev)
    else:  # as the reference builds them
        G, D = G.to(dev), D.to(dev)
        opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    scaler = torch.amp.GradScaler(device, enabled=False)
    a = (torch.rand(batch_size, 3, size, size, device=dev) * 2 - 1).contiguous(memory_format=fmt)
    b = (torch.rand(batch_size, 3, size, size, device=dev) * 2 - 1).contiguous(memory_format=fmt)
    # A face of half the image's side in its middle, as trainers.data.face_box gives it,
    # and its eyes and mouth: 2.5 % of the image, as trainers.data.parts_mask marks them.
    boxes = parts = None
    if mode.default_losses:
        boxes = torch.tensor([[0.0, 0.0, 0.5]], device=dev).expand(batch_size, 3)
        parts = (torch.rand(batch_size, 1, size, size, device=dev) < 0.025).float()
    amp = mode.amp_dtype
    autocast = lambda: torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None)  # noqa: E731
    crit = gan_loss("vanilla")
    times = []
    for _ in range(steps + 2):
        t = time.perf_counter()
        train_step(G, D, opt_G, opt_D, scaler, crit, a, b, autocast, 100.0, parts=parts,
                   lambda_parts=0.5 if mode.default_losses else 0.0, boxes=boxes,
                   lambda_face=1.0 if mode.default_losses else 0.0)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times[2:])


def _measure(mode: Mode, *args) -> float:
    """time_steps in a fresh process, with the mode's allocator setting."""
    if mode.tuned_malloc:
        tune_malloc()
    return time_steps(mode, *args)


def _in_fresh_process(fn, *args):
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def bench_training(size: int = 256, batch_size: int = 4, ngfs=(64, 32), steps: int = 8,
                   progress: bool = True) -> list[dict]:
    """One row per (ngf, mode): seconds/step, images/s, speed-up over the reference
    (as it runs, and with the same allocator setting as ours)."""
    from tqdm import tqdm

    modes = [m for m in MODES if m.amp_dtype is None or native_bf16("cpu")]
    rows = []
    todo = [(ngf, m) for ngf in ngfs for m in modes]
    for ngf, mode in tqdm(todo, desc="bench", disable=not progress):
        sec = _in_fresh_process(_measure, mode, ngf, size, batch_size, steps)
        rows.append({"ngf": ngf, "mode": mode.name, "size": size, "batch_size": batch_size,
                     "s_per_step": round(sec, 3), "images_per_s": round(batch_size / sec, 2)})
    for r in rows:
        same = [x for x in rows if x["ngf"] == r["ngf"]]
        ref = next(x for x in same if x["mode"] == REFERENCE)
        ref_tuned = next(x for x in same if x["mode"] == MODES[1].name)
        r["speedup"] = round(r["images_per_s"] / ref["images_per_s"], 2)
        r["speedup_vs_tuned_reference"] = round(r["images_per_s"] / ref_tuned["images_per_s"], 2)
    return rows


def format_table(rows: list[dict]) -> str:
    out = [f"{'ngf':>4}  {'mode':<29} {'s/step':>7} {'images/s':>9} {'vs reference':>13} {'vs ref+alloc':>13}"]
    for r in rows:
        out.append(f"{r['ngf']:>4}  {r['mode']:<29} {r['s_per_step']:>7.3f} {r['images_per_s']:>9.2f} "
                   f"{r['speedup']:>12.2f}x {r['speedup_vs_tuned_reference']:>12.2f}x")
    out.append(f"({rows[0]['size']} px, batch {rows[0]['batch_size']}, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()})")
    return "\n".join(out)
