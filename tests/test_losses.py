"""The training losses and discriminators, on known inputs."""

import dataclasses

import pytest
import torch

from f2f_cam.errors import UserError
from trainers.config import ARCH_FIELDS, TrainConfig, model_args
from trainers.checkpoint import build_networks
from trainers.networks import MultiscaleDiscriminator, NLayerDiscriminator
from trainers.step import feature_matching_loss, gan_loss, gan_loss_scales, scales


def _tiny_dataset(talking_head, tmp_path) -> dict:
    """A 64 px dataset of 8 frames of the generated talking head (6 train, 2 val)."""
    from trainers.dataset import build_dataset, load_dataset

    build_dataset(talking_head[0], tmp_path / "ds", frames=8, size=64, val_fraction=0.25, seed=0, progress=False)
    return load_dataset(tmp_path / "ds")


def _frozen_step(make_D):
    """(step, G, D, a, b, crit): one tiny U-Net and ``make_D()``'s discriminator whose
    optimizers move nothing, a random batch of two (sketch, photo) pairs, and
    ``step(**kw)``: ``train_step`` on them with L1 weight 100 and ``kw``'s extra losses."""
    import contextlib

    from trainers.networks import define_G
    from trainers.step import train_step

    torch.manual_seed(0)
    G = define_G("unet", size=64, ngf=8, n_dropout=0, norm="instance")
    D = make_D()
    frozen = [torch.optim.SGD(G.parameters(), lr=0.0), torch.optim.SGD(D.parameters(), lr=0.0)]  # nothing moves
    a, b = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    crit, scaler = gan_loss("vanilla"), torch.amp.GradScaler("cpu", enabled=False)

    def step(**kw):
        return train_step(G, D, *frozen, scaler, crit, a, b, contextlib.nullcontext, 100.0, **kw)

    return step, G, D, a, b, crit


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
    assert model_args(TrainConfig())["D"] == {"kind": "face", "ndf": None, "n_layers": 3, "norm": "instance",
                                              "num_D": 1, "features": False, "crop": 256}  # ndf: set by the device
    assert model_args(TrainConfig(lambda_face=0.0))["D"]["kind"] == "patch"
    args = model_args(TrainConfig(num_D=2, lambda_feat=10.0, lambda_face=0.0, size=64, ngf=8, ndf=8))
    assert args["D"] == {"kind": "multiscale", "ndf": 8, "n_layers": 3, "norm": "instance", "num_D": 2}
    _, D = build_networks(args)
    assert isinstance(D, MultiscaleDiscriminator) and len(D.scales) == 2


def test_the_blur_removes_a_checkerboard_and_keeps_a_flat_or_smooth_image():
    from trainers.networks import Blur

    blur = Blur(2)
    assert list(blur.parameters()) == [] and "kernel" in blur.state_dict()  # fixed, saved with the network
    board = torch.zeros(1, 2, 16, 16)
    board[..., ::2, ::2] = 1.0  # what a stride-2 transposed convolution's uneven weights draw
    assert torch.allclose(blur(board)[..., 2:-2, 2:-2], torch.full((1, 2, 12, 12), 0.25))
    flat = torch.full((1, 2, 16, 16), 0.7)
    assert torch.allclose(blur(flat), flat)  # edges repeated: no dark border
    ramp = torch.arange(16.0).expand(1, 2, 16, 16)
    assert torch.allclose(blur(ramp)[..., 1:-1], ramp[..., 1:-1])  # a smooth gradient passes


def test_blur_up_puts_the_blur_after_the_last_upsamplings():
    from trainers.networks import Blur, define_G

    assert "blur_up" not in model_args(TrainConfig())["G"]  # off: older checkpoints' arguments, unchanged
    args = model_args(TrainConfig(size=64, ngf=8, ndf=8, blur_up=2))
    assert args["G"]["blur_up"] == 2 and "blur_up" in ARCH_FIELDS  # a checkpoint of another kind cannot resume
    G, _ = build_networks(args)
    blurred = [name for name, m in G.named_modules() if isinstance(m, Blur)]
    assert blurred == [f"up.{len(G.up) - 1}.2", "final.2"]  # the last decoder block's and the output's
    assert not any(isinstance(m, Blur) for m in define_G("unet", size=64, ngf=8).modules())
    with pytest.raises(UserError, match="--blur-up"):
        TrainConfig(blur_up=-1)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    G.eval()
    assert torch.equal(torch.jit.script(G)(x), G(x))  # exports as the runtime loads it


def test_a_resize_convolution_is_nearest_upsampling_then_a_3x3_convolution_and_exports_plain():
    import torch.nn.functional as F

    from trainers.export import freeze_generator
    from trainers.networks import ResizeConvTranspose2d, define_G, fold_resize

    torch.manual_seed(0)
    layer = ResizeConvTranspose2d(5, 7)
    assert layer.weight.shape == (5, 7, 3, 3)  # 9 weights a channel pair
    x = torch.randn(2, 5, 9, 11)
    resized = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), layer.weight.transpose(0, 1), layer.bias,
                       padding=1)
    assert torch.allclose(layer(x), resized, atol=1e-6)  # edges too: the zero padding lines up
    flat = layer(torch.ones(1, 5, 6, 6))[..., 1:-1, 1:-1]  # a flat input: no checkerboard, unlike a free kernel
    assert torch.allclose(flat, flat[..., :1, :1].expand_as(flat), atol=1e-6)
    plain = layer.plain()
    assert type(plain) is torch.nn.ConvTranspose2d and torch.allclose(plain(x), layer(x), atol=1e-6)

    assert "resize_up" not in model_args(TrainConfig(resize_up=0))["G"]  # off: older checkpoints' arguments, unchanged
    args = model_args(TrainConfig(size=64, ngf=8, ndf=8, resize_up=2))
    assert args["G"]["resize_up"] == 2 and "resize_up" in ARCH_FIELDS  # a checkpoint of another kind cannot resume
    G, _ = build_networks(args)
    tied = [name for name, m in G.named_modules() if isinstance(m, ResizeConvTranspose2d)]
    assert tied == [f"up.{len(G.up) - 1}.1", "final.1"]  # the last decoder block's and the output's
    assert not any(isinstance(m, ResizeConvTranspose2d) for m in define_G("unet", size=64, ngf=8).modules())
    with pytest.raises(UserError, match="--resize-up"):
        TrainConfig(resize_up=-1)
    G.eval()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    frozen = freeze_generator(G, 64)  # what a persona holds: the plain layers, the same output
    assert torch.allclose(frozen(x), G(x), atol=1e-5)
    assert any(isinstance(m, ResizeConvTranspose2d) for m in G.modules())  # the trained network is left as it was
    assert not any(isinstance(m, ResizeConvTranspose2d) for m in fold_resize(G).modules())


def test_training_with_multiscale_d_and_feature_matching_resumes(talking_head, tmp_path):
    from trainers import train as tr
    from trainers.dataset import build_dataset, load_dataset

    ds = build_dataset(talking_head[0], tmp_path / "ds", frames=12, size=64, val_fraction=0.25, seed=0,
                       progress=False)
    meta = load_dataset(tmp_path / "ds")
    cfg = TrainConfig(size=64, ngf=8, ndf=8, batch_size=2, norm="instance", num_D=2, lambda_feat=10.0,
                      lambda_face=0.0, epochs=1, max_steps=2, precision="fp32")
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


def test_recon_share_draws_the_sketch_from_the_expression_models_redrawing(talking_head, tmp_path):
    """--recon-share: the sketch from the expression model's landmarks for the frame's own
    scores and pose (moved onto the frame), the photo and its landmarks unchanged."""
    import numpy as np

    from f2f_cam import sketch
    from trainers.data import PairedDataset
    from trainers.dataset import build_dataset, load_dataset
    from trainers.export import reconstruct_frames

    build_dataset(talking_head[0], tmp_path / "ds", frames=16, size=64, val_fraction=0.25, seed=0, progress=False)
    meta = load_dataset(tmp_path / "ds")
    recon = reconstruct_frames(meta)
    real = np.array([p["landmarks"] for p in meta["pairs"]], np.float32)[:, :, :2]
    assert recon.shape == real.shape and recon.dtype == np.float32
    err = np.linalg.norm(recon - real, axis=2)
    assert 0 < np.median(err) < 0.03 * 64  # near the frame's own landmarks, not them
    plain = PairedDataset(meta, "train", augment=False)
    every = PairedDataset(meta, "train", augment=False, recon=recon, recon_share=1.0)
    none = PairedDataset(meta, "train", augment=False, recon=recon, recon_share=0.0)
    first = [i for i, p in enumerate(meta["pairs"]) if p["split"] == "train"][0]
    a, b = every.pair(0)
    assert np.array_equal(a, sketch.render(recon[first], 64))
    assert np.array_equal(b, plain.pair(0)[1]) and not np.array_equal(a, plain.pair(0)[0])
    assert np.array_equal(every._item(0)[2], plain._item(0)[2])  # the photo's landmarks (masks, boxes)
    assert np.array_equal(none.pair(0)[0], plain.pair(0)[0])
    half = PairedDataset(meta, "train", augment=True, seed=1, recon=recon, recon_share=0.5)
    moved = PairedDataset(meta, "train", augment=True, seed=1)

    def redrawn():
        return [not np.array_equal(half.pair(i)[0], moved.pair(i)[0]) for i in range(len(half))]

    drawn = redrawn()
    assert 0 < sum(drawn) < len(drawn)  # some of each, repeatably from (seed, epoch, index)
    assert drawn == redrawn()


def test_recon_share_is_checked(talking_head, tmp_path):
    import pytest

    from f2f_cam.errors import UserError
    from trainers.config import TrainConfig
    from trainers.dataset import build_dataset, load_dataset
    from trainers.train import reconstructed

    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(UserError, match="recon-share"):
            TrainConfig(epochs=1, recon_share=bad)
    build_dataset(talking_head[0], tmp_path / "ds", frames=6, size=64, val_fraction=0.34, seed=0, progress=False)
    with pytest.raises(UserError, match="--recon-share needs the dataset's expression model"):
        reconstructed(load_dataset(tmp_path / "ds"))  # 6 frames: too few for the fit


def test_grid_l1_is_the_checkerboard_the_generator_adds_and_nothing_else():
    from trainers.step import grid_l1

    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    photo = (0.01 * x - 0.005 * y - 0.2).expand(2, 3, 64, 64)  # a smooth ramp: its phases differ, evenly
    board = 0.05 * (1 - 2 * ((x + y) % 2))  # +-0.05, the 2-px period of a stride-2 transposed convolution
    assert grid_l1(photo + board, photo).item() == pytest.approx(0.05, rel=1e-4)  # at periods 2 and 4 alike
    assert grid_l1(photo + board, photo + board).item() == pytest.approx(0.0, abs=1e-7)  # the photo's own: none
    assert grid_l1(photo + 0.3, photo).item() == pytest.approx(0.0, abs=1e-6)  # a brighter image is no grid
    stripes = 0.04 * (1 - 2 * (torch.div(x, 2, rounding_mode="floor") % 2))  # 4-px period: only the factor-4 term
    assert grid_l1(photo + stripes, photo).item() == pytest.approx(0.04 / 2, rel=1e-4)
    noise = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.05
    assert grid_l1(photo + noise, photo).item() < 0.2 * grid_l1(photo + board, photo).item()  # noise averages out


def test_the_grid_loss_joins_the_generators_loss_at_its_weight():
    from trainers.networks import define_D
    from trainers.step import grid_l1

    step, G, _, a, b, _ = _frozen_step(lambda: define_D("patch", ndf=8, n_layers=3, norm="instance"))
    plain = step()
    losses = step(lambda_grid=2.0)
    with torch.no_grad():
        want = grid_l1(G(a), b).item()
    assert "loss_G_grid" not in plain and losses["loss_G_grid"].item() == pytest.approx(want, rel=1e-4)
    assert losses["loss_G_l1"].item() == pytest.approx(plain["loss_G_l1"].item(), rel=1e-5)


def test_parts_l1_is_the_mean_error_over_the_masked_pixels():
    from trainers.step import parts_l1

    real = torch.zeros(2, 3, 8, 8)
    fake = torch.zeros(2, 3, 8, 8)
    fake[:, :, :4] = 0.5  # the top half is off by 0.5, the bottom half exact
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6] = 1  # half of the mask on each half
    assert parts_l1(fake, real, mask).item() == pytest.approx(0.25)
    mask[:] = 0
    mask[:, :, :4] = 1
    assert parts_l1(fake, real, mask).item() == pytest.approx(0.5)
    assert parts_l1(fake, real, torch.zeros_like(mask)).item() == 0.0  # no parts: no loss, no NaN
    # Per image: a small mask weighs as much as a large one (the mean over images of each
    # one's error, not the error over all masked pixels together).
    mask[1] = 0
    mask[1, :, 4:] = 1  # the second image's mask on its exact bottom half
    mask[0] = 0
    mask[0, :, 0, 0] = 1  # the first's on one pixel off by 0.5
    assert parts_l1(fake, real, mask).item() == pytest.approx(0.25)


def test_parts_mask_covers_the_eyes_and_mouth_only():
    import json
    from pathlib import Path

    import numpy as np

    from trainers.data import parts_mask

    points = np.array(json.loads((Path(__file__).parent / "data" / "astronaut_landmarks_256.json")
                                 .read_text())["points"], np.float32)[:, :2]
    mask = parts_mask(points, 256)
    assert mask.shape == (256, 256) and mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
    for inside in (468, 473, 13, 14):  # both irises' centres, the middle of the lips
        x, y = np.round(points[inside]).astype(int)
        assert mask[y, x] == 1
    for outside in (1, 10, 152, 234, 454):  # nose tip, forehead, chin, cheeks
        x, y = np.round(points[outside]).astype(int)
        assert mask[y, x] == 0
    assert 0.005 < mask.mean() < 0.08  # a few per cent of the image


def test_training_with_the_parts_loss_logs_it_and_masks_the_moved_photo(talking_head, tmp_path):
    import numpy as np

    from trainers import train as tr
    from trainers.data import PairedDataset, parts_mask

    meta = _tiny_dataset(talking_head, tmp_path)
    data = PairedDataset(meta, "train", augment=True, seed=3, jitter=2.0, parts=True)
    a, b, m = data[0]
    _, _, moved = data._item(0)  # the landmarks as the augmented photo has them (no jitter)
    assert m.shape == (1, 64, 64) and np.array_equal(m[0].numpy(), parts_mask(moved, 64))
    assert len(PairedDataset(meta, "train")[0]) == 2  # without parts: (A, B) as before
    cfg = TrainConfig(size=64, ngf=8, ndf=8, batch_size=2, norm="instance", lambda_parts=0.5, epochs=1,
                      precision="fp32")
    result = tr.train(cfg, meta, tmp_path / "run", progress=False)
    assert result["steps"] == 3  # one epoch of 6 pairs
    assert (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].count("loss_G_parts") == 1


def test_face_box_is_the_square_around_the_landmarks_and_crop_faces_cuts_it():
    import numpy as np
    import torch

    from trainers.data import FACE_MARGIN, face_box
    from trainers.networks import crop_faces

    size = 64
    image = torch.zeros(1, 3, size, size)
    image[:, :, 16:48, 8:40] = 1.0  # a 32 x 32 "face": rows 16-47, columns 8-39
    corners = np.array([[8, 16], [39, 47], [20, 30]], np.float32)  # its corner pixels' centres, and one inside
    box = face_box(corners, size)
    assert box == pytest.approx([(23.5 + 0.5) / 32 - 1, (31.5 + 0.5) / 32 - 1, FACE_MARGIN * 31 / 64])
    crop = crop_faces(image, torch.from_numpy(box)[None], 32)[0, 0]  # (32, 32)
    side = 31 * FACE_MARGIN  # px of the image across the crop
    inside = round(32 * 31 / side / 2)  # the face's half width in the crop's pixels
    assert crop[16, 16] == 1.0 and crop[16 - inside + 2: 16 + inside - 2, 16].min() == 1.0  # the face fills the middle
    assert crop[0, 0] == 0.0 and crop[16, 0] == 0.0 and crop[16, 31] == 0.0  # the margin around it is background
    assert crop.mean() == pytest.approx((31 / side) ** 2, abs=0.06)


def test_training_with_the_face_discriminator_logs_it_and_resumes(talking_head, tmp_path):
    import torch

    from trainers import train as tr
    from trainers.checkpoint import load_checkpoint
    from trainers.data import PairedDataset, face_box
    from trainers.networks import FaceDiscriminator

    meta = _tiny_dataset(talking_head, tmp_path)
    data = PairedDataset(meta, "train", augment=True, seed=3, parts=True, face=True)
    a, b, m, box = data[0]
    _, _, moved = data._item(0)
    assert box.shape == (3,) and torch.equal(box, torch.from_numpy(face_box(moved, 64)))  # the moved photo's face
    cfg = TrainConfig(size=64, ngf=8, ndf=8, batch_size=2, norm="instance", lambda_face=1.0, epochs=1,
                      precision="fp32")
    assert isinstance(build_networks(model_args(cfg))[1], FaceDiscriminator)
    result = tr.train(cfg, meta, tmp_path / "run", progress=False)
    assert result["steps"] == 3
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "loss_G_face" in header and "loss_D_face" in header
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert any(k.startswith("face.") for k in ckpt["D"])  # the face D is saved with the whole-image one
    more = tr.train(dataclasses.replace(cfg, epochs=2), meta, tmp_path / "run", resume=True, progress=False)
    assert more["steps"] == 6


def test_the_face_gan_loss_is_the_face_discriminators_verdict_on_the_generated_face():
    from trainers.networks import crop_faces, define_D

    step, G, D, a, b, crit = _frozen_step(lambda: define_D("face", ndf=8, n_layers=3, norm="instance", crop=32))
    boxes = torch.tensor([[0.0, 0.0, 0.5], [-0.2, 0.1, 0.4]])
    losses = step(boxes=boxes, lambda_face=2.0)
    with torch.no_grad():
        fake = G(a)
        face_fake = D.face(crop_faces(torch.cat([a, fake], 1), boxes, 32))
        face_real = D.face(crop_faces(torch.cat([a, b], 1), boxes, 32))
    assert losses["loss_G_face"].item() == pytest.approx(crit(face_fake, True).item(), rel=1e-4)
    assert losses["loss_D_face"].item() == pytest.approx(
        0.5 * (crit(face_real, True) + crit(face_fake, False)).item(), rel=1e-4)
    plain = step()  # without boxes: no face term
    assert "loss_G_face" not in plain and plain["loss_G_gan"].item() == pytest.approx(losses["loss_G_gan"].item(), rel=1e-4)


def test_part_boxes_are_the_squares_around_each_eye_and_the_mouth():
    import numpy as np

    from trainers.data import PART_LEAST, PART_MARGIN, PART_OUTLINES, part_boxes

    size = 128
    points = np.full((478, 2), 64.0, np.float32)
    wanted = []
    for (lower, upper), (x0, y0, w, h) in zip(PART_OUTLINES, [(20, 40, 30, 10), (78, 40, 30, 10), (44, 90, 40, 0)]):
        ids = list(dict.fromkeys(list(lower) + list(upper)))  # the corners are in both chains
        points[ids] = (x0 + w / 2, y0 + h / 2)
        points[ids[0]], points[ids[-1]] = (x0, y0), (x0 + w, y0 + h)  # the outline's extremes
        wanted.append([(x0 + w / 2 + 0.5) / 64 - 1, (y0 + h / 2 + 0.5) / 64 - 1, PART_MARGIN * max(w, h) / 128])
    boxes = part_boxes(points, size)
    assert boxes.shape == (3, 3) and boxes.dtype == np.float32
    assert boxes == pytest.approx(np.array(wanted), abs=1e-6)
    points[list(PART_OUTLINES[2][0]) + list(PART_OUTLINES[2][1])] = 60.0  # a mouth shrunk to a point
    assert part_boxes(points, size)[2, 2] == pytest.approx(2 * PART_LEAST)  # keeps the least square


def test_the_parts_gan_loss_is_the_parts_discriminators_verdict_on_each_generated_part():
    from trainers.networks import crop_faces, define_D

    step, G, D, a, b, crit = _frozen_step(
        lambda: define_D("face", ndf=8, n_layers=3, norm="instance", crop=32, parts_crop=32, face=False))
    assert D.face is None
    parts = torch.tensor([[[-0.3, -0.2, 0.15], [0.3, -0.2, 0.15], [0.0, 0.4, 0.2]],
                          [[-0.2, -0.3, 0.1], [0.25, -0.3, 0.1], [0.05, 0.3, 0.25]]])  # (B, 3 parts, 3)
    losses = step(part_boxes=parts, lambda_parts_gan=3.0)
    with torch.no_grad():
        fake = G(a)

        def crops(photo):  # image by image: the first image's three parts, then the second's
            pair = torch.cat([a, photo], 1)
            return torch.cat([crop_faces(pair[i:i + 1].expand(3, -1, -1, -1), parts[i], 32) for i in range(2)])

        parts_fake, parts_real = D.parts(crops(fake)), D.parts(crops(b))
    assert parts_fake.shape[0] == 6
    assert losses["loss_G_parts_gan"].item() == pytest.approx(crit(parts_fake, True).item(), rel=1e-4)
    assert losses["loss_D_parts"].item() == pytest.approx(
        0.5 * (crit(parts_real, True) + crit(parts_fake, False)).item(), rel=1e-4)
    assert "loss_G_face" not in losses  # no face D here
    plain = step()
    assert "loss_G_parts_gan" not in plain
    with_it = step(part_boxes=parts, lambda_parts_gan=0.0)  # weight 0: off
    assert "loss_G_parts_gan" not in with_it


def test_training_with_the_parts_discriminator_saves_it_and_asks_for_it_to_resume(talking_head, tmp_path):
    from trainers import train as tr
    from trainers.checkpoint import check_resumable, load_checkpoint
    from trainers.data import PairedDataset, part_boxes

    meta = _tiny_dataset(talking_head, tmp_path)
    data = PairedDataset(meta, "train", augment=True, seed=3, face=True, part_squares=True)
    a, b, box, parts = data[0]
    _, _, moved = data._item(0)
    assert parts.shape == (3, 3) and torch.equal(parts, torch.from_numpy(part_boxes(moved, 64)))
    cfg = TrainConfig(size=64, ngf=8, ndf=8, batch_size=2, norm="instance", lambda_parts_gan=1.0, epochs=1,
                      precision="fp32")
    assert model_args(cfg)["D"]["parts_crop"] == 32 and "parts_crop" not in model_args(TrainConfig())["D"]
    result = tr.train(cfg, meta, tmp_path / "run", progress=False)
    assert result["steps"] == 3
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "loss_G_parts_gan" in header and "loss_D_parts" in header and "loss_G_face" in header
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert any(k.startswith("parts.") for k in ckpt["D"]) and any(k.startswith("face.") for k in ckpt["D"])
    with pytest.raises(UserError, match="lambda_parts_gan"):  # another loss: not the same run
        check_resumable(ckpt, dataclasses.replace(cfg, lambda_parts_gan=0.0), ckpt["dataset"]["video_sha256"],
                        tmp_path / "last.pt")


def test_a_checkpoint_from_before_the_face_discriminator_resumes_only_without_one(tmp_path):
    import dataclasses as dc

    from f2f_cam.errors import UserError
    from trainers.checkpoint import check_resumable

    old = {k: v for k, v in dc.asdict(TrainConfig()).items() if k not in ("lambda_face", "resize_up")}  # saved before they existed
    ckpt = {"config": old, "dataset": {"video_sha256": "abc"}}
    check_resumable(ckpt, TrainConfig(lambda_face=0.0, resize_up=0), "abc", tmp_path / "last.pt")
    with pytest.raises(UserError, match=r"lambda_face=0.0 \(now 1.0\), resize_up=0 \(now 2\)"):
        check_resumable(ckpt, TrainConfig(), "abc", tmp_path / "last.pt")


def test_the_weights_average_moves_a_share_of_the_way_and_skips_the_first_steps():
    from torch import nn

    from trainers.step import ema_decay, ema_update

    assert ema_decay(0.995, 1) == pytest.approx(2 / 11)  # early: mostly the new weights
    assert ema_decay(0.995, 10_000) == 0.995
    model, ema = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.running_mean.fill_(5.0)
    ema_update(ema, model, 0.75)
    assert torch.allclose(ema.weight, torch.full((3,), 1.5))  # 1 + (3 - 1) * 0.25
    assert torch.equal(ema.running_mean, model.running_mean)  # buffers: the model's own
    with pytest.raises(UserError, match="--ema"):
        TrainConfig(ema=1.0)


def test_training_with_ema_saves_the_average_and_exports_it(talking_head, tmp_path):
    from trainers import train as tr
    from trainers.checkpoint import build_generator_from_checkpoint, load_checkpoint

    meta = _tiny_dataset(talking_head, tmp_path)
    cfg = TrainConfig(size=64, ngf=8, ndf=8, batch_size=2, norm="instance", ema=0.9, epochs=1, precision="fp32",
                      lambda_face=0.0)
    tr.train(cfg, meta, tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    last, average = ckpt["G"], ckpt["G_ema"]
    assert last.keys() == average.keys() and any(not torch.equal(last[k], average[k]) for k in last)
    exported = build_generator_from_checkpoint(ckpt).state_dict()
    assert all(torch.equal(exported[k], average[k]) for k in average)  # export takes the average
    # Resumed with --ema from a run without it: the average starts from its last weights.
    del ckpt["G_ema"]
    torch.save(ckpt, tmp_path / "run" / "checkpoints" / "last.pt")
    more = tr.train(dataclasses.replace(cfg, epochs=2), meta, tmp_path / "run", resume=True, progress=False)
    assert more["steps"] == 6
    assert "G_ema" in load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    without = build_generator_from_checkpoint(ckpt).state_dict()  # the copy without the average
    assert all(torch.equal(without[k], last[k]) for k in last)  # no average saved: the last weights
