"""The virtual camera sink ("Face2Face Cam") on pyvirtualcam.

Frames go to the backend as RGB uint8 (H, W, 3) (``PixelFormat.RGB``): the format the
pipeline already makes, so nothing is converted or copied on the way out.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import numpy as np

from f2f_cam.errors import UserError, one_line

log = logging.getLogger(__name__)

CARD_LABEL = "Face2Face Cam"
# What `--backend auto` tries, in order, among those pyvirtualcam has on this OS.
BUILTIN_BACKENDS = ("v4l2loopback", "obs", "unitycapture")
BACKEND_CHOICES = ("auto",) + BUILTIN_BACKENDS
SYSFS_V4L = Path("/sys/class/video4linux")
LINUX_INSTALLER = "installer/linux/install.sh"  # in a checkout; sets up v4l2loopback as CARD_LABEL


def how_to_get_a_backend(system: str | None = None) -> str:
    """One line, for this OS, on how to get a virtual camera (the installer does it)."""
    system = system or platform.system()
    if system == "Linux":
        return (f"install v4l2loopback: `sudo {LINUX_INSTALLER}`, or "
                f"`sudo modprobe v4l2loopback card_label=\"{CARD_LABEL}\" exclusive_caps=1` "
                "(Debian/Ubuntu package: v4l2loopback-dkms)")
    if system == "Windows":
        return ("install OBS Studio and start its virtual camera once (Tools > Start Virtual Camera), "
                "or run `installer/windows/install.ps1`")
    if system == "Darwin":
        return ("install OBS Studio and start its virtual camera once (Start Virtual Camera), "
                "or run `installer/macos/install.sh`")
    return "this OS has no virtual camera backend in pyvirtualcam; use --output window or --output FILE.mp4"


def v4l2_devices(sysfs: Path = SYSFS_V4L) -> list[tuple[str, str]]:
    """(/dev/videoN, card label) of every video4linux device, in N order (Linux only)."""
    out = []
    if not sysfs.is_dir():
        return out
    for entry in sorted(sysfs.glob("video*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 1 << 30):
        try:
            label = (entry / "name").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            label = ""
        out.append((f"/dev/{entry.name}", label))
    return out


def default_device(backend: str, sysfs: Path = SYSFS_V4L) -> str | None:
    """The device to use when none is named: on v4l2loopback the one labelled
    "Face2Face Cam" (what the installer sets up), else the backend's own default."""
    if backend != "v4l2loopback":
        return None
    for dev, label in v4l2_devices(sysfs):
        if label == CARD_LABEL:
            return dev
    return None


def available_backends() -> list[str]:
    """Backend names pyvirtualcam has registered in this process (built-in or a test's)."""
    import pyvirtualcam.camera

    return list(pyvirtualcam.camera.BACKENDS)


class VirtualCamSink:
    """A pyvirtualcam camera that takes RGB uint8 (H, W, 3) frames.

    ``backend="auto"`` tries this OS's built-in backends in order; any other name must
    be registered with pyvirtualcam (a test's recording backend, say). When none works
    the ``UserError`` lists why each failed and says how to get one.
    """

    kind = "virtualcam"

    def __init__(self, size: tuple[int, int], fps: float, backend: str = "auto", device: str | None = None):
        self.width, self.height = size
        self.fps = float(fps)
        registered = available_backends()
        if backend == "auto":
            names = [b for b in BUILTIN_BACKENDS if b in registered]
        elif backend in registered:
            names = [backend]
        elif backend in BUILTIN_BACKENDS:
            raise UserError(f"virtual camera backend '{backend}' does not exist on {platform.system()}; "
                            f"use --backend auto; {how_to_get_a_backend()}")
        else:
            raise UserError(f"unknown virtual camera backend '{backend}'; choose one of: "
                            f"{', '.join(dict.fromkeys(['auto', *BUILTIN_BACKENDS, *registered]))}")
        self._device_arg = device
        self._cam = self._open(names)
        self._names = [self._cam.backend]  # what reopen() tries: the backend that worked
        self._last = (self._cam.backend, self._cam.device)  # described while it is being reopened
        log.info("virtual camera: %s %s, %dx%d at %g fps", self.backend, self.device, self.width,
                 self.height, self.fps)

    def _open(self, names: list[str]):
        import pyvirtualcam

        errors = []
        for name in names:
            dev = self._device_arg or default_device(name)
            try:
                return pyvirtualcam.Camera(self.width, self.height, self.fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                           backend=name, device=dev)
            except Exception as e:  # each backend fails in its own way (RuntimeError, OSError, ...)
                errors.append(f"{name}: {one_line(e).removeprefix(repr(name) + ' backend: ')}")
        why = "; ".join(errors) or f"pyvirtualcam has no backend on {platform.system()}"
        raise UserError(f"no virtual camera could be opened ({why}); {how_to_get_a_backend()}; "
                        "or run without one: --output window or --output FILE.mp4")

    def reopen(self) -> None:
        """Close the camera and open it again (its backend failed mid-stream: the
        v4l2loopback module reloaded, OBS restarted). Raises UserError while it cannot."""
        try:
            self.close()
        except Exception as e:  # a broken backend can fail to close too; it is being replaced
            log.debug("closing the failed virtual camera: %s", e)
        self._cam = self._open(self._names)
        self._last = (self._cam.backend, self._cam.device)

    @property
    def backend(self) -> str:
        return self._last[0]

    @property
    def device(self) -> str:
        return self._last[1]

    def describe(self) -> dict:
        return {"kind": self.kind, "backend": self.backend, "device": self.device,
                "size": [self.width, self.height], "fps": self.fps}

    def write(self, frame: np.ndarray, t: float | None = None) -> None:
        """frame: RGB uint8 (H, W, 3), C-contiguous (then pyvirtualcam sends it as is)."""
        self._cam.send(frame)

    def sleep_until_next_frame(self) -> None:
        self._cam.sleep_until_next_frame()

    def close(self) -> None:
        if self._cam is not None:
            cam, self._cam = self._cam, None
            cam.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
