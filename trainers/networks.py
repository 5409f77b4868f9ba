"""pix2pix networks (Isola et al. 2017): the U-Net generator and the PatchGAN discriminator.

Only module definitions live here; the training loop and export are elsewhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SIZES = (64, 128, 256, 512)  # image sizes the U-Net is built for (powers of two)
INNER_SIZES = (32, *SIZES)  # also inside a student of a 64 px persona


def norm_layer(kind: str):
    """BatchNorm (pix2pix's default) or InstanceNorm (per image: batch-size and
    process-count independent, so a DDP run on CPUs equals a single process)."""
    if kind == "batch":
        return nn.BatchNorm2d
    if kind == "instance":
        return lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    raise ValueError(f"unknown norm {kind!r}; choose one of: batch, instance")


class _CatDenseGrad(torch.autograd.Function):
    """torch.cat on channels whose backward hands each input a dense gradient.

    Plain cat's backward gives channel slices, which on a channels-last tensor are
    strided; BatchNorm's backward then takes a slow path (31 ms instead of 4 on the
    64-channel 128x128 block). Only the memory layout differs, not the values.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.split = a.shape[1]
        return torch.cat([a, b], 1)

    @staticmethod
    def backward(ctx, g):
        fmt = torch.channels_last if g.dim() == 4 and not g.is_contiguous() else torch.contiguous_format
        k = ctx.split
        return g[:, :k].contiguous(memory_format=fmt), g[:, k:].contiguous(memory_format=fmt)


def cat_skip(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """The U-Net's skip join; the dense-gradient form only when training (the export
    traces plain torch.cat)."""
    if torch.is_grad_enabled() and (x.requires_grad or skip.requires_grad):
        return _CatDenseGrad.apply(x, skip)
    return torch.cat([x, skip], 1)


class Blur(nn.Module):
    """A fixed [1, 2, 1] x [1, 2, 1] / 16 low-pass over each channel (edges repeated): after
    a stride-2 transposed convolution it removes the 2-pixel checkerboard that such a layer
    draws (zero response at that period), as anti-aliased upsampling does (StyleGAN2's
    upfirdn). No parameters; its kernel is a buffer, so it travels with the network."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (torch.outer(k, k) / 16).expand(channels, 1, 3, 3).contiguous())
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.kernel.to(x.dtype), groups=self.channels)


# Resize-convolution as a transposed convolution: nearest-neighbour 2x then a 3x3
# convolution (padding 1) gives each output pixel's 2 x 2 input neighbours, per axis, the
# weights M @ w of the 3 taps w: exactly what a 4x4 stride-2 transposed convolution
# (padding 1) computes with the kernel M w M^T. Rows: the kernel's 4 taps.
_RESIZE_TAPS = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))


class ResizeConvTranspose2d(nn.Module):
    """A 4x4 stride-2 transposed convolution whose kernel is tied to a 3x3 one, so that it
    computes nearest-neighbour 2x upsampling followed by that 3x3 convolution (Odena et
    al.'s resize-convolution): its four output phases see the same weights in sum, so a
    smooth input gives a smooth output and it cannot draw a free transposed convolution's
    checkerboard. Trained as such (9 weights per channel pair where the free one has 16);
    ``plain()`` is the ordinary ``nn.ConvTranspose2d`` it equals, for export: at run time
    it costs exactly what the layer it replaces did."""

    def __init__(self, c_in: int, c_out: int, bias: bool = True):
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.weight = nn.Parameter(torch.empty(c_in, c_out, 3, 3))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        nn.init.normal_(self.weight, 0.0, 0.02)
        self.register_buffer("taps", torch.tensor(_RESIZE_TAPS), persistent=False)

    def kernel(self) -> torch.Tensor:
        """(c_in, c_out, 4, 4): the transposed convolution's kernel."""
        return torch.einsum("ap,bq,iopq->ioab", self.taps, self.taps, self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.kernel(), self.bias, stride=2, padding=1)

    def plain(self) -> nn.ConvTranspose2d:
        layer = nn.ConvTranspose2d(self.c_in, self.c_out, 4, 2, 1, bias=self.bias is not None)
        with torch.no_grad():
            layer.weight.copy_(self.kernel())
            if self.bias is not None:
                layer.bias.copy_(self.bias)
        return layer.to(self.weight.device, self.weight.dtype)


def fold_resize(net: nn.Module) -> nn.Module:
    """Replace every ``ResizeConvTranspose2d`` in ``net`` by the plain transposed
    convolution it equals (in place; returns ``net``)."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ResizeConvTranspose2d):
                setattr(parent, name, child.plain())
    return net


def _up(c_in: int, c_out: int, resize: bool, bias: bool) -> nn.Module:
    return ResizeConvTranspose2d(c_in, c_out, bias) if resize else nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)


class UnetGenerator(nn.Module):
    """The pix2pix U-Net: encoder C64-C128-C256-C512-C512-..., mirrored decoder with
    skip connections, BatchNorm, dropout in the first decoder blocks, tanh output.

    It downsamples log2(size) times, to a 1x1 bottleneck (8 times at 256 px).
    Input and output: (N, 3, size, size) in [-1, 1]. ``blur_up``: the last this many
    upsamplings (the output layer's first) are followed by a fixed ``Blur`` (0: none, as
    in pix2pix); ``resize_up``: the last this many are resize-convolutions
    (``ResizeConvTranspose2d``; 0: none).
    """

    def __init__(self, size: int = 256, ngf: int = 64, in_ch: int = 3, out_ch: int = 3,
                 n_dropout: int = 3, norm: str = "batch", blur_up: int = 0, resize_up: int = 0):
        super().__init__()
        Norm = norm_layer(norm)
        if size not in INNER_SIZES:
            raise ValueError(f"unknown image size {size}; choose one of: {', '.join(map(str, SIZES))}")
        n = int(math.log2(size))
        chans = [ngf * min(2 ** i, 8) for i in range(n)]  # e.g. 64,128,256,512,512,512,512,512

        self.down = nn.ModuleList()
        for i in range(n):
            c_in = in_ch if i == 0 else chans[i - 1]
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(c_in, chans[i], 4, 2, 1, bias=False if 0 < i < n - 1 else True))
            # No norm on the first layer (paper) nor on the 1x1 bottleneck, where
            # BatchNorm over one pixel and a small batch is meaningless.
            if 0 < i < n - 1:
                layers.append(Norm(chans[i]))
            self.down.append(nn.Sequential(*layers))

        self.up = nn.ModuleList()
        for j, i in enumerate(reversed(range(1, n))):  # decoder block j produces chans[i-1]
            c_in = chans[i] if j == 0 else chans[i] * 2  # bottleneck alone, then concat skip
            layers = [nn.ReLU(), _up(c_in, chans[i - 1], n - 1 - j < resize_up, bias=False)]
            if n - 1 - j < blur_up:  # block j is the (n - 1 - j)-th upsampling from the output, counting the output's as 0
                layers.append(Blur(chans[i - 1]))
            layers.append(Norm(chans[i - 1]))
            if j < n_dropout:
                layers.append(nn.Dropout(0.5))
            self.up.append(nn.Sequential(*layers))
        final = [nn.ReLU(), _up(chans[0] * 2, out_ch, resize_up > 0, bias=True)]
        self.final = nn.Sequential(*final, *([Blur(out_ch)] if blur_up > 0 else []), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        # skips[-1] is the bottleneck x itself; decoder block j joins skips[-2-j].
        for j, block in enumerate(self.up):
            x = block(x if j == 0 else cat_skip(x, skips[len(skips) - 1 - j]))
        return self.final(cat_skip(x, skips[0]))


class NLayerDiscriminator(nn.Module):
    """PatchGAN: classifies overlapping patches as real or fake (70x70 receptive field
    with n_layers=3), on the 6-channel (sketch | photo) pair.

    C64-C128-C256-C512 (4x4 convs, stride 2 then 1), BatchNorm except on the first,
    LeakyReLU 0.2, then a 1-channel conv: (N, 6, S, S) -> (N, 1, S/8 - 2, S/8 - 2) logits.
    """

    def __init__(self, in_ch: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        Norm = norm_layer(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # the last block keeps the resolution
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                       Norm(ndf * mult), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's activation (after each LeakyReLU), then the logits: what
        pix2pixHD's feature-matching loss compares between real and fake pairs."""
        out = []
        for layer in self.model:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU) or layer is self.model[-1]:
                out.append(x)
        return out


class MultiscaleDiscriminator(nn.Module):
    """pix2pixHD's discriminator: ``num_D`` PatchGANs on the pair at full, half, quarter
    ... resolution (3x3 average pooling, stride 2, between scales), so one sees fine
    texture and another the face's layout.

    (N, 6, S, S) -> a list of ``num_D`` per-scale lists of features, each ending in that
    scale's logits (N, 1, h, w).
    """

    def __init__(self, in_ch: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch", num_D: int = 2):
        super().__init__()
        self.scales = nn.ModuleList(NLayerDiscriminator(in_ch, ndf, n_layers, norm) for _ in range(num_D))
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = self.down(x)
            out.append(d.features(x))
        return out


def crop_faces(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's face square resampled to ``size`` x ``size`` (bilinear, differentiable):
    x (N, C, S, S); boxes (N, 3) as (centre x, centre y, half side) in the image's
    [-1, 1] coordinates (``trainers.data.face_box``). Outside the image: zeros."""
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, dtype=torch.float32, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = boxes[:, 2]
    theta[:, :, 2] = boxes[:, :2]
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False).to(x.dtype)


class FaceDiscriminator(nn.Module):
    """The whole-image discriminator plus a PatchGAN of its own on the face: Everybody
    Dance Now's face GAN, Head2Head's mouth discriminator. The whole image's PatchGAN
    sees 70 px patches of a 512 px frame, most of them hair, clothes and room; this one
    sees only the face square (``crop_faces``, at ``crop`` px), so more of the
    adversarial signal is about skin, eyes and teeth. With ``parts_crop`` > 0 a third
    PatchGAN sees each eye's and the mouth's square alone (``trainers.data.part_boxes``,
    at ``parts_crop`` px; one network for the three), as Head2Head's mouth
    discriminator does; ``face=False`` leaves the face's out.

    ``forward(x)``: the whole-image D's output (a ``MultiscaleDiscriminator``'s with
    ``num_D`` > 1 or ``features``, for feature matching); ``forward(x, boxes, parts)``:
    (that, the face D's logits on the ``boxes``' (N, 3) crops or None, the parts D's on
    the ``parts``' (N, K, 3) crops, image by image, or None) for the same (sketch |
    photo) pairs.
    """

    def __init__(self, in_ch: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch", num_D: int = 1,
                 features: bool = False, crop: int = 256, parts_crop: int = 0, face: bool = True):
        super().__init__()
        self.whole = (MultiscaleDiscriminator(in_ch, ndf, n_layers, norm, num_D) if num_D > 1 or features
                      else NLayerDiscriminator(in_ch, ndf, n_layers, norm))
        self.face = NLayerDiscriminator(in_ch, ndf, n_layers, norm) if face else None
        self.parts = NLayerDiscriminator(in_ch, ndf, n_layers, norm) if parts_crop > 0 else None
        self.crop, self.parts_crop = crop, parts_crop

    def forward(self, x: torch.Tensor, boxes: torch.Tensor | None = None, parts: torch.Tensor | None = None):
        whole = self.whole(x)
        if boxes is None and parts is None:
            return whole
        face = self.face(crop_faces(x, boxes, self.crop)) if boxes is not None and self.face is not None else None
        if parts is None or self.parts is None:
            return whole, face, None
        # (N, K, 3) boxes -> (N * K) crops, image by image, one pass through the parts D.
        crops = torch.stack([crop_faces(x, parts[:, k], self.parts_crop) for k in range(parts.shape[1])], 1)
        return whole, face, self.parts(crops.flatten(0, 1))


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix init: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, ResizeConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class StudentGenerator(nn.Module):
    """A cheaper stand-in for a persona's U-Net, distilled from it (``trainers.distill``):
    the image folded ``factor`` x ``factor`` into channels (pixel unshuffle), a U-Net at
    1/factor of the size on those channels, unfolded back. Same contract as the U-Net:
    (N, 3, size, size) in [-1, 1] -> the same.

    The full-size U-Net's outer layers run 3-16 channels over 256x256 and 512x512
    pixels, where a CPU's vector units are mostly idle; folded, the same pixels arrive
    as 12 channels at half the size, and the network has one level less.
    """

    def __init__(self, size: int = 512, ngf: int = 16, factor: int = 2, norm: str = "instance", **_):
        super().__init__()
        if size // factor not in INNER_SIZES or size % factor:
            raise ValueError(f"a student of a {size} px generator cannot fold by {factor}")
        self.size, self.factor = size, factor
        self.args = {"kind": "student", "size": size, "ngf": ngf, "factor": factor, "norm": norm}  # to rebuild it
        self.fold, self.unfold = nn.PixelUnshuffle(factor), nn.PixelShuffle(factor)
        ch = 3 * factor * factor
        self.unet = UnetGenerator(size // factor, ngf, in_ch=ch, out_ch=ch, n_dropout=0, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unfold(self.unet(self.fold(x)))


GENERATORS = {"unet": UnetGenerator, "student": StudentGenerator}


DISCRIMINATORS = {"patch": NLayerDiscriminator, "multiscale": MultiscaleDiscriminator, "face": FaceDiscriminator}


def define_D(name: str = "patch", ndf: int = 64, n_layers: int = 3, in_ch: int = 6,
             norm: str = "batch", **kwargs) -> nn.Module:
    """Build and initialise a discriminator by name; unknown names fail with the choices.
    ``multiscale`` takes ``num_D``; ``face`` takes ``num_D`` and ``crop``."""
    if name not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {name!r}; choose one of: {', '.join(DISCRIMINATORS)}")
    net = DISCRIMINATORS[name](in_ch=in_ch, ndf=ndf, n_layers=n_layers, norm=norm, **kwargs)
    init_weights(net)
    return net


def define_G(name: str = "unet", size: int = 256, ngf: int = 64, **kwargs) -> nn.Module:
    """Build and initialise a generator by name; unknown names fail with the choices."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose one of: {', '.join(GENERATORS)}")
    net = GENERATORS[name](size=size, ngf=ngf, **kwargs)
    init_weights(net)
    return net
