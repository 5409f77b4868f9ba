"""What this machine offers: a display for windows and trays, native bf16 for torch.

One answer each, asked by every part that needs it (the preview, the tray, doctor,
the generator, the trainer), so they can never disagree.
"""

from __future__ import annotations

import os
import sys


def display_problem() -> str | None:
    """Why no window or tray can open here (no X11/Wayland display), or None:
    "DISPLAY and WAYLAND_DISPLAY are unset".

    Windows and macOS always have a desktop session for a logged-in user.
    """
    if sys.platform in ("win32", "darwin"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return "DISPLAY and WAYLAND_DISPLAY are unset"


def has_display() -> bool:
    return display_problem() is None


def native_bf16(device: str = "cpu") -> bool:
    """Whether bf16 runs natively on ``device`` (AVX512-BF16/AMX CPUs, Ampere+ GPUs)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX-BF16 tiles (oneDNN then has fast bf16 backward kernels)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return "amx_bf16" in f.read()
    except OSError:  # not Linux: no way to ask without a probe kernel
        return False


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def split_threads() -> int:
    """Give torch every CPU but one, and return its thread count: with the stages
    overlapped, MediaPipe's landmarks (one core, ~12 ms a frame) run on that one while
    the generator works. Measured on 2 cores (README, "Measured"): torch on both
    slowed the generator in the pipeline 2.5x and the whole to 39 fps; on one, 55 fps.

    OpenCV's resizes and colour conversions (the compositor, the sketch) run on one
    thread too: on 2 cores its worker on the other core waited behind MediaPipe, 2.5 ms
    more latency p95 for the 30-minute persona on the Zen 1 (README, "Measured")."""
    import cv2
    import torch

    n = max(1, cpu_count() - 1)
    torch.set_num_threads(n)
    cv2.setNumThreads(n)  # one on 2 cores
    return n
