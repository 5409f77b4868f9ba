"""The virtual camera sink through a real pyvirtualcam backend registered by the test."""

import time

import numpy as np
import pytest
import pyvirtualcam
import pyvirtualcam.camera
from pyvirtualcam.util import encode_fourcc

from f2f_cam.sinks import virtualcam
from f2f_cam.errors import UserError
from f2f_cam.sinks.paced import Pacer
from f2f_cam.sinks.virtualcam import VirtualCamSink


class Recorder:
    """A pyvirtualcam backend that keeps what it is sent (frames arrive flattened)."""

    last = None

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        if device not in (None, "rec0", "/dev/video10"):
            raise RuntimeError(f"no such device {device}")
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self._device = device or "rec0"
        self.sent, self.times, self.closed = [], [], False
        Recorder.last = self

    def send(self, frame):
        self.times.append(time.perf_counter())
        self.sent.append(frame)

    def close(self):
        self.closed = True

    def device(self):
        return self._device

    def native_fourcc(self):
        return self.fourcc


@pytest.fixture
def recorder():
    pyvirtualcam.register_backend("recorder", Recorder)
    yield Recorder
    pyvirtualcam.camera.BACKENDS.pop("recorder", None)


def test_frames_reach_the_backend_as_rgb_without_a_copy(recorder):
    with VirtualCamSink((64, 48), 25, backend="recorder") as sink:
        rec = Recorder.last
        assert (rec.width, rec.height, rec.fps) == (64, 48, 25)
        assert rec.fourcc == encode_fourcc(pyvirtualcam.PixelFormat.RGB.value)
        assert sink.describe() == {"kind": "virtualcam", "backend": "recorder", "device": "rec0",
                                   "size": [64, 48], "fps": 25.0}
        frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        sink.write(frame)
        sent = rec.sent[0]
        assert sent.ndim == 1 and sent.dtype == np.uint8
        assert np.array_equal(sent.reshape(48, 64, 3), frame)
        assert np.shares_memory(sent, frame)  # handed over as is
        with pytest.raises(ValueError, match="frame shape"):
            sink.write(np.zeros((48, 65, 3), np.uint8))
    assert rec.closed
    sink.close()  # twice is fine


def test_unknown_and_foreign_backends_say_what_to_do(recorder):
    with pytest.raises(UserError, match="unknown virtual camera backend 'nope'; choose one of: auto, .*recorder"):
        VirtualCamSink((64, 48), 30, backend="nope")
    if "obs" not in pyvirtualcam.camera.BACKENDS:
        with pytest.raises(UserError, match="backend 'obs' does not exist on"):
            VirtualCamSink((64, 48), 30, backend="obs")
    with pytest.raises(UserError, match="no virtual camera could be opened .*no such device /dev/nope"):
        VirtualCamSink((64, 48), 30, backend="recorder", device="/dev/nope")


@pytest.mark.skipif("v4l2loopback" not in pyvirtualcam.camera.BACKENDS, reason="Linux only")
def test_no_v4l2loopback_gives_the_linux_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(virtualcam, "SYSFS_V4L", tmp_path)  # no devices at all
    try:
        VirtualCamSink((64, 48), 30, backend="auto").close()
        pytest.skip("this machine has a working v4l2loopback device")
    except UserError as e:
        msg = str(e)
    assert "v4l2loopback" in msg and "modprobe v4l2loopback" in msg and "installer/linux/install.sh" in msg
    assert 'card_label="Face2Face Cam" exclusive_caps=1' in msg
    assert "--output window" in msg and "\n" not in msg


def test_how_to_get_a_backend_per_os():
    assert "installer/windows/install.ps1" in virtualcam.how_to_get_a_backend("Windows")
    assert "OBS" in virtualcam.how_to_get_a_backend("Darwin")
    assert "installer/macos/install.sh" in virtualcam.how_to_get_a_backend("Darwin")
    assert "sudo installer/linux/install.sh" in virtualcam.how_to_get_a_backend("Linux")


def test_default_device_is_the_labelled_loopback(tmp_path):
    for n, label in ((0, "Integrated Camera"), (10, "Face2Face Cam"), (2, "Dummy video device")):
        (tmp_path / f"video{n}").mkdir()
        (tmp_path / f"video{n}" / "name").write_text(label + "\n")
    assert virtualcam.v4l2_devices(tmp_path) == [("/dev/video0", "Integrated Camera"),
                                                 ("/dev/video2", "Dummy video device"),
                                                 ("/dev/video10", "Face2Face Cam")]
    assert virtualcam.default_device("v4l2loopback", tmp_path) == "/dev/video10"
    assert virtualcam.default_device("obs", tmp_path) is None
    (tmp_path / "video10" / "name").write_text("Other\n")
    assert virtualcam.default_device("v4l2loopback", tmp_path) is None  # pyvirtualcam's default then
    assert virtualcam.default_device("v4l2loopback", tmp_path / "missing") is None


def test_pacer_keeps_the_rate_without_bursts():
    pacer = Pacer(50)
    times = []
    for _ in range(16):
        times.append(time.perf_counter())
        pacer.sleep_until_next_frame()
    gaps = np.diff(times)
    assert 0.015 < np.median(gaps) < 0.025
    # A stall (a slow frame): afterwards the pace resumes at 50 fps, no catch-up burst.
    time.sleep(0.1)
    times = [time.perf_counter()]
    for _ in range(4):
        pacer.sleep_until_next_frame()
        times.append(time.perf_counter())
    assert np.diff(times).min() > 0.012
