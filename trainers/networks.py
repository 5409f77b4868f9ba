"""pix2pix networks (Isola et al. 2017): the U-Net generator.

Only module definitions live here; the training loop and export are elsewhere.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SIZES = (64, 128, 256, 512)  # image sizes the U-Net is built for (powers of two)


class UnetGenerator(nn.Module):
    """The pix2pix U-Net: encoder C64-C128-C256-C512-C512-..., mirrored decoder with
    skip connections, BatchNorm, dropout in the first decoder blocks, tanh output.

    It downsamples log2(size) times, to a 1x1 bottleneck (8 times at 256 px).
    Input and output: (N, 3, size, size) in [-1, 1].
    """

    def __init__(self, size: int = 256, ngf: int = 64, in_ch: int = 3, out_ch: int = 3,
                 n_dropout: int = 3):
        super().__init__()
        if size not in SIZES:
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
                layers.append(nn.BatchNorm2d(chans[i]))
            self.down.append(nn.Sequential(*layers))

        self.up = nn.ModuleList()
        for j, i in enumerate(reversed(range(1, n))):  # decoder block j produces chans[i-1]
            c_in = chans[i] if j == 0 else chans[i] * 2  # bottleneck alone, then concat skip
            layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, chans[i - 1], 4, 2, 1, bias=False),
                      nn.BatchNorm2d(chans[i - 1])]
            if j < n_dropout:
                layers.append(nn.Dropout(0.5))
            self.up.append(nn.Sequential(*layers))
        self.final = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(chans[0] * 2, out_ch, 4, 2, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        # skips[-1] is the bottleneck x itself; decoder block j joins skips[-2-j].
        for j, block in enumerate(self.up):
            x = block(x if j == 0 else torch.cat([x, skips[len(skips) - 1 - j]], 1))
        return self.final(torch.cat([x, skips[0]], 1))


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix init: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


GENERATORS = {"unet": UnetGenerator}


def define_G(name: str = "unet", size: int = 256, ngf: int = 64, **kwargs) -> nn.Module:
    """Build and initialise a generator by name; unknown names fail with the choices."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose one of: {', '.join(GENERATORS)}")
    net = GENERATORS[name](size=size, ngf=ngf, **kwargs)
    init_weights(net)
    return net
