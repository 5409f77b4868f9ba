"""Shared fixtures. Every fixture is generated here (no downloads): talking-head clips
from skimage's public-domain astronaut, and personas exported from freshly
initialised generators through the real export path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainers import synth

ROOT = Path(__file__).resolve().parents[1]

# Tiny so that the suite is fast on 2 CPU cores: 64 px, 8 base filters.
TINY_SIZE, TINY_NGF = 64, 8


@pytest.fixture(scope="session", autouse=True)
def _fork_server():
    """``run_cli``'s fork server lives for the session (started on first use)."""
    import forkcli

    yield
    forkcli.close()


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    """Point every f2f-cam folder at a fresh temp dir: tests never touch the real user's."""
    base = tmp_path_factory.mktemp("home")
    for var in ("DATA", "CONFIG", "CACHE", "RUNTIME", "LOG"):
        monkeypatch.setenv(f"F2F_CAM_{var}_DIR", str(base / var.lower()))
    # Compiling a generator takes 10-40 s of CPU: only the tests about it turn it on.
    monkeypatch.setenv("F2F_CAM_COMPILE", "0")
    # The bundled demo persona is hidden unless a test asks for it (`with_bundled`), so
    # tests see exactly the personas they install.
    (base / "no-bundled").mkdir()
    monkeypatch.setenv("F2F_CAM_BUNDLED_PERSONAS_DIR", str(base / "no-bundled"))
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    yield base
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)  # a daemon started in a test gives torch one core less


@pytest.fixture
def with_bundled(monkeypatch):
    """The personas bundled in models/ are visible (as for a user)."""
    monkeypatch.delenv("F2F_CAM_BUNDLED_PERSONAS_DIR")


@pytest.fixture(scope="session")
def clip_spec() -> synth.SynthSpec:
    return synth.SynthSpec(width=320, height=240, fps=15.0, seconds=2.0, shift=20.0, audio=True, seed=1)


@pytest.fixture(scope="session")
def talking_head(tmp_path_factory, clip_spec):
    """(path, motions): a 2 s 320x240 clip with head motion, mouth and audio."""
    path = tmp_path_factory.mktemp("clips") / "talking_head.mp4"
    motions = synth.write_video(path, clip_spec)
    return path, motions


@pytest.fixture(scope="session")
def silent_head(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "silent.mp4"
    synth.write_video(path, synth.SynthSpec(width=320, height=240, fps=10.0, seconds=1.5, shift=20.0, seed=2))
    return path


def write_frames(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Encode RGB frames to an H.264 .mp4 with PyAV."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session")
def faceless_video(tmp_path_factory):
    """1 s of coloured noise: a real video with no face in it."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(10)]
    return write_frames(tmp_path_factory.mktemp("clips") / "noise.mp4", frames)


@pytest.fixture(scope="session")
def gap_video(tmp_path_factory):
    """Black frames, then the face, then black again, then the face: the no-face policy."""
    spec = synth.SynthSpec(width=320, height=240, fps=10.0, seconds=2.0, shift=20.0, seed=3)
    frames = [synth.render_frame(spec, synth.motion_at(spec, i)) for i in range(20)]
    black = np.zeros_like(frames[0])
    for i in list(range(0, 4)) + list(range(10, 14)):
        frames[i] = black
    return write_frames(tmp_path_factory.mktemp("clips") / "gaps.mp4", frames)


def detect_all(path: Path) -> tuple[list, tuple[int, int]]:
    """Landmarks of every frame of a video (None where no face)."""
    from f2f_cam.landmarks import LandmarkDetector
    from f2f_cam.sources import VideoFileSource

    with VideoFileSource(path) as src, LandmarkDetector(mode="video") as det:
        faces = [det(frame, int(t * 1000)) for t, frame in src]
        return faces, src.size


@pytest.fixture(scope="session")
def tiny_persona(tmp_path_factory, talking_head):
    """(folder, eager generator): a persona exported from a fresh, untrained U-Net."""
    import torch

    from trainers.dataset import face_crop, reference_landmarks
    from trainers.export import export_persona
    from trainers.networks import define_G

    faces, size = detect_all(talking_head[0])
    points = [f.points for f in faces if f is not None]
    crop = face_crop(points, size)
    canonical, neutral = reference_landmarks(points, crop, TINY_SIZE)
    torch.manual_seed(0)
    net = define_G("unet", size=TINY_SIZE, ngf=TINY_NGF).eval()
    folder = export_persona(
        net, tmp_path_factory.mktemp("personas") / "tiny", name="tiny", image_size=TINY_SIZE,
        crop=crop, canonical=canonical, neutral=neutral, display_name="Tiny Test",
        training={"frames": len(points), "epochs": 0, "device": "cpu"},
        generator_info={"ngf": TINY_NGF},
    )
    return folder, net


@pytest.fixture(scope="session")
def expression_persona(tmp_path_factory, talking_head, tiny_persona):
    """(folder, model): 'tinyx', the tiny persona's generator with an expression model
    fitted on a dataset of the talking_head clip (a format-2 persona)."""
    from f2f_cam.geometry import Crop
    from trainers.dataset import build_dataset, load_dataset
    from trainers.export import export_persona, fit_expression

    dataset = tmp_path_factory.mktemp("datasets") / "talking"
    build_dataset(talking_head[0], dataset, frames=30, size=TINY_SIZE, val_fraction=0.2, progress=False)
    meta = load_dataset(dataset)
    model = fit_expression(meta)
    folder = export_persona(
        tiny_persona[1], tmp_path_factory.mktemp("personas") / "tinyx", name="tinyx", image_size=TINY_SIZE,
        crop=Crop(**meta["crop"]), canonical=np.array(meta["canonical_landmarks"]),
        neutral=np.array(meta["neutral_landmarks"]), display_name="Tiny Expression", expression_model=model,
    )
    return folder, model


@pytest.fixture
def installed_persona(tiny_persona):
    """The tiny persona installed in this test's (isolated) store."""
    from f2f_cam.persona import PersonaStore

    return PersonaStore().install_folder(tiny_persona[0])


def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``f2f-cam ARGS`` in a process of its own, as a user would: forked from a
    server that has imported torch and MediaPipe once (``forkcli``), else the installed
    console script."""
    import forkcli

    args = [str(a) for a in args]
    server = forkcli.server()
    if server is not None:
        proc = server.run(args, timeout=300)
    else:
        exe = Path(sys.executable).with_name("f2f-cam")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "f2f_cam"]
        proc = subprocess.run(cmd + args, capture_output=True, text=True, env=dict(os.environ), timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"f2f-cam {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc
