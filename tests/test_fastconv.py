"""The training speed-ups change how, never what: GEMM convolutions, the dense-gradient
skip join, the generator step that leaves D's gradients alone, the fused optimizer."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from f2f_cam.system import native_bf16
from trainers import fastconv as fc
from trainers import step as tr
from trainers.bench import MODES, time_steps
from trainers.networks import cat_skip, define_D, define_G

# (transposed, c_in, c_out, kernel, stride, padding, size)
LAYERS = [(False, 5, 7, 4, 2, 1, 8), (True, 5, 7, 4, 2, 1, 4), (False, 5, 7, 4, 1, 1, 9),
          (True, 5, 7, 4, 1, 1, 6), (False, 3, 4, 3, 2, 0, 7), (True, 3, 4, 3, 2, 0, 5)]


@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize("ckk", [True, False])
@pytest.mark.parametrize("layer", LAYERS)
def test_gemm_convolution_equals_pytorch_in_float64(layer, ckk, full):
    tr_, ci, co, k, s, p, h = layer
    torch.manual_seed(0)
    x = torch.randn(2, ci, h, h, dtype=torch.float64, requires_grad=True)
    w = torch.randn(*((ci, co) if tr_ else (co, ci)), k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(co, dtype=torch.float64, requires_grad=True)

    def ours(x, w, b):
        return fc._GemmConv.apply(x, w, b, k, s, p, tr_, full, ckk, torch.float64)

    ref = (F.conv_transpose2d if tr_ else F.conv2d)(x, w, b, stride=s, padding=p)
    assert ours(x, w, b).shape == ref.shape
    assert (ours(x, w, b) - ref).abs().max().item() < 1e-12
    assert torch.autograd.gradcheck(ours, (x, w, b))


@pytest.mark.parametrize("k,p,c_out", [(4, 1, 1), (3, 1, 2), (4, 0, 3)])
def test_narrow_convolution_equals_pytorch_in_float64(k, p, c_out):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 7, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, 5, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, dtype=torch.float64, requires_grad=True)

    def ours(x, w, b):
        return fc._NarrowConv.apply(x, w, b, k, p, torch.float64)

    assert (ours(x, w, b) - F.conv2d(x, w, b, padding=p)).abs().max().item() < 1e-12
    assert torch.autograd.gradcheck(ours, (x, w, b))


def test_discriminator_takes_the_narrow_path_for_its_last_layer():
    D = fc.enable(define_D("patch", ndf=8))
    x = torch.randn(2, 6, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = D(x)
    assert y.shape == (2, 1, 6, 6) and "_NarrowConvBackward" in _grad_fns(y)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert D(x).grad_fn is None  # inference: PyTorch's kernels


def _grad_fns(t: torch.Tensor) -> set[str]:
    seen, todo, names = set(), [t.grad_fn], set()
    while todo:
        f = todo.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        names.add(type(f).__name__)
        todo.extend(g for g, _ in f.next_functions)
    return names


def test_enabled_unet_is_as_accurate_as_pytorch_under_bf16_autocast():
    torch.manual_seed(0)
    nets = [define_G("unet", size=64, ngf=16, n_dropout=0) for _ in range(3)]
    plain, fast, truth = nets
    fast.load_state_dict(plain.state_dict())
    truth.load_state_dict(plain.state_dict())
    fc.enable(fast)
    truth.double()
    assert any(isinstance(m, fc.GemmConv2d) for m in fast.modules())
    assert any(isinstance(m, fc.GemmConvTranspose2d) for m in fast.modules())
    assert fast.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(fast.state_dict()[k], v) for k, v in plain.state_dict().items())

    x = (torch.rand(4, 3, 64, 64) * 2 - 1).contiguous(memory_format=torch.channels_last)
    outs = []
    for net in nets:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=net is not truth):
            y = net(x.double() if net is truth else x)
        y.double().square().mean().backward()
        outs.append(y.double())
    assert "_GemmConvBackward" in _grad_fns(outs[1])  # the GEMM path really ran
    assert "_GemmConvBackward" not in _grad_fns(outs[0])

    # Against float64: bf16 autocast is off by ~0.6 % in the output and 1-18 % in the
    # gradients (measured), with PyTorch's kernels and with ours alike. A wrong index
    # or transpose would be off by ~100 %.
    def err(a, t):
        return ((a.double() - t).norm() / t.norm()).item()

    assert err(outs[1], outs[2]) <= 1.25 * err(outs[0], outs[2]) + 0.01
    for (name, t), p, f in zip(truth.named_parameters(), plain.parameters(), fast.parameters()):
        assert err(f.grad, t.grad) <= 1.25 * err(p.grad, t.grad) + 0.01, name
        assert f.grad.dtype == torch.float32 and f.grad.is_contiguous(), name  # the fused optimizer's layout


def test_gemm_path_only_where_it_is_meant_to_run():
    m = fc.enable(nn.Sequential(nn.Conv2d(64, 64, 4, 2, 1)))[0]
    x = torch.randn(1, 64, 16, 16)
    assert not fc._use_gemm(m, x)  # no autocast: PyTorch's kernel, fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fc._use_gemm(m, x)
        with torch.no_grad():
            assert not fc._use_gemm(m, x)  # inference keeps oneDNN
        assert not fc._use_gemm(m, torch.randn(4, 64, 256, 256))  # large layers keep oneDNN
    narrow = fc.enable(nn.Sequential(nn.Conv2d(64, 3, 4, 2, 1)))[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fc._use_gemm(narrow, x)  # 3 output channels: oneDNN's direct kernel wins
    dilated = fc.enable(nn.Sequential(nn.Conv2d(64, 64, 3, dilation=2)))[0]
    assert type(dilated) is nn.Conv2d  # unsupported shapes are left alone


def test_skip_join_gives_dense_gradients_of_the_same_values():
    torch.manual_seed(0)
    a = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    b = torch.randn(2, 6, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(2, 10, 8, 8).contiguous(memory_format=torch.channels_last)
    y = cat_skip(a, b)
    assert torch.equal(y, torch.cat([a, b], 1))
    ga, gb = torch.autograd.grad(y, (a, b), g)
    ra, rb = torch.autograd.grad(torch.cat([a, b], 1), (a, b), g)
    assert torch.equal(ga, ra) and torch.equal(gb, rb)
    assert ga.is_contiguous(memory_format=torch.channels_last) and not ra.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # export and inference trace plain torch.cat
        assert cat_skip(a, b).grad_fn is None


def test_generator_step_leaves_the_discriminator_gradients_alone():
    torch.manual_seed(0)
    G, D = define_G("unet", size=64, ngf=8), define_D("patch", ndf=8)
    opt_G, opt_D = tr.make_optimizers(G, D, 2e-4, 0.5, torch.device("cpu"))
    assert opt_G.defaults["fused"] and opt_D.defaults["fused"]
    snap = {}
    step_D = opt_D.step

    def record_then_step(*args, **kwargs):
        snap.update({n: p.grad.clone() for n, p in D.named_parameters()})
        return step_D(*args, **kwargs)

    opt_D.step = record_then_step
    a, b = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    autocast = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    tr.train_step(G, D, opt_G, opt_D, scaler, tr.gan_loss("vanilla"), a, b, autocast, 100.0)
    assert snap and all(torch.equal(p.grad, snap[n]) for n, p in D.named_parameters())
    assert all(p.requires_grad for p in D.parameters())
    assert all(p.grad is not None for p in G.parameters())


def test_tune_malloc_applies_on_linux():
    code = "from trainers.step import tune_malloc; print(tune_malloc())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("True" if sys.platform.startswith("linux") else "False")


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_every_bench_mode_runs_a_training_step(mode):
    if mode.amp_dtype is not None and not native_bf16("cpu"):
        pytest.skip("no native bf16 on this CPU")  # bench_training leaves the mode out too
    assert time_steps(mode, ngf=8, size=64, batch_size=2, steps=1) > 0
