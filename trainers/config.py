"""Training settings: one frozen dataclass that checks itself, and the networks it asks for.

Imports no torch, so ``f2f-cam train`` rejects a bad option at once. The CLI, tests and
``trainers.recipe.train_persona`` all build a ``TrainConfig``, so a bad value gives
the same one-line ``UserError`` whichever way it came in.
"""

from __future__ import annotations

from dataclasses import dataclass

from f2f_cam.errors import UserError
from f2f_cam.persona import IMAGE_SIZES
from f2f_cam.registry import TRAIN_PRECISIONS, check_device

PRECISIONS = TRAIN_PRECISIONS.names()  # auto | fp32 | bf16 | fp16
GAN_MODES = ("vanilla", "lsgan")
STUDENT_CHOICES = ("auto", "yes", "no")
NORMS = ("batch", "instance")
# Config fields that change the networks or the loss: a checkpoint made with other
# values cannot resume.
ARCH_FIELDS = ("size", "ngf", "ndf", "norm", "gan_mode", "dropout", "num_D", "lambda_feat", "lambda_face", "lambda_parts_gan", "blur_up", "resize_up")
N_DROPOUT = 3  # decoder blocks with dropout when ``dropout`` is on (pix2pix)
D_LAYERS = 3  # PatchGAN depth: a 70x70 receptive field


@dataclass(frozen=True)
class TrainConfig:
    # The defaults are what scored best on bench --quality in a 15-minute budget on a
    # 2-core CPU (README, "Training options tried"): 512 px for the pixels where the face
    # is, a narrow generator so that 512 px still runs in real time, instance norm.
    size: int = 512  # image size (px); the dataset must have been built at this size
    # Generator base filters (64: the paper's). None: 16 where the step runs bf16 or on a
    # GPU, 8 where it runs fp32 on a CPU (trainers.step.default_ngf; README, "Training
    # options tried"); a resumed run keeps its checkpoint's.
    ngf: int | None = None
    # Discriminator base filters (64: the paper's). None: 32, or 16 where the step runs
    # fp32 on a CPU (no native bf16), where the discriminator is most of a step
    # (trainers.step.default_ndf; README, "Training options tried"); a resumed run keeps
    # its checkpoint's.
    ndf: int | None = None
    norm: str = "instance"  # instance (per image; DDP on CPUs then equals one process) | batch (pix2pix)
    epochs: int | None = 30  # passes over the training pairs (None: until --minutes)
    minutes: float | None = None  # time budget: stop cleanly at it (checkpoint, then export)
    batch_size: int = 4  # per process
    lr: float = 1e-3  # the generator's Adam rate: 5x pix2pix's 2e-4 (measured: README, "Training options tried")
    lr_d: float | None = 2e-4  # the discriminator's (pix2pix's); None: the same as lr
    beta1: float = 0.5
    lambda_l1: float = 100.0  # weight of L1 against the GAN loss (pix2pix)
    gan_mode: str = "vanilla"  # vanilla (BCE with logits) | lsgan (MSE)
    num_D: int = 1  # discriminator scales: 1 is pix2pix's PatchGAN, 2+ pix2pixHD's multi-scale D
    lambda_feat: float = 0.0  # pix2pixHD's discriminator feature matching (10 in the paper; 0: off)
    lambda_parts: float = 0.5  # extra L1 on the eyes and mouth, times lambda_l1 (0: off)
    # A second PatchGAN on the face square alone (trainers.networks.FaceDiscriminator);
    # its GAN loss in G's is weighted this much (0: no face discriminator). 1: sharper
    # faces on both real clips in the same 30 minutes (README, "Training options tried").
    lambda_face: float = 1.0
    # A third PatchGAN on each eye's and the mouth's square (Head2Head's mouth
    # discriminator); its GAN loss in G's is weighted this much (0: none).
    lambda_parts_gan: float = 0.0
    # An L1 on the checkerboard of the transposed convolutions (trainers.step.grid_l1), times
    # lambda_l1 (0: off).
    lambda_grid: float = 0.0
    decay_epochs: int = 0  # linear lr decay to 0 over the last N epochs (0: constant lr)
    decay_share: float = 0.0  # with minutes: linear lr decay to 0 over this last share of the budget
    dropout: bool = True  # dropout in the first decoder blocks (pix2pix's noise)
    # The generator's last this many upsamplings each followed by a fixed low-pass
    # (trainers.networks.Blur) against the transposed convolutions' checkerboard (0: none).
    blur_up: int = 0
    # The generator's last this many upsamplings as resize-convolutions (nearest 2x, then
    # 3x3), tied into the 4x4 transposed convolutions they equal (0: none; the default 2
    # removes the fine checkerboard on hair and forehead at no run-time cost).
    resize_up: int = 2
    # Validate and export an exponential moving average of the generator's weights, with
    # this decay per step (0: the last weights, as pix2pix). It costs no training step
    # and no run-time; on d6 it drew a cleaner face than the same run's last weights.
    ema: float = 0.995
    augment: bool = True  # same small rotation/scale/shift on sketch and photo
    jitter: float = 0.0  # landmark noise (px at 256 px) on the sketch only, with augment (0: off)
    # The share of training sketches drawn from the expression model's redrawing of each
    # frame's landmarks (trainers.export.reconstruct_frames) instead of the real ones.
    recon_share: float = 0.0
    save_every: int = 500  # steps between checkpoints (also one at every epoch end; 0: only those)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (auto: bf16 where the hardware has it)
    channels_last: bool = True  # NHWC activations (parameters stay contiguous): faster convolutions
    workers: int = 0  # DataLoader worker processes (0: load in the main process)
    sync_bn: bool = False  # SyncBatchNorm across DDP processes (batch statistics over the global batch)
    seed: int = 0
    val_samples: int = 4  # validation pairs shown in the per-epoch sample grid
    max_steps: int | None = None  # stop after this many steps in total (tests, smoke runs)
    # A real-time student (trainers.distill): "auto" distils one when the generator takes
    # more than 30 fps allows on this machine's CPU; it trains student_minutes more.
    student: str = "auto"
    student_minutes: float = 8.0
    student_steps: int | None = None  # stop the student after this many steps (tests)

    def __post_init__(self):
        _choice("size", self.size, IMAGE_SIZES)
        _choice("norm", self.norm, NORMS)
        _choice("gan_mode", self.gan_mode, GAN_MODES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("student", self.student, STUDENT_CHOICES)
        check_device(self.device)
        for name in ("ngf", "ndf", "batch_size", "epochs", "max_steps", "val_samples", "num_D", "student_steps"):
            _at_least(name, getattr(self, name), 1)
        for name in ("blur_up", "resize_up", "decay_epochs", "save_every", "workers", "lambda_l1", "lambda_feat", "lambda_parts", "lambda_face",
                     "lambda_parts_gan", "lambda_grid", "jitter"):
            _at_least(name, getattr(self, name), 0)
        for name in ("lr", "lr_d", "minutes", "student_minutes"):
            value = getattr(self, name)
            if value is not None and not value > 0:  # also refuses NaN
                raise UserError(f"invalid {_flag(name)} {value!r}: must be more than 0")
        if not 0 <= self.ema < 1:  # also refuses NaN
            raise UserError(f"invalid {_flag('ema')} {self.ema!r}: must be in [0, 1), e.g. 0.995 (0: off)")
        for name in ("decay_share", "recon_share"):
            if not 0 <= getattr(self, name) <= 1:  # also refuses NaN
                raise UserError(f"invalid {_flag(name)} {getattr(self, name)!r}: must be from 0 to 1")
        if not 0 <= self.beta1 < 1:
            raise UserError(f"invalid {_flag('beta1')} {self.beta1!r}: must be in [0, 1)")
        if self.epochs is None and self.minutes is None and self.max_steps is None:
            raise UserError("give --epochs or --minutes (or both)")


def model_args(cfg: TrainConfig) -> dict:
    """The networks' constructor arguments, saved in every checkpoint (nanoGPT's
    ``model_args``): ``checkpoint.build_networks`` rebuilds G and D from them alone."""
    return {
        "G": {"kind": "unet", "size": cfg.size, "ngf": cfg.ngf,
              "n_dropout": N_DROPOUT if cfg.dropout else 0, "norm": cfg.norm,
              **({"blur_up": cfg.blur_up} if cfg.blur_up else {}),
              **({"resize_up": cfg.resize_up} if cfg.resize_up else {})},
        "D": _discriminator_args(cfg),
    }


def _discriminator_args(cfg: TrainConfig) -> dict:
    """pix2pix's PatchGAN; pix2pixHD's multi-scale one for more scales or feature
    matching; either with a face discriminator beside it for ``lambda_face`` and a parts
    discriminator for ``lambda_parts_gan``."""
    args = {"ndf": cfg.ndf, "n_layers": D_LAYERS, "norm": cfg.norm}
    if cfg.lambda_face > 0 or cfg.lambda_parts_gan > 0:
        # The face's crop is half the image, about a face's width (trainers.data.face_box),
        # so it sees the face near its own pixels; the parts' a quarter: an eye's square
        # (1.6 eye widths, ~64 px at 512) a little enlarged, the mouth's about at its own;
        # at least 32 px, which the PatchGAN's three strides still leave 2 x 2 verdicts of.
        return {"kind": "face", **args, "num_D": cfg.num_D, "features": cfg.lambda_feat > 0, "crop": cfg.size // 2,
                **({"parts_crop": max(cfg.size // 4, 32)} if cfg.lambda_parts_gan > 0 else {}),
                **({} if cfg.lambda_face > 0 else {"face": False})}
    if cfg.num_D == 1 and cfg.lambda_feat == 0:
        return {"kind": "patch", **args}
    return {"kind": "multiscale", **args, "num_D": cfg.num_D}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-").lower()


def _choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise UserError(f"invalid {_flag(name)} {value!r}; choose one of: {', '.join(map(str, choices))}")


def _at_least(name: str, value, low: int) -> None:
    if value is not None and not value >= low:
        raise UserError(f"invalid {_flag(name)} {value!r}: must be at least {low}")
