"""The training losses and discriminators, on known inputs."""

import pytest
import torch

from trainers.config import TrainConfig, model_args
from trainers.checkpoint import build_networks
from trainers.networks import MultiscaleDiscriminator, NLayerDiscriminator
from trainers.step import feature_matching_loss, gan_loss, gan_loss_scales, scales


def test_gan_loss_over_scales_is_their_mean():
    crit = gan_loss("lsgan")  # MSE against 1 (real) or 0 (fake)
    one_scale = torch.full((2, 1, 4, 4), 0.5)
    assert gan_loss_scales(crit, one_scale, True).item() == pytest.approx(0.25)
    two = [[torch.zeros(1, 1, 2, 2)], [torch.ones(1, 1, 2, 2)]]  # losses 1 and 0 against "real"
    assert gan_loss_scales(crit, two, True).item() == pytest.approx(0.5)
    assert scales(one_scale) == [[one_scale]]


def test_feature_matching_weights_layers_and_scales():
    # Two scales, each with two feature maps and logits; fake differs from real by
    # exactly 1 everywhere in every feature map, so each layer's L1 is 1.
    real = [[torch.zeros(1, 4, 8, 8), torch.zeros(1, 8, 4, 4), torch.zeros(1, 1, 2, 2)] for _ in range(2)]
    fake = [[f + 1 for f in s[:-1]] + [s[-1] + 100] for s in real]  # logits are not matched
    # per layer 4 / (2 + 1), per scale 1 / 2: 2 scales x 2 layers x (4/3) x (1/2) = 8/3.
    assert feature_matching_loss(fake, real).item() == pytest.approx(8 / 3)
    assert feature_matching_loss(real, real).item() == 0
    # A plain PatchGAN has no features to match.
    assert feature_matching_loss(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item() == 0


def test_feature_matching_gives_no_gradient_to_the_real_side():
    real = [[torch.zeros(1, 2, 2, 2, requires_grad=True), torch.zeros(1, 1, 1, 1)]]
    fake = [[torch.ones(1, 2, 2, 2, requires_grad=True), torch.zeros(1, 1, 1, 1)]]
    feature_matching_loss(fake, real).backward()
    assert real[0][0].grad is None and fake[0][0].grad is not None


def test_multiscale_discriminator_shapes_and_features():
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(ndf=8, num_D=2, norm="instance")
    out = d(torch.randn(2, 6, 64, 64))
    assert len(out) == 2 and all(len(s) == 5 for s in out)  # 4 activations + logits per scale
    assert out[0][-1].shape == (2, 1, 6, 6) and out[1][-1].shape == (2, 1, 2, 2)
    # Each scale is an ordinary PatchGAN: its features end in what forward() returns.
    x = torch.randn(1, 6, 64, 64)
    plain = d.scales[0]
    assert isinstance(plain, NLayerDiscriminator) and torch.equal(plain.features(x)[-1], plain(x))


def test_model_args_pick_the_discriminator():
    assert model_args(TrainConfig())["D"]["kind"] == "patch"
    args = model_args(TrainConfig(num_D=2, lambda_feat=10.0, size=64, ngf=8, ndf=8))
    assert args["D"] == {"kind": "multiscale", "ndf": 8, "n_layers": 3, "norm": "instance", "num_D": 2}
    _, D = build_networks(args)
    assert isinstance(D, MultiscaleDiscriminator) and len(D.scales) == 2


def test_training_with_multiscale_d_and_feature_matching_resumes(talking_head, tmp_path):
    from trainers import train as tr
    from trainers.dataset import build_dataset, load_dataset

    ds = build_dataset(talking_head[0], tmp_path / "ds", frames=12, size=64, val_fraction=0.25, seed=0,
                       progress=False)
    meta = load_dataset(tmp_path / "ds")
    cfg = TrainConfig(size=64, ngf=8, ndf=8, batch_size=2, norm="instance", num_D=2, lambda_feat=10.0,
                      epochs=1, max_steps=2, precision="fp32")
    first = tr.train(cfg, meta, tmp_path / "run", progress=False)
    assert first["steps"] == 2 and first["stopped"] == "max steps"
    again = tr.train(TrainConfig(**{**cfg.__dict__, "max_steps": 4}), meta, tmp_path / "run", resume=True,
                     progress=False)
    assert again["steps"] == 4
    # A run with another discriminator cannot resume this one.
    from f2f_cam.errors import UserError

    with pytest.raises(UserError, match="num_D=2"):
        tr.train(TrainConfig(**{**cfg.__dict__, "num_D": 1, "lambda_feat": 0.0, "max_steps": 6}), meta,
                 tmp_path / "run", resume=True, progress=False)
    assert ds is not None


def test_landmark_jitter_moves_the_sketch_not_the_photo(talking_head, tmp_path):
    import numpy as np

    from trainers.data import PairedDataset
    from trainers.dataset import build_dataset, load_dataset

    build_dataset(talking_head[0], tmp_path / "ds", frames=6, size=64, val_fraction=0.34, seed=0, progress=False)
    meta = load_dataset(tmp_path / "ds")
    plain = PairedDataset(meta, "train", augment=True, seed=3)
    jittered = PairedDataset(meta, "train", augment=True, seed=3, jitter=2.0)
    a0, b0 = plain.pair(0)
    a1, b1 = jittered.pair(0)
    assert np.array_equal(b0, b1)  # the same photo transform
    assert not np.array_equal(a0, a1)  # a different sketch
    assert np.array_equal(a1, jittered.pair(0)[0])  # drawn from (seed, epoch, index): repeatable
