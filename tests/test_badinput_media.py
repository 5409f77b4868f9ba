"""Bad and unusual video files through `f2f-cam video`, `dataset`, `train` and `run`.

The corpus is generated here, once (no downloads): files a user can hand us by mistake
(empty, cut, damaged, a photo, sound only, no frames), one cut short like an unfinished
download, and valid but unusual videos (grey, alpha, odd size, variable frame rate, 8K,
several faces, extreme head poses, no face).

The rule for a user error (docs/RELIABILITY.md): one line on stderr that says what is
wrong and what to do, a non-zero exit, no traceback, and nothing written: no output
file, no temporary file beside it, no dataset folder, no persona installed. Valid
input works. Most commands run in this process through ``cli.main`` (a fresh
interpreter per command would take most of this file's time); the ``real_process``
tests check the same rule for whole ``f2f-cam`` processes.
"""

from __future__ import annotations

import json
import logging
import os
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest

from f2f_cam import paths
from f2f_cam.cli import main
from f2f_cam.landmarks import LandmarkDetector
from f2f_cam.persona import PersonaStore
from trainers import synth

from conftest import run_cli
from tests_helpers import one_line_error

FPS = 10
W, H = 320, 240


# -- the corpus ---------------------------------------------------------------------

def encode(path: Path, frames: list[np.ndarray], *, codec: str = "libx264", pix_fmt: str = "yuv420p",
           fmt: str = "rgb24", times: list[float] | None = None, options: dict | None = None,
           container_options: dict | None = None) -> Path:
    """Encode frames (numpy arrays in PyAV's ``fmt``) at FPS; ``times``: each frame's
    time in seconds instead (a variable frame rate)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=FPS, options=options or {})
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if times is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format=fmt)
            if times is not None:
                vf.pts, vf.time_base = round(times[i] * 1000), Fraction(1, 1000)
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return path


def silence(out, stream, n: int = 10) -> None:
    """n AAC frames of silence into ``stream`` of ``out``."""
    for i in range(n):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, i * 1024
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def marked(frame: np.ndarray, i: int) -> np.ndarray:
    """The frame with its number drawn as the grey level of a 32 px block (top left)."""
    frame = frame.copy()
    frame[:32, :32] = 8 * i + 20
    return frame


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("corpus")
    spec = synth.SynthSpec(width=W, height=H, fps=FPS, seconds=3.0, shift=20.0, seed=5)
    faces = [synth.render_frame(spec, synth.motion_at(spec, i)) for i in range(30)]
    c = {}

    # Files that are not a video we can use.
    c["empty"] = d / "empty.mp4"
    c["empty"].write_bytes(b"")
    whole = encode(d / "whole.mp4", faces[:20]).read_bytes()  # the index (moov) at the end
    c["cut"] = d / "cut.mp4"  # half of it: no index, nothing can be read
    c["cut"].write_bytes(whole[: len(whole) // 2])
    damaged = bytearray(whole)
    mid = len(damaged) // 2
    damaged[mid - 4000: mid + 4000] = np.random.default_rng(0).bytes(8000)
    c["corrupt"] = d / "corrupt.mp4"
    c["corrupt"].write_bytes(bytes(damaged))
    c["photo"] = d / "photo.mp4"  # a PNG, renamed
    c["photo"].write_bytes(cv2.imencode(".png", cv2.cvtColor(faces[0], cv2.COLOR_RGB2BGR))[1].tobytes())
    c["audio_only"] = d / "audio_only.mp4"
    with av.open(str(c["audio_only"]), "w", format="mp4") as out:
        silence(out, out.add_stream("aac", rate=48000))
    c["no_frames"] = d / "no_frames.mkv"  # a video stream that holds no frame
    with av.open(str(c["no_frames"]), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        silence(out, out.add_stream("aac", rate=48000))

    # A download cut short: the index first (faststart, as web videos are), the data cut.
    full = encode(d / "full.mp4", faces, container_options={"movflags": "faststart"}).read_bytes()
    c["truncated"] = d / "truncated.mp4"
    c["truncated"].write_bytes(full[: int(len(full) * 0.6)])

    # Valid, unusual videos.
    c["gray"] = encode(d / "gray.mkv", [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in faces[:12]],
                       codec="ffv1", pix_fmt="gray", fmt="gray")
    c["alpha"] = encode(d / "alpha.mov", [np.dstack([f, np.full((H, W), 128, np.uint8)]) for f in faces[:12]],
                        codec="qtrle", pix_fmt="argb", fmt="rgba")
    c["odd_size"] = encode(d / "odd_size.mkv", [cv2.resize(f, (321, 241)) for f in faces[:12]], pix_fmt="yuv444p")
    # A phone in low light: 1 s at 20 fps, then 1 s at 5 fps.
    times = [i * 0.05 for i in range(20)] + [1.0 + i * 0.2 for i in range(5)]
    c["vfr"] = encode(d / "vfr.mp4", [marked(faces[i], i) for i in range(25)], times=times)
    big = cv2.resize(faces[0], (7680, 4320), interpolation=cv2.INTER_NEAREST)
    c["8k"] = encode(d / "8k.mp4", [big], options={"preset": "ultrafast"})
    # The person, close to the camera, and a smaller face beside them (a photo on the
    # wall, someone further back): about 0.3 of its area (MediaPipe finds no smaller one here).
    near = synth.SynthSpec(width=W, height=H, fps=FPS, seconds=1.2, face_scale=1.5, shift=5, zoom=0.05, rotate=5,
                           seed=6)
    person = [synth.render_frame(near, synth.motion_at(near, i)) for i in range(12)]
    small = [cv2.copyMakeBorder(cv2.resize(f, (256, 192)), 24, 24, 32, 32, cv2.BORDER_CONSTANT) for f in faces[:12]]
    c["two_faces"] = encode(d / "two_faces.mp4", [np.hstack([s, f]) for s, f in zip(small, person)])
    c["twins"] = encode(d / "twins.mp4", [np.hstack([f, f]) for f in faces[:12]])  # two of the same size
    # Head poses no webcam user holds for long: upright, on its side, upside down, and
    # squeezed to 40 % of its width (about a profile's).
    square = [f[:, (W - H) // 2: (W + H) // 2] for f in faces[:16]]
    squeezed = [cv2.copyMakeBorder(cv2.resize(f, (96, H)), 0, 0, 72, 72, cv2.BORDER_CONSTANT) for f in square[12:]]
    c["poses"] = encode(d / "poses.mp4", square[:4] + [np.ascontiguousarray(np.rot90(f)) for f in square[4:8]]
                        + [np.ascontiguousarray(f[::-1, ::-1]) for f in square[8:12]] + squeezed)
    return c


def frames_of(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """Every frame of a video, RGB, and its time in seconds."""
    with av.open(str(path)) as c:
        decoded = list(c.decode(c.streams.video[0]))
        return [f.to_ndarray(format="rgb24") for f in decoded], [float(f.time) for f in decoded]


def test_the_corpus_is_what_it_says(corpus):
    """The generated files have the faults (or the features) each test relies on."""
    for name in ("cut", "empty"):
        with pytest.raises(av.error.FFmpegError):
            av.open(str(corpus[name]))
    with av.open(str(corpus["photo"])) as c:
        assert c.format.name == "png_pipe"  # FFmpeg takes it for a 1-frame video
    with av.open(str(corpus["audio_only"])) as c:
        assert not c.streams.video and c.streams.audio
    with av.open(str(corpus["no_frames"])) as c:
        assert c.streams.video and not list(c.decode(c.streams.video[0]))
    with av.open(str(corpus["corrupt"])) as c, pytest.raises(av.error.InvalidDataError):
        list(c.decode(c.streams.video[0]))
    with av.open(str(corpus["truncated"])) as c:
        assert c.streams.video[0].frames == 30  # the index promises 30 frames...
        assert 5 < sum(1 for p in c.demux(c.streams.video[0]) if p.size) < 25  # ...the data holds fewer
    with av.open(str(corpus["gray"])) as c, av.open(str(corpus["alpha"])) as a:
        assert c.streams.video[0].codec_context.pix_fmt == "gray"
        assert a.streams.video[0].codec_context.pix_fmt == "argb"
    times = frames_of(corpus["vfr"])[1]
    assert np.diff(times).min() == pytest.approx(0.05) and np.diff(times).max() == pytest.approx(0.2)
    with av.open(str(corpus["8k"])) as c:
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (7680, 4320)


# -- helpers --------------------------------------------------------------------------

def cli(capsys, *args) -> SimpleNamespace:
    """``f2f-cam ARGS`` in this process, as a finished process (returncode, stdout, stderr)."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out, stderr=err)


def warnings_logged(caplog) -> list[str]:
    """WARNING and worse, which the CLI prints on stderr too (cleared for the next call)."""
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    caplog.clear()
    return lines


def run_args(camera: Path, out: Path, seconds: float = 2) -> list:
    """`f2f-cam run` with the file as the camera, recorded to ``out`` for ``seconds``."""
    # A small output at 10 fps: what the file is made of here is the camera, not 720p encoding.
    return ["run", "--camera", camera, "--output", out, "--no-tray", "--seconds", seconds,
            "--size", "320x240", "--fps", "10", "--retarget", "transfer"]


def leftovers(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.fixture
def out(tmp_path) -> Path:
    """An empty folder for what the commands write."""
    (tmp_path / "out").mkdir()
    return tmp_path / "out"


# -- user errors: one line, non-zero, nothing written -------------------------------

UNUSABLE = {
    # case: what the one line says
    "empty": "is empty (0 bytes); give a video file",
    "cut": "is not a video file that can be read (Invalid data found when processing input); check that it plays",
    "corrupt": "is damaged and could not be decoded",
    "photo": "is a still image (PNG), not a video; give a video file",
    "audio_only": "has no video stream",
    "no_frames": "has no video frames",
}


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_an_unusable_file_is_one_line_and_leaves_nothing(case, corpus, out, installed_persona, capsys, caplog):
    """Every command refuses it the same way; nothing is written anywhere.

    empty: a 0-byte file (a failed copy). cut: half an MP4 whose index was at the end,
    so nothing in it can be found. corrupt: 8 KB overwritten mid-file; converting
    around the hole would leave a video whose second half is out of step with its
    audio, so it is refused ("use an undamaged copy"). photo: a PNG named .mp4 (FFmpeg
    would read it as a 1-frame video). audio_only: sound, no picture. no_frames: a
    video stream with no frame in it. `run --camera` fails too, at start or at the
    first damaged frame, and keeps no recording.
    """
    video = corpus[case]
    store = sorted(PersonaStore().names())
    for args in (["video", video, "-o", out / "o.mp4", "--quiet", "--retarget", "transfer"],
                 ["dataset", video, "-o", out / "ds", "--frames", "12", "--size", "64", "--quiet"],
                 ["train", video, "--name", "fresh", "--size", "64", "--frames", "12", "--epochs", "1", "--quiet"],
                 run_args(video, out / "run.mp4")):
        line = one_line_error(cli(capsys, *args), UNUSABLE[case])
        assert str(video) in line, line
        assert warnings_logged(caplog) == [], args[0]  # the CLI would print those too
        assert leftovers(out) == [], args[0]
    assert sorted(PersonaStore().names()) == store
    assert not (paths.data_dir() / "runs" / "fresh").exists()


@pytest.mark.parametrize("command", ["video", "dataset", "run"])
def test_real_process_a_damaged_file_is_one_line(command, corpus, out, installed_persona):
    """The same rule for a whole `f2f-cam` process (no traceback, nothing from
    MediaPipe or FFmpeg on stderr). The damage is found only while decoding: `run`
    has played the file for a moment when it stops."""
    video = corpus["corrupt"]
    args = {"video": ["video", video, "-o", out / "o.mp4", "--quiet", "--retarget", "transfer"],
            "dataset": ["dataset", video, "-o", out / "ds", "--frames", "12", "--size", "64", "--quiet"],
            "run": run_args(video, out / "run.mp4")}[command]
    one_line_error(run_cli(*args), f"{video} is damaged and could not be decoded", "use an undamaged copy")
    assert leftovers(out) == []


@pytest.mark.parametrize("threads", [1, 16])
def test_damaged_and_cut_files_read_the_same_on_any_number_of_cores(threads, corpus):
    """FFmpeg starts a decoding thread per core. Frame threads report a damaged frame
    late or never: with 16 of them corrupt.mp4 simply ended after 3 frames, a damaged
    file passed for a cut one (and the cut one lost its last frames). The source
    decodes with slice threads; 16 stands in for a big machine here (2 cores)."""
    from f2f_cam.errors import UserError
    from f2f_cam.sources import VideoFileSource

    with VideoFileSource(corpus["corrupt"]) as src, pytest.raises(UserError, match="is damaged"):
        src._stream.codec_context.thread_count = threads  # before the first packet
        list(src)
    with VideoFileSource(corpus["truncated"]) as src:
        src._stream.codec_context.thread_count = threads
        n = len(list(src))
    with av.open(str(corpus["truncated"])) as c:  # every whole frame in the data, then the cut one
        assert n == sum(1 for p in c.demux(c.streams.video[0]) if p.size and not p.is_corrupt)


# -- a download cut short: converted, and said so -----------------------------------

def test_real_process_a_truncated_video_converts_the_frames_that_decode_and_says_so(corpus, out,
                                                                                    installed_persona):
    """The one bad file that still converts: a user with half a download wants what is
    there. Exit 0, and one warning with the counts (the file's index promises 30)."""
    proc = run_cli("video", corpus["truncated"], "-o", out / "o.mp4", "--quiet", "--retarget", "transfer")
    assert proc.returncode == 0, proc.stderr
    got = len(frames_of(out / "o.mp4")[0])
    assert 5 < got < 25
    assert proc.stderr.strip().splitlines() == [
        f"WARNING f2f_cam.video: {corpus['truncated']} ended after {got} of 30 frames (truncated or damaged "
        f"file?); {out / 'o.mp4'} has the {got} that decoded"]
    assert f"wrote {out / 'o.mp4'}: {got} frames" in proc.stdout
    assert leftovers(out) == ["o.mp4"]


def test_a_truncated_video_makes_a_dataset_of_what_decodes_and_plays_as_a_camera(corpus, out, installed_persona,
                                                                                capsys, caplog):
    """dataset: the 8 frames are sampled over the frames that decode (not over the 30
    the index promises, most of them missing), with the same kind of warning; the
    dataset records both counts. run: the part that decodes plays in a loop, like any
    camera file."""
    video = corpus["truncated"]
    proc = cli(capsys, "dataset", video, "-o", out / "ds", "--frames", "8", "--size", "64", "--quiet")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "ds" / "dataset.json").read_text())
    got = meta["frames_decoded"]
    assert meta["frames_expected"] == 30 and 5 < got < 25 and meta["frames_sampled"] == 8
    assert meta["frames_kept"] >= 6 and max(p["frame"] for p in meta["pairs"]) >= got - 2
    assert warnings_logged(caplog) == [f"{video} ended after {got} of 30 frames (truncated or damaged file?); "
                                       f"the dataset is made of the {got} that decoded"]

    proc = cli(capsys, *run_args(video, out / "run.mp4", seconds=1))
    assert proc.returncode == 0, proc.stderr
    assert len(frames_of(out / "run.mp4")[0]) >= 8  # 1 s at 10 fps, looped over the cut


def test_a_short_dataset_of_a_truncated_video_says_why(corpus, out, capsys):
    """Too few frames for a split because the file was cut: the one line says so."""
    video = corpus["truncated"]
    proc = cli(capsys, "dataset", video, "-o", out / "ds", "--frames", "4", "--size", "64", "--quiet")
    one_line_error(proc, "too few for a train/val split", f"{video} ended after", "use a complete copy")
    assert leftovers(out) == []


# -- valid input works ----------------------------------------------------------------

VALID = {
    # case: (input size, output size of `video`)
    "gray": ((W, H), (W, H)),
    "alpha": ((W, H), (W, H)),
    "odd_size": ((321, 241), (320, 240)),  # rounded down to even: H.264 needs it
    "poses": ((H, H), (H, H)),
}


@pytest.mark.parametrize("case", list(VALID))
def test_unusual_but_valid_videos_work(case, corpus, out, installed_persona, capsys, caplog):
    """Grey (a security camera), alpha (an editor's export; the colour is used, alpha
    dropped), an odd size (a screen recording), and extreme head poses: every
    command works. `video` gives one frame per input frame; frames where no face is
    found (upside down, squeezed) follow the no-face rule (the last face held, the
    persona at rest before the first) and `dataset` skips them."""
    video = corpus[case]
    n = len(frames_of(video)[0])
    proc = cli(capsys, "video", video, "-o", out / "o.mp4", "--quiet", "--retarget", "transfer")
    assert proc.returncode == 0, proc.stderr
    frames, _ = frames_of(out / "o.mp4")
    assert len(frames) == n and frames[0].shape[1::-1] == VALID[case][1]
    assert frames[-1][H // 4: -H // 4].mean() > 10  # the persona, not a black frame
    if case == "poses":  # the upright ones at least
        assert int(proc.stdout.split("face in ")[1].split(",")[0]) >= 4

    proc = cli(capsys, "dataset", video, "-o", out / "ds", "--frames", "16", "--size", "64", "--quiet")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "ds" / "dataset.json").read_text())
    assert meta["frames_sampled"] == n and meta["frames_kept"] >= 6
    assert tuple(meta["crop"][k] for k in ("frame_width", "frame_height")) == VALID[case][0]

    proc = cli(capsys, *run_args(video, out / "run.mp4", seconds=1))
    assert proc.returncode == 0, proc.stderr
    assert len(frames_of(out / "run.mp4")[0]) >= 8
    assert warnings_logged(caplog) == []
    assert leftovers(out) == ["ds", "o.mp4", "run.mp4"]


def test_an_8k_video_works(corpus, out, installed_persona, capsys, caplog):
    """7680x4320 (one frame: 100 MB as RGB): converted at its own size (the default),
    played as a camera scaled into the output; one frame is too few for a dataset,
    which says so in one line."""
    video = corpus["8k"]
    proc = cli(capsys, "video", video, "-o", out / "o.mp4", "--quiet", "--retarget", "transfer")
    assert proc.returncode == 0, proc.stderr
    frames, _ = frames_of(out / "o.mp4")
    assert len(frames) == 1 and frames[0].shape == (4320, 7680, 3) and "face in 1" in proc.stdout
    one_line_error(cli(capsys, "dataset", video, "-o", out / "ds", "--size", "64", "--quiet"),
                   "only 1 of 1 sampled frames have one usable face (0 have none, 0 several", "use a longer video")
    proc = cli(capsys, *run_args(video, out / "run.mp4"))
    assert proc.returncode == 0 and int(proc.stdout.split(" processed")[0].split()[-1]) >= 1, proc.stdout
    assert len(frames_of(out / "run.mp4")[0]) >= 15
    assert warnings_logged(caplog) == []
    assert leftovers(out) == ["o.mp4", "run.mp4"]


def test_a_variable_frame_rate_video_stays_in_time(corpus, out, installed_persona, capsys):
    """1 s at 20 fps, then 1 s at 5 fps (a phone in low light): the output has a
    constant rate (the input's average) and shows each input frame at its own time,
    so the audio stays in step: frames are repeated over the slow part and dropped in
    the fast part. (One output frame per input frame put them up to 0.3 s off.)"""
    video = corpus["vfr"]
    with av.open(str(video)) as c:
        fps = float(c.streams.video[0].average_rate)  # 15.6: 25 frames over 1.6 s
    proc = cli(capsys, "video", video, "-o", out / "o.mp4", "--quiet", "--layout", "camera")
    assert proc.returncode == 0, proc.stderr
    frames, times = frames_of(out / "o.mp4")
    assert np.diff(times) == pytest.approx(1 / fps, abs=1e-3)  # a constant rate
    assert times[-1] == pytest.approx(1.8, abs=0.5 / fps)  # the last input frame's time
    shown = [round((f[4:28, 4:28].mean() - 20) / 8) for f in frames]  # the input frame number in each
    in_times = [i * 0.05 for i in range(20)] + [1.0 + i * 0.2 for i in range(5)]
    for t, i in zip(times, shown):  # the frame due then: within half an output frame
        assert in_times[i] <= t + 0.5 / fps and (i == 24 or in_times[i + 1] > t - 0.5 / fps), (t, i, shown)

    proc = cli(capsys, "dataset", video, "-o", out / "ds", "--frames", "25", "--size", "64", "--quiet")
    assert proc.returncode == 0 and json.loads((out / "ds" / "dataset.json").read_text())["frames_kept"] >= 20
    proc = cli(capsys, *run_args(video, out / "run.mp4", seconds=1))
    assert proc.returncode == 0, proc.stderr


def test_several_faces_the_largest_is_the_person(corpus, out, installed_persona, capsys, caplog):
    """A small face beside the person (a photo on the wall, someone far behind): the
    largest face is the one followed, by `video` and `run` as by `dataset`, which crops
    around it. Two faces of about the same size (twins.mp4): `video` and `run` take
    the largest (the same code), but `dataset` cannot tell whose persona to make and
    refuses in one line (a persona mixed from two people is worse than none)."""
    frame = frames_of(corpus["two_faces"])[0][0]
    with LandmarkDetector(mode="image") as det:
        assert len(det.detect_all(frame)) == 2  # both found...
        assert det(frame).xy[:, 0].min() > W  # ...and the person's, on the right, taken
    proc = cli(capsys, "video", corpus["two_faces"], "-o", out / "o.mp4", "--quiet", "--retarget", "transfer")
    assert proc.returncode == 0 and "12 frames, face in 12" in proc.stdout, proc.stderr
    proc = cli(capsys, "dataset", corpus["two_faces"], "-o", out / "ds", "--frames", "12", "--size", "64", "--quiet")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "ds" / "dataset.json").read_text())
    assert meta["frames_kept"] == 12 and meta["skipped"] == {"no face": 0, "several faces": 0}
    assert meta["crop"]["x"] >= W - 20  # around the person, not the small face
    proc = cli(capsys, *run_args(corpus["two_faces"], out / "run.mp4", seconds=1))
    assert proc.returncode == 0, proc.stderr

    with LandmarkDetector(mode="image") as det:
        assert len(det.detect_all(frames_of(corpus["twins"])[0][0])) == 2
    one_line_error(cli(capsys, "dataset", corpus["twins"], "-o", out / "twins-ds", "--frames", "12", "--size",
                       "64", "--quiet"), "no sampled frame", "has one face that is clearly the person's",
                   "(12 of the 12 show several faces of about the same size)", "use a video of one person alone")
    assert warnings_logged(caplog) == []
    assert leftovers(out) == ["ds", "o.mp4", "run.mp4"]


def test_no_face(faceless_video, out, installed_persona, capsys, caplog):
    """Noise with no face: `video`, `dataset` and `train` refuse it in one line (there
    is nothing to convert or learn). `run` is a live camera, where nobody in view is
    normal: it keeps running and shows the persona at rest."""
    for args, text in ((["video", faceless_video, "-o", out / "o.mp4", "--quiet"], "no face found in any frame"),
                       (["dataset", faceless_video, "-o", out / "ds", "--size", "64", "--quiet"], "no face found"),
                       (["train", faceless_video, "--name", "fresh", "--size", "64", "--quiet"], "no face found")):
        one_line_error(cli(capsys, *args), text, "use a video where")
    assert leftovers(out) == [] and PersonaStore().names() == ["tiny"]
    proc = cli(capsys, *run_args(faceless_video, out / "run.mp4", seconds=1))
    assert proc.returncode == 0, proc.stderr
    frames, _ = frames_of(out / "run.mp4")
    assert len(frames) >= 8 and frames[-1][:, W // 2 - 40: W // 2 + 40].mean() > 10  # the persona at rest
    assert warnings_logged(caplog) == []
