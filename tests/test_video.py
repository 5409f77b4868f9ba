import os

import av
import numpy as np
import pytest

from conftest import run_cli
from tests_helpers import one_line_error


def probe(path) -> dict:
    """Decode a file fully: what a player would see."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        audio = c.streams.audio[0] if c.streams.audio else None
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        adur = float(audio.duration * audio.time_base) if audio is not None and audio.duration else None
        return {"frames": frames, "count": len(frames), "fps": float(v.average_rate),
                "size": (v.codec_context.width, v.codec_context.height),
                "duration": c.duration / 1e6 if c.duration else None,
                "audio": audio is not None, "audio_duration": adur}


def leftovers(folder) -> list[str]:
    return [n for n in os.listdir(folder) if n.endswith(".partial") or n.startswith(".")]


@pytest.mark.parametrize("layout", ["persona", "side-by-side", "landmarks", "camera"])
def test_video_keeps_frames_fps_duration_and_audio(layout, talking_head, installed_persona, tmp_path):
    src, motions = talking_head
    out = tmp_path / f"out-{layout}.mp4"
    proc = run_cli("video", src, "-o", out, "--layout", layout, "--persona", "tiny")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    a, b = probe(src), probe(out)
    assert b["count"] == a["count"]
    assert b["fps"] == pytest.approx(a["fps"])
    assert b["duration"] == pytest.approx(a["duration"], abs=0.1)
    assert b["audio"] and a["audio"]
    assert b["audio_duration"] == pytest.approx(a["audio_duration"], abs=0.05)
    w, h = a["size"]
    assert b["size"] == ((w + 2 * h, h) if layout == "side-by-side" else (w, h))
    assert leftovers(tmp_path) == []
    if layout == "camera":  # passthrough: the same pictures, up to re-encoding
        diff = np.abs(a["frames"][5].astype(int) - b["frames"][5].astype(int)).mean()
        assert diff < 4
    elif layout == "persona":  # the square face fitted undistorted: black bars left and right
        f = b["frames"][5].astype(int)
        bar = (w - h) // 2
        assert f[:, : bar - 2].max() < 16 and f[:, w - bar + 2:].max() < 16
        assert f[:, bar + 2: w - bar - 2].mean() > 10
    else:  # something was drawn, and it follows the mouth (known from the clip's ground truth)
        mouth = [m.mouth for m in motions]
        shut, wide = int(np.argmin(mouth)), int(np.argmax(mouth))
        assert mouth[wide] - mouth[shut] > 0.5
        assert b["frames"][shut].mean() > 3
        changed = np.abs(b["frames"][shut].astype(int) - b["frames"][wide].astype(int)).max(axis=2) > 64
        assert changed.sum() > 100, f"only {changed.sum()} pixels differ between mouth shut and open"


def test_video_without_audio_has_no_audio_and_custom_size(silent_head, installed_persona, tmp_path):
    out = tmp_path / "out.mkv"
    proc = run_cli("video", silent_head, "-o", out, "--size", "256x144", "--quiet")
    assert proc.returncode == 0, proc.stderr
    b = probe(out)
    assert not b["audio"] and b["size"] == (256, 144) and b["count"] == probe(silent_head)["count"]


def test_landmarks_layout_works_without_any_persona(silent_head, tmp_path):
    out = tmp_path / "sketch.mp4"
    proc = run_cli("video", silent_head, "-o", out, "--layout", "landmarks", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert probe(out)["frames"][3].max() > 200  # bright sketch lines on black


def test_no_face_frames_hold_last_face_and_start_idle(gap_video, installed_persona, tmp_path):
    """Frames 0-3 and 10-13 have no face: the first show the persona at rest, the
    others repeat the last generated frame."""
    from f2f_cam import sketch
    from f2f_cam.compositor import fit_into
    from f2f_cam.generator import Generator

    out = tmp_path / "gaps.mp4"
    proc = run_cli("video", gap_video, "-o", out, "--layout", "persona", "--quiet")
    assert proc.returncode == 0, proc.stderr
    frames = probe(out)["frames"]
    assert len(frames) == 20
    gen = Generator(installed_persona)
    idle = np.zeros_like(frames[0])
    fit_into(gen(sketch.render(installed_persona.neutral, installed_persona.image_size)), idle)

    def close(x, y):
        return np.abs(x.astype(int) - y.astype(int)).mean()

    for i in range(4):
        assert close(frames[i], idle) < 3, f"frame {i} is not the idle frame"
    for i in range(10, 14):
        assert close(frames[i], frames[9]) < 3, f"frame {i} does not hold frame 9"
    assert close(frames[9], idle) > close(frames[10], frames[9])



def test_missing_input(tmp_path, installed_persona):
    one_line_error(run_cli("video", tmp_path / "nope.mp4", "-o", tmp_path / "o.mp4"), "no such file")
    assert os.listdir(tmp_path) == []


def test_not_a_video(tmp_path, installed_persona):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 50)
    one_line_error(run_cli("video", bad, "-o", tmp_path / "o.mp4"), "not a video file")
    assert sorted(os.listdir(tmp_path)) == ["notes.mp4"]


def test_video_with_no_face(faceless_video, tmp_path, installed_persona):
    out = tmp_path / "o.mp4"
    one_line_error(run_cli("video", faceless_video, "-o", out, "--quiet"), "no face found")
    assert os.listdir(tmp_path) == []


def test_unknown_persona_and_layout_and_retarget(silent_head, tmp_path, installed_persona):
    out = tmp_path / "o.mp4"
    one_line_error(run_cli("video", silent_head, "-o", out, "--persona", "ghost"),
                   "unknown persona 'ghost'", "tiny")
    one_line_error(run_cli("video", silent_head, "-o", out, "--layout", "grid"),
                   "unknown layout 'grid'", "side-by-side")
    one_line_error(run_cli("video", silent_head, "-o", out, "--retarget", "warp"), "unknown retarget mode")
    one_line_error(run_cli("video", silent_head, "-o", out, "--size", "big"), "invalid size")
    assert os.listdir(tmp_path) == []


def test_no_persona_installed(silent_head, tmp_path):
    one_line_error(run_cli("video", silent_head, "-o", tmp_path / "o.mp4"), "needs a persona", "f2f-cam train")


@pytest.mark.parametrize("target", ["missing-dir/o.mp4", "o.xyz", "adir"])
def test_unwritable_output(silent_head, tmp_path, installed_persona, target):
    (tmp_path / "adir").mkdir()
    one_line_error(run_cli("video", silent_head, "-o", tmp_path / target, "--quiet"), "cannot write")
    assert sorted(os.listdir(tmp_path)) == ["adir"] and os.listdir(tmp_path / "adir") == []


def test_missing_option_is_one_line_usage_error(silent_head):
    proc = run_cli("video", silent_head)
    one_line_error(proc, "Missing option")
    assert proc.returncode == 2


def test_verbose_shows_traceback(tmp_path):
    proc = run_cli("--verbose", "video", tmp_path / "nope.mp4", "-o", tmp_path / "o.mp4")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "no such file" in proc.stderr
