"""The end-of-training verdict: figures in, plain words and advice out."""

import json

import numpy as np
import pytest

from f2f_cam.landmarks import BLENDSHAPE_NAMES
from trainers.verdict import GOAL_PSNR, coverage, judge

from conftest import run_cli

RESUME = "`f2f-cam train v.mp4 --name x --resume --force --minutes 30` continues this run"


def _meta(n=300, jaw=0.6, blink=0.9, smile=0.5, brow=0.4, yaw_deg=20.0, kept=None, sampled=None):
    """A dataset's pairs whose scores rise to the given peaks and whose head turns by
    +-yaw_deg/2 (a ramp over the frames)."""
    pairs = []
    for i in range(n):
        s = np.zeros(52)
        ramp = i / (n - 1)
        for name, peak in (("jawOpen", jaw), ("eyeBlinkLeft", blink), ("eyeBlinkRight", blink),
                           ("mouthSmileLeft", smile), ("mouthSmileRight", smile), ("browInnerUp", brow)):
            s[BLENDSHAPE_NAMES.index(name)] = peak * ramp
        a = np.radians(yaw_deg * (ramp - 0.5))
        pose = np.eye(4)
        pose[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        pose[2, 3] = -50
        pairs.append({"blendshapes": s.tolist(), "pose": pose.tolist()})
    return {"pairs": pairs, "frames_kept": kept or n, "frames_sampled": sampled or n}


GOOD = {"psnr": 28.0, "ssim": 0.9, "sharpness_ratio": 0.9}
EXPR = {"heldout_median_px": 1.7, "face_width_px": 121.0}


def test_coverage_reads_peaks_and_head_turns_from_the_scores_and_poses():
    c = coverage(_meta(jaw=0.6, yaw_deg=20.0, kept=300, sampled=400))
    assert c["mouth_p99"] == pytest.approx(0.6 * 0.99, abs=0.01)
    assert c["yaw_range_deg"] == pytest.approx(20.0 * 0.9, abs=0.5)  # 5th to 95th percentile
    assert c["frames"] == 300 and c["skipped_share"] == 0.25


def test_a_good_persona_from_a_rich_video_gets_no_advice():
    v = judge(GOOD, coverage(_meta()), EXPR, stopped="time budget", resume_command=RESUME)
    assert v.level == "good" and v.advice == []
    assert "28.0 dB" in v.summary and "1.7 px" in v.summary
    assert "nothing to improve" in v.lines()


@pytest.mark.parametrize("change, advice", [
    (dict(jaw=0.1), "record more talking"),
    (dict(blink=0.1), "no blinks seen"),
    (dict(smile=0.05), "smile a few times"),
    (dict(brow=0.05), "eyebrows hardly move"),
    (dict(yaw_deg=4.0), "turn it a little left and right"),
    (dict(n=120), "only 120 usable frames"),
    (dict(kept=300, sampled=500), "40% of the sampled frames had no single clear face"),
])
def test_what_the_video_lacks_is_the_advice(change, advice):
    v = judge(GOOD, coverage(_meta(**change)), EXPR, stopped="done", resume_command=RESUME)
    assert len(v.advice) == 1 and advice in v.advice[0]


def test_eyes_drawn_worse_than_the_face_are_named():
    clean = dict(GOOD, psnr_face=29.0, psnr_eyes=24.0)  # 5 dB below: the eyes look like eyes
    v = judge(clean, coverage(_meta()), EXPR, stopped="done", resume_command=RESUME)
    assert v.level == "good" and v.advice == [] and "24.0 dB over the eyes" in v.summary
    smeared = dict(GOOD, psnr_face=29.0, psnr_eyes=21.5)
    v = judge(smeared, coverage(_meta()), EXPR, stopped="done", resume_command=RESUME)
    assert v.level == "usable" and len(v.advice) == 1
    assert "the eyes come out smeared or speckled (7.5 dB below" in v.advice[0] and "--lambda-parts" in v.advice[0]
    assert "train longer" not in v.advice[0]  # it ran its epochs
    v = judge(smeared, coverage(_meta()), EXPR, stopped="time budget", resume_command=RESUME)
    assert len(v.advice) == 2 and "train longer, and keep `--lambda-parts`" in v.advice[1]


def test_a_persona_whose_eyes_never_moved_is_told_to_look_around():
    still = dict(EXPR, gaze_range=[[0.004, 0.044], [0.51, 0.56]])  # the generated astronaut's
    v = judge(GOOD, coverage(_meta()), still, stopped="done", resume_command=RESUME)
    assert v.advice == ["the eyes hardly move: look left and right a few times while recording, or the persona "
                        "will keep looking ahead whatever your eyes do"]
    moving = dict(EXPR, gaze_range=[[-0.16, 0.09], [0.29, 0.49]])  # d6's
    assert judge(GOOD, coverage(_meta()), moving, stopped="done", resume_command=RESUME).advice == []


def test_a_blurry_persona_stopped_by_the_budget_is_told_to_train_longer():
    blurry = {"psnr": GOAL_PSNR - 3, "ssim": 0.8, "sharpness_ratio": 0.8}
    v = judge(blurry, coverage(_meta()), EXPR, stopped="time budget", resume_command=RESUME)
    assert v.level == "usable" and v.advice == [f"the generator was still improving when time ran out: "
                                                f"train longer ({RESUME})"]
    weak = judge({"psnr": 20.0, "ssim": 0.6, "sharpness_ratio": 0.5}, coverage(_meta()), None,
                 stopped="done", resume_command=RESUME)
    assert weak.level == "weak" and weak.advice == []  # it ran its epochs: nothing to resume


def test_train_prints_the_verdict_and_writes_quality_json(talking_head, tmp_path):
    r = run_cli("train", str(talking_head[0]), "--name", "judged", "--frames", "20", "--size", "64",
                "--ngf", "8", "--ndf", "8", "--epochs", "1", "--precision", "fp32", "--device", "cpu",
                "--workdir", str(tmp_path / "run"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "quality: " in r.stdout and "dB PSNR" in r.stdout
    q = json.loads((tmp_path / "run" / "quality.json").read_text())
    assert q["level"] in ("good", "usable", "weak") and q["figures"]["self"]["frames"] >= 1
    assert q["figures"]["coverage"]["frames"] == 20
    # 20 frames is too few: the advice says so, in the same words as printed.
    assert any("only 20 usable frames" in a for a in q["advice"])
    assert all(a in r.stdout for a in q["advice"])
