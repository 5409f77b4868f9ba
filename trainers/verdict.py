"""What ``f2f-cam train`` says at the end: the new persona's figures, a verdict in plain
words, and advice on what to record or run to make it better.

The figures are the ones a training run can measure by itself in seconds: the
generator on the held-out validation frames (``bench --quality``'s self-reenactment:
PSNR, SSIM, sharpness against the real frames), the expression model's error on the
last frames of the video, and what the video covers (how far the mouth opens, blinks,
smiles, brows, head turns, from the dataset's blendshape scores and poses). A persona
can only show expressions its video shows: most advice is about the recording.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from f2f_cam import atomic
from f2f_cam.expression import head_pose, mean_pose
from f2f_cam.landmarks import BLENDSHAPE_NAMES

# The goals for a persona (bench --quality), and the floor below which it is weak.
GOAL_PSNR, FLOOR_PSNR = 27.0, 22.0
GOAL_SHARPNESS, FLOOR_SHARPNESS = 0.85, 0.6
# What a video must show for the persona to follow: the 99th percentile of a score over
# the frames (4 of 400 frames are enough: a blink lasts a few frames), or the head's yaw
# range (5th to 95th percentile). On d6 (a real clip, 400 frames): jawOpen 0.80, blink
# 0.67, smile 0.28, browInnerUp 0.95, yaw range 8 deg.
SHOWS = {  # name: (blendshapes averaged, least p99, advice)
    "mouth": (("jawOpen",), 0.25, "few frames with the mouth open: record more talking (read a text aloud)"),
    "blink": (("eyeBlinkLeft", "eyeBlinkRight"), 0.4, "no blinks seen: blink naturally while recording"),
    "smile": (("mouthSmileLeft", "mouthSmileRight"), 0.3, "hardly any smiling: smile a few times while recording"),
    "brow": (("browInnerUp",), 0.2, "the eyebrows hardly move: raise them a few times while recording"),
}
# Eyes that are drawn worse than the rest of the face (smeared, speckled, doubled) show
# as a PSNR over the eyes this far below the PSNR inside the face's outline (bench
# --quality's psnr_eyes and psnr_face): d6 and d14 at 30 minutes with the face
# discriminator alone, whose eye crops show speckled whites and reddish irises, 6.7 and
# 7.5 dB; with the parts' L1 (the default), clean in the crops, 5.0 and 5.2 dB.
EYES_GAP_DB = 6.0
# Where the eyes looked (expression.gaze's side, 1st to 99th percentile, eye widths):
# less than this and the persona cannot follow a user's glances (d6 0.25, d14 0.65; the
# generated astronaut clip, which moves the whole face and never the eyes, 0.04).
LEAST_GAZE_RANGE = 0.1
LEAST_YAW_RANGE = 10.0  # deg
LEAST_FRAMES = 200
MOST_SKIPPED = 0.2  # share of sampled frames without exactly one face


@dataclass
class Verdict:
    level: str  # "good" | "usable" | "weak"
    summary: str  # one line of figures
    advice: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def lines(self) -> str:
        out = [f"quality: {self.level}: {self.summary}"]
        out += [f"  - {a}" for a in self.advice] or ["  nothing to improve in the recording or the run"]
        return "\n".join(out)


def coverage(meta: dict) -> dict:
    """What the dataset's frames show: p99 of each ``SHOWS`` score, the yaw range (deg),
    frames kept and the share of sampled frames skipped."""
    scores = np.array([p["blendshapes"] for p in meta["pairs"]], np.float64)
    poses = np.array([p["pose"] for p in meta["pairs"]], np.float64)
    out = {}
    for name, (names, _, _) in SHOWS.items():
        idx = [BLENDSHAPE_NAMES.index(n) for n in names]
        out[f"{name}_p99"] = round(float(np.percentile(scores[:, idx].mean(1), 99)), 3)
    mean = mean_pose(poses)
    yaw = np.array([head_pose(m, mean)[0] for m in poses])
    out["yaw_range_deg"] = round(float(np.percentile(yaw, 95) - np.percentile(yaw, 5)), 1)
    out["frames"] = len(meta["pairs"])
    sampled = max(int(meta.get("frames_sampled", len(meta["pairs"]))), 1)
    out["skipped_share"] = round(1 - meta.get("frames_kept", len(meta["pairs"])) / sampled, 3)
    return out


def judge(self_figures: dict, cover: dict, expression_facts: dict | None, *, stopped: str,
          resume_command: str) -> Verdict:
    """The verdict and advice from the figures (pure: the tests feed it known figures)."""
    psnr, sharp = self_figures.get("psnr"), self_figures.get("sharpness_ratio")
    advice = []
    if psnr is None:
        level, summary = "usable", "no validation figures (the dataset was not at hand)"
    else:
        eyes, face = self_figures.get("psnr_eyes"), self_figures.get("psnr_face")
        eyes_poor = eyes is not None and face is not None and face - eyes > EYES_GAP_DB
        good = psnr >= GOAL_PSNR and sharp >= GOAL_SHARPNESS and not eyes_poor
        weak = psnr < FLOOR_PSNR or sharp < FLOOR_SHARPNESS
        level = "good" if good else "weak" if weak else "usable"
        summary = (f"on held-out frames of its video {psnr:.1f} dB PSNR (goal {GOAL_PSNR:.0f}), "
                   f"SSIM {self_figures['ssim']:.3f}, sharpness {sharp:.2f} of the real frames "
                   f"(goal {GOAL_SHARPNESS:.2f})")
        if eyes is not None:
            summary += f", {eyes:.1f} dB over the eyes"
        running_out = stopped in ("time budget", "max steps")
        if not good and running_out:
            advice.append(f"the generator was still improving when time ran out: train longer "
                          f"({resume_command})")
        if eyes_poor:
            advice.append(f"the eyes come out smeared or speckled ({face - eyes:.1f} dB below the rest of the face "
                          f"on held-out frames): " + ("train longer, and " if running_out else "")
                          + "keep `--lambda-parts` above 0 (the extra L1 on the eyes and the mouth)")
    if expression_facts:
        summary += (f"; expression model {expression_facts['heldout_median_px']:.1f} px median error on "
                    f"new frames (face {expression_facts['face_width_px']:.0f} px wide)")
    for name, (_, least, text) in SHOWS.items():
        if cover[f"{name}_p99"] < least:
            advice.append(text)
    gaze = (expression_facts or {}).get("gaze_range")
    if gaze is not None and gaze[0][1] - gaze[0][0] < LEAST_GAZE_RANGE:
        advice.append("the eyes hardly move: look left and right a few times while recording, or the persona "
                      "will keep looking ahead whatever your eyes do")
    if cover["yaw_range_deg"] < LEAST_YAW_RANGE:
        advice.append(f"the head turns only {cover['yaw_range_deg']:.0f} degrees: turn it a little left and "
                      "right while recording, or the persona will not follow your head turns")
    if cover["frames"] < LEAST_FRAMES:
        advice.append(f"only {cover['frames']} usable frames: record a longer video (a minute or more)")
    if cover["skipped_share"] > MOST_SKIPPED:
        advice.append(f"{cover['skipped_share']:.0%} of the sampled frames had no single clear face: "
                      "keep one face in view and well lit")
    figures = {"self": self_figures, "coverage": cover, "expression": expression_facts or {}}
    return Verdict(level, summary, advice, figures)


def check_persona(persona_dir: Path, meta: dict, *, stopped: str, resume_command: str,
                  out_file: Path | None = None) -> Verdict:
    """Measure the installed persona at ``persona_dir`` on its dataset ``meta`` (from
    ``load_dataset``) and judge it; the figures also go to ``out_file`` (JSON)."""
    from f2f_cam.persona import read_persona
    from f2f_cam.quality_bench import self_reenactment

    persona = read_persona(Path(persona_dir))
    figures = self_reenactment(persona, Path(meta["folder"]), precision="auto")
    verdict = judge(figures, coverage(meta), persona.expression.facts if persona.expression else None,
                    stopped=stopped, resume_command=resume_command)
    if out_file is not None:
        atomic.write_text(Path(out_file), json.dumps(asdict(verdict), indent=1))
    return verdict
