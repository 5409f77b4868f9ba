"""The one capture thread: newest frame wins, a lost camera is reopened."""

import time

import numpy as np

from f2f_cam.capture import Capture
from f2f_cam.sources import CameraSource, VideoFileSource, open_source


def test_capture_keeps_only_the_newest_frame(talking_head):
    """A video file opened through OpenCV stands in for a webcam (no device here)."""
    with VideoFileSource(talking_head[0]) as src:
        frames = [f for _, f in src]
    # Long stall and retry times: the file's end must not count as a lost camera here.
    cap = Capture(lambda: CameraSource(str(talking_head[0])), retry_s=60, stall_s=60).start()
    try:
        first = cap.read(timeout=5)
        assert first is not None and first[2].shape == (240, 320, 3)
        deadline = time.monotonic() + 10
        while cap.captured < len(frames) and time.monotonic() < deadline:
            time.sleep(0.05)  # nobody reads: the capture thread keeps overwriting one slot
        assert cap.captured == len(frames) and cap.state == "ok" and cap.size == (320, 240)
        seq, _, newest = cap.read(timeout=1)
        assert seq == len(frames)
        assert np.abs(newest.astype(int) - frames[-1].astype(int)).mean() < 3  # the last, not the next
        assert cap.dropped >= len(frames) - 3  # every frame between the first and the last
        assert cap.read(timeout=0.2) is None  # nothing newer has come since
    finally:
        cap.close()


def test_a_file_played_live_keeps_its_frame_rate(talking_head):
    with open_source(talking_head[0], live=True) as src:
        t0 = time.monotonic()
        times = [src.read(timeout=1)[0] for _ in range(15)]
        elapsed = time.monotonic() - t0
    assert np.allclose(np.diff(times), 1 / 15, atol=1e-3)
    assert 0.8 < elapsed < 1.5  # 15 frames of a 15 fps clip: in real time, not at decode speed
