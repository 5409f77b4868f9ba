"""Convolutions as matrix products, for bf16 training on CPUs without AMX.

On a CPU with AVX512-BF16 but no AMX (AMD Zen 4/5, Intel Cooper Lake), oneDNN's
bf16 matrix multiply and convolution forward run near the chip's peak (about 900
GFLOPS on this project's 2 cores, where fp32 convolutions reach about 400), but its
bf16 convolution *backward* kernels do not: they fall back to an older JIT, and
every call reorders the weights into a blocked layout and back. On the small-spatial
layers of the pix2pix U-Net (the 512/1024-channel blocks at 16x16 and below) that
overhead is most of the cost, e.g. the weight gradient of the 1024->512 transposed
convolution at 8x8 takes 33 ms where the same product as one GEMM takes 5 ms.

``enable(model)`` swaps the model's ``Conv2d``/``ConvTranspose2d`` modules for
subclasses that, only while bf16 autocast is on for the CPU and only for layers
whose matrices are small enough (``gemm_rows``), compute forward and backward as
im2col/col2im + GEMM on channels-last tensors. The parameters, the state dict and
the function computed are the same (the results agree to bf16 rounding: tested);
large layers, fp32, CUDA and inference keep PyTorch's own kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from f2f_cam.system import cpu_has_amx

# Thresholds measured layer by layer on this project's networks (AMD EPYC Zen 5, 2 cores,
# AVX512-BF16, no AMX; tests/test_fastconv.py checks behaviour, not these timings):
FULL_ROWS_MAX = 256  # GEMM rows (batch x positions) up to which forward and backward are GEMMs
ROWS_LIMIT = 4096  # ... below which the weight gradient is (at 4096 and above oneDNN's is as fast)
MIN_CHANNELS = 64  # the GEMM's output width; below it oneDNN's direct kernels win
NARROW_MAX_OUT = 8  # stride-1 convolutions with at most this many outputs: _NarrowConv


# Patch matrices have k*k*C columns, in one of two orders. "kkc" (kh, kw, c) is the
# cheap one to build from channels-last activations; "ckk" (c, kh, kw) is the order of
# a contiguous weight, so GEMMs against it need no weight reordering. Each layer takes
# the order whose reordering moves fewer values (see _gemm_forward).


def _patches(x: torch.Tensor, k: int, s: int, p: int, ckk: bool) -> torch.Tensor:
    """im2col on an (N, C, H, W) tensor: (N*OH*OW, k*k*C) rows."""
    n, c, h, w = x.shape
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, p, p, p, p))  # (N, H+2p, W+2p, C)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    sn, sh, sw, sc = xp.stride()
    if s > 1 or ckk:  # one strided copy (fast here for stride 2 in kkc order)
        shape, strides = ((n, oh, ow, c, k, k), (sn, sh * s, sw * s, sc, sh, sw)) if ckk else \
            ((n, oh, ow, k, k, c), (sn, sh * s, sw * s, sh, sw, sc))
        return xp.as_strided(shape, strides).reshape(n * oh * ow, k * k * c)
    out = torch.empty(n, oh, ow, k, k, c, dtype=x.dtype, device=x.device)  # stride 1: k*k slices, 5x faster
    for kh in range(k):
        for kw in range(k):
            out[:, :, :, kh, kw] = xp[:, kh:kh + oh, kw:kw + ow]
    return out.view(n * oh * ow, k * k * c)


def _fold(cols: torch.Tensor, n: int, h_in: int, w_in: int, c: int, k: int, s: int, p: int,
          h: int, w: int, ckk: bool) -> torch.Tensor:
    """col2im: adds each row's k x k x C patch into an (N, C, h, w) channels-last tensor.

    Row (n, i, j) covers output pixels (i*s - p + kh, j*s - p + kw). Accumulates in fp32
    (up to (k/s)^2 terms meet per pixel) and returns cols' dtype.
    """
    hp, wp = max((h_in - 1) * s + k, h + p), max((w_in - 1) * s + k, w + p)
    acc = torch.promote_types(cols.dtype, torch.float32)
    out = torch.zeros(n, hp, wp, c, dtype=acc, device=cols.device)
    c6 = cols.view(n, h_in, w_in, c, k, k).permute(0, 1, 2, 4, 5, 3) if ckk else cols.view(n, h_in, w_in, k, k, c)
    for kh in range(k):
        for kw in range(k):
            out[:, kh:kh + s * (h_in - 1) + 1:s, kw:kw + s * (w_in - 1) + 1:s] += c6[:, :, :, kh, kw]
    return out[:, p:p + h, p:p + w].to(cols.dtype).permute(0, 3, 1, 2)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N*H*W, C), a view when x is channels-last."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n * h * w, c)


def _wmat(w: torch.Tensor, ckk: bool) -> torch.Tensor:
    """(A, B, k, k) weight -> (A, k*k*B): a view of a contiguous weight (ckk) or of a
    channels-last one (kkc)."""
    a = w.shape[0]
    return w.reshape(a, -1) if ckk else w.permute(0, 2, 3, 1).reshape(a, -1)


def _unwmat(m: torch.Tensor, a: int, b: int, k: int, dtype: torch.dtype, ckk: bool) -> torch.Tensor:
    """Inverse of _wmat, cast to ``dtype``: (A, k*k*B) -> a contiguous (A, B, k, k) like
    the parameters (the optimizer's fused kernels copy channels-last ones in and out)."""
    if ckk:
        return m.view(a, b, k, k).to(dtype)
    out = torch.empty(a, b, k, k, dtype=dtype, device=m.device)
    out.permute(0, 2, 3, 1).copy_(m.view(a, k, k, b))
    return out


class _GemmConv(torch.autograd.Function):
    """conv2d (transposed=False) or conv_transpose2d (True) computed in ``dt`` (bf16;
    float64 in the tests, where it must equal PyTorch's), square k/s/p, groups 1.

    Takes the layer's own (fp32) weight and bias and returns their gradients in fp32
    and the parameters' layout, so the weight-sized tensors are each read or written
    once per pass (the big U-Net weights are 8 M values; at this machine's memory
    bandwidth every extra copy of one costs milliseconds).

    full=True: forward, input gradient and weight gradient are all GEMMs (small
    layers, where oneDNN's per-call weight reorders dominate). full=False: oneDNN's
    forward and input gradient, GEMM weight gradient (medium layers).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, k: int, s: int, p: int, transposed: bool, full: bool, ckk: bool,
                dt: torch.dtype = torch.bfloat16):
        x = x.to(dt).contiguous(memory_format=torch.channels_last)
        wt = weight.to(dt, memory_format=torch.contiguous_format if ckk else torch.channels_last)  # one copy
        bt = None if bias is None else bias.to(dt)
        n, _, h, w = x.shape
        if not full:
            y = torch.ops.aten.convolution(x, wt, bt, [s, s], [p, p], [1, 1], transposed, [0, 0], 1)
        elif transposed:  # weight (Cin, Cout, k, k); every input pixel spreads a k x k patch
            oh, ow = (h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k
            y = _fold(_rows(x) @ _wmat(wt, ckk), n, h, w, wt.shape[1], k, s, p, oh, ow, ckk)
        else:  # weight (Cout, Cin, k, k)
            oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            y = (_patches(x, k, s, p, ckk) @ _wmat(wt, ckk).t()).view(n, oh, ow, wt.shape[0]).permute(0, 3, 1, 2)
        if full and bt is not None:
            y = y + bt.view(1, -1, 1, 1)
        ctx.save_for_backward(x, wt)
        ctx.conf = (k, s, p, transposed, full, ckk, weight.dtype, None if bias is None else bias.dtype)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, wt = ctx.saved_tensors
        k, s, p, transposed, full, ckk, w_dtype, b_dtype = ctx.conf
        gy = gy.to(wt.dtype).contiguous(memory_format=torch.channels_last)
        n, c_in, h, w = x.shape
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = gw = gb = None
        if need_x and not full:
            gx = torch.ops.aten.convolution_backward(gy, x, wt, None, [s, s], [p, p], [1, 1], transposed,
                                                     [0, 0], 1, [True, False, False])[0]
        if transposed:  # the adjoint of a convolution: patches of gy line up with x's pixels
            pg = _patches(gy, k, s, p, ckk)  # (N*h*w, k*k*Cout)
            if need_x and full:
                gx = (pg @ _wmat(wt, ckk).t()).view(n, h, w, c_in).permute(0, 3, 1, 2)
            if need_w:
                gw = _unwmat(_rows(x).t() @ pg, c_in, wt.shape[1], k, w_dtype, ckk)
        else:
            g = _rows(gy)  # (N*OH*OW, Cout)
            if need_x and full:
                gx = _fold(g @ _wmat(wt, ckk), n, gy.shape[2], gy.shape[3], c_in, k, s, p, h, w, ckk)
            if need_w:
                gw = _unwmat(g.t() @ _patches(x, k, s, p, ckk), wt.shape[0], c_in, k, w_dtype, ckk)
        if b_dtype is not None and need_b:
            gb = gy.sum((0, 2, 3), dtype=torch.float32).to(b_dtype)
        return gx, gw, gb, None, None, None, None, None, None, None


class _NarrowConv(torch.autograd.Function):
    """A stride-1 conv2d with few output channels (the PatchGAN's last layer: 512 -> 1)
    as one GEMM on the padded input, then k*k shifted adds.

    z = xp @ W gives every input pixel's contribution for every kernel tap (k*k*Cout
    columns, cheap when Cout is small); output pixel (i, j) sums tap (kh, kw) of pixel
    (i+kh, j+kw). oneDNN spends ~4 ms a call on this layer, mostly weight reorders;
    this takes ~1.4 ms. Computed in ``dt`` (float64 in the tests).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, k, p, dt=torch.bfloat16):
        n, c, h, w = x.shape
        co = weight.shape[0]
        xp = F.pad(x.to(dt).permute(0, 2, 3, 1), (0, 0, p, p, p, p)).contiguous()  # (n, Hp, Wp, C)
        hp, wp = h + 2 * p, w + 2 * p
        oh, ow = hp - k + 1, wp - k + 1
        wm = weight.to(dt).permute(1, 2, 3, 0).reshape(c, k * k * co)  # (C, (kh, kw, co))
        z = (xp.view(-1, c) @ wm).view(n, hp, wp, k, k, co)
        acc = torch.promote_types(dt, torch.float32)
        y = torch.zeros(n, oh, ow, co, dtype=acc, device=x.device)
        for kh in range(k):
            for kw in range(k):
                y += z[:, kh:kh + oh, kw:kw + ow, kh, kw]
        if bias is not None:
            y += bias.to(acc)
        ctx.save_for_backward(xp, wm)
        ctx.conf = (k, p, h, w, weight.shape, weight.dtype, None if bias is None else bias.dtype)
        return y.to(dt).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, gy):
        xp, wm = ctx.saved_tensors
        k, p, h, w, wshape, w_dtype, b_dtype = ctx.conf
        n, hp, wp, c = xp.shape
        co = wshape[0]
        oh, ow = hp - k + 1, wp - k + 1
        g = gy.to(xp.dtype).permute(0, 2, 3, 1)  # (n, oh, ow, co)
        gz = torch.zeros(n, hp, wp, k, k, co, dtype=xp.dtype, device=xp.device)
        for kh in range(k):
            for kw in range(k):
                gz[:, kh:kh + oh, kw:kw + ow, kh, kw] = g
        gzr = gz.view(-1, k * k * co)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = (gzr @ wm.t()).view(n, hp, wp, c)[:, p:p + h, p:p + w].permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            gw = (xp.view(-1, c).t() @ gzr).view(c, k, k, co).permute(3, 0, 1, 2).to(w_dtype).contiguous()
        if b_dtype is not None and ctx.needs_input_grad[2]:
            gb = gy.sum((0, 2, 3), dtype=torch.float32).to(b_dtype)
        return gx, gw, gb, None, None, None


def gemm_rows(m: nn.Module, x: torch.Tensor) -> int:
    """Rows of the layer's GEMMs: batch x (output positions for a convolution,
    input positions for a transposed one)."""
    n, _, h, w = x.shape
    if isinstance(m, nn.ConvTranspose2d):
        return n * h * w
    k, s, p = m.kernel_size[0], m.stride[0], m.padding[0]
    return n * ((h + 2 * p - k) // s + 1) * ((w + 2 * p - k) // s + 1)


def _supported(m: nn.Module) -> bool:
    square = len(set(m.kernel_size)) == 1 and len(set(m.stride)) == 1 and len(set(m.padding)) == 1
    plain = m.groups == 1 and set(m.dilation) == {1} and m.padding_mode == "zeros" and isinstance(m.padding, tuple)
    return square and plain and not any(getattr(m, "output_padding", (0,)))


def _training_bf16_cpu(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dim() == 4 and torch.is_grad_enabled()
            and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def _use_narrow(m: nn.Module, x: torch.Tensor) -> bool:
    return (isinstance(m, nn.Conv2d) and m.stride[0] == 1 and m.out_channels <= NARROW_MAX_OUT
            and _training_bf16_cpu(x))


def _gemm_width(m: nn.Module) -> int:
    """The GEMMs' other dimension: output channels of a convolution, input channels
    of a transposed one."""
    return m.in_channels if isinstance(m, nn.ConvTranspose2d) else m.out_channels


def _use_gemm(m: nn.Module, x: torch.Tensor) -> bool:
    return _training_bf16_cpu(x) and _gemm_width(m) >= MIN_CHANNELS and gemm_rows(m, x) < ROWS_LIMIT


def _gemm_forward(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    rows, width = gemm_rows(m, x), _gemm_width(m)
    # ckk when the patch matrix (rows x k*k*C) is smaller than the weight (width x k*k*C).
    return _GemmConv.apply(x, m.weight, m.bias, m.kernel_size[0], m.stride[0], m.padding[0],
                           isinstance(m, nn.ConvTranspose2d), rows <= FULL_ROWS_MAX, rows < width)


class GemmConv2d(nn.Conv2d):
    def forward(self, x):
        if _use_narrow(self, x):
            return _NarrowConv.apply(x, self.weight, self.bias, self.kernel_size[0], self.padding[0])
        return _gemm_forward(self, x) if _use_gemm(self, x) else super().forward(x)


class GemmConvTranspose2d(nn.ConvTranspose2d):
    def forward(self, x, output_size=None):
        if output_size is None and _use_gemm(self, x):
            return _gemm_forward(self, x)
        return super().forward(x, output_size)


def enable(model: nn.Module) -> nn.Module:
    """Switch the model's supported convolutions to the GEMM form (in place; same
    parameters and state dict). Returns the model."""
    for m in model.modules():
        if type(m) is nn.Conv2d and _supported(m):
            m.__class__ = GemmConv2d
        elif type(m) is nn.ConvTranspose2d and _supported(m):
            m.__class__ = GemmConvTranspose2d
    return model


def worthwhile(device: torch.device, amp_dtype) -> bool:
    """Whether to enable(): bf16 autocast on an AVX-512 CPU without AMX. With AMX,
    oneDNN has AMX kernels for the convolution backward too; this project could not
    measure one (no AMX machine here), so those CPUs keep oneDNN's kernels."""
    if device.type != "cpu" or amp_dtype != torch.bfloat16:
        return False
    try:
        caps = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        return False
    return caps == "AVX512" and not cpu_has_amx()
