"""The runtime pipeline: one camera frame in, one output frame out, in one direction:

LandmarkDetector -> Smoother -> Retargeter -> sketch.render -> Generator -> Compositor

``stages_for`` is the one place that knows which stages a layout needs (at start and
for a live switch alike); ``Pipeline.__call__`` runs them in order.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from f2f_cam import sketch
from f2f_cam.compositor import Compositor, lost_frame
from f2f_cam.config import PipelineConfig
from f2f_cam.errors import UserError
from f2f_cam.persona import Persona
from f2f_cam.registry import LAYOUTS, RETARGET_MODES

log = logging.getLogger(__name__)

KEEP = object()  # Pipeline.switch(persona=KEEP): the persona in use


@dataclass
class Stats:
    """Per-stage timing (ms, exponential moving average) and frame counters."""

    frames: int = 0
    faces: int = 0
    stage_ms: dict = field(default_factory=lambda: defaultdict(float))
    _alpha: float = 0.1

    def record(self, stage: str, ms: float) -> None:
        old = self.stage_ms.get(stage)
        self.stage_ms[stage] = ms if old is None or self.frames <= 1 else old + self._alpha * (ms - old)

    def as_dict(self) -> dict:
        return {"frames": self.frames, "faces": self.faces,
                "stage_ms": {k: round(v, 2) for k, v in self.stage_ms.items()}}


class _Timer:
    def __init__(self, stats: Stats, stage: str):
        self.stats, self.stage = stats, stage

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.stats.record(self.stage, (time.perf_counter() - self.t0) * 1e3)


@dataclass(frozen=True)
class Stages:
    """What one layout needs, loaded: the swappable part of a pipeline."""

    compositor: Compositor
    persona: Persona | None
    detector: object | None  # LandmarkDetector when the layout tracks the face
    generator: object | None  # Generator when the layout shows the generated face


def stages_for(layout: str, persona: Persona | None, out_size: tuple[int, int], *,
               cfg: PipelineConfig, current: Stages | None = None, detector_mode: str = "video") -> Stages:
    """Load the stages ``layout`` needs for ``persona``, reusing what ``current`` has.

    Raises ``UserError`` when the layout shows a generated face and there is no persona.
    """
    spec = LAYOUTS[layout]
    if spec.needs_generator and persona is None:
        raise UserError(f"layout '{layout}' needs a persona and none is installed or selected; train one with "
                        "`f2f-cam train VIDEO --name NAME`, import one with `f2f-cam personas import FILE.f2f`, "
                        "or use layout landmarks or camera")
    detector = current.detector if current is not None else None
    if spec.tracks_face and detector is None:
        from f2f_cam.landmarks import LandmarkDetector

        detector = LandmarkDetector(mode=detector_mode)
    generator = current.generator if current is not None and current.persona is persona else None
    if spec.needs_generator and generator is None:
        from f2f_cam.generator import Generator

        generator = Generator(persona, device=cfg.device, precision=cfg.precision)
    return Stages(Compositor(layout, out_size), persona, detector, generator)


def resolve_persona(name: str | None) -> Persona | None:
    """The named persona, else the default one (the user's first, else a bundled one),
    else None when none is installed."""
    from f2f_cam.persona import PersonaStore

    store = PersonaStore()
    return store.get(name) if name else store.default()


def build_pipeline(cfg: PipelineConfig, out_size: tuple[int, int], *, persona=KEEP,
                   detector_mode: str = "video") -> "Pipeline":
    """The pipeline ``cfg`` describes, with ``cfg.persona`` resolved (or ``persona``)."""
    if persona is KEEP:
        persona = resolve_persona(cfg.persona)
    return Pipeline(cfg, stages_for(cfg.layout, persona, out_size, cfg=cfg, detector_mode=detector_mode))


class Pipeline:
    """One camera frame in, one output frame out. Holds the no-face policy: without a
    face, show the last generated frame; before the first face, the persona's idle
    frame (its neutral landmarks through its generator). Without a camera frame at
    all (``frame=None``: the camera is lost), the last output darkened, with a note."""

    def __init__(self, cfg: PipelineConfig, stages: Stages):
        from f2f_cam.smoothing import Smoother

        self.cfg = cfg
        self.stages = stages
        self.smoother = Smoother(cfg.min_cutoff, cfg.beta) if cfg.smoothing else None
        self.mirror = cfg.mirror
        self.retarget_mode = RETARGET_MODES.check(cfg.retarget)
        self._neutral_points: np.ndarray | None = None  # the user's calibrated neutral face
        self.retargeter = self._retargeter(self.retarget_mode)
        self.stats = Stats()
        self.last_sketch: np.ndarray | None = None
        self.last_face: np.ndarray | None = None
        self.last_output: np.ndarray | None = None
        self.last_points: np.ndarray | None = None  # (478, 3) smoothed camera-frame points
        self.face_found = False

    # The stages in use, by name (read by status, the tray and tests).
    persona = property(lambda self: self.stages.persona)
    detector = property(lambda self: self.stages.detector)
    generator = property(lambda self: self.stages.generator)
    compositor = property(lambda self: self.stages.compositor)
    layout = property(lambda self: self.stages.compositor.layout)
    tracks_face = property(lambda self: self.stages.compositor.spec.tracks_face)

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, frame: np.ndarray | None, t: float) -> np.ndarray:
        """frame: RGB uint8 (H, W, 3), or None when the camera is lost; t: seconds."""
        if frame is None:
            return lost_frame(self.last_output, (self.compositor.width, self.compositor.height))
        self.stats.frames += 1
        if self.mirror:
            frame = frame[:, ::-1]
        if self.tracks_face:
            self._track(frame, t)
        with _Timer(self.stats, "compose"):
            self.last_output = self.compositor(frame, self.last_sketch, self.last_face)
        return self.last_output

    def _track(self, frame: np.ndarray, t: float) -> None:
        """Landmarks -> smoothing -> retargeting -> sketch -> generator, into last_*."""
        st, persona = self.stats, self.persona
        with _Timer(st, "landmarks"):
            face = self.detector(frame, int(round(t * 1000)))
        self.face_found = face is not None
        if face is None:
            if self.smoother:
                self.smoother.reset()  # the next face starts fresh, not from a stale pose
        else:
            st.faces += 1
            h, w = frame.shape[:2]
            with _Timer(st, "smooth+retarget"):
                points = self.smoother(face.points, t) if self.smoother else face.points
                self.last_points = points
                if persona is not None:
                    points = self.retargeter(points, (w, h))
            with _Timer(st, "sketch"):
                # Without a persona there is no training crop: draw on the whole frame.
                self.last_sketch = sketch.render(points, persona.image_size if persona is not None else (w, h))
            if self.generator is not None:
                with _Timer(st, "generator"):
                    self.last_face = self.generator(self.last_sketch)
        if self.last_sketch is None or (self.generator is not None and self.last_face is None):
            idle_sketch, idle_face = self.idle()
            self.last_sketch = self.last_sketch if self.last_sketch is not None else idle_sketch
            self.last_face = self.last_face if self.last_face is not None else idle_face

    def idle(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The persona at rest: (neutral sketch, generated neutral face)."""
        if self.persona is None:
            return None, None
        idle_sketch = sketch.render(self.persona.neutral, self.persona.image_size)
        idle_face = self.generator(idle_sketch) if self.generator is not None else None
        return idle_sketch, idle_face

    # -- live switching (the daemon) --------------------------------------------------
    # A switch has two halves: ``prepare`` loads what is missing (a landmark model, a
    # generator: the slow part) in the caller's thread without touching the running
    # stages; ``apply`` swaps it in between two frames, in the thread that calls the
    # pipeline. So a switch never stalls the processing loop.

    def prepare(self, *, layout: str | None = None, persona=KEEP) -> Stages:
        """The stages for ``layout`` and ``persona`` (default: the current ones)."""
        persona = self.persona if persona is KEEP else persona
        size = (self.compositor.width, self.compositor.height)
        return stages_for(layout or self.layout, persona, size, cfg=self.cfg, current=self.stages)

    def apply(self, stages: Stages) -> None:
        """Install what ``prepare`` returned (call between frames)."""
        new_persona = stages.persona is not self.persona
        self.stages = stages
        if new_persona:
            self.retargeter = self._retargeter(self.retarget_mode)
            # The new persona starts from its own idle frame, not the old one's face.
            self.last_sketch = self.last_face = None
            if self.smoother:
                self.smoother.reset()

    def set_retarget(self, mode: str) -> None:
        """Switch retargeting (raw | align | transfer); a calibrated neutral face is kept."""
        self.retarget_mode = RETARGET_MODES.check(mode)
        self.retargeter = self._retargeter(mode)

    def set_mirror(self, on: bool) -> None:
        if bool(on) != self.mirror:
            self.mirror = bool(on)
            if self.smoother:
                self.smoother.reset()  # every point jumps across the frame
            self._neutral_points = None  # a mirrored neutral face is not the user's
            self.retargeter = self._retargeter(self.retarget_mode)

    def calibrate(self) -> None:
        """Take the face in view now as the user's neutral face (for ``transfer``)."""
        if not self.tracks_face:
            raise UserError(f"layout '{self.layout}' does not track the face; switch to the persona, "
                            "side-by-side or landmarks layout to calibrate")
        if not self.face_found or self.last_points is None:
            raise UserError("no face in view to calibrate: look at the camera with a relaxed, "
                            "neutral face and try again")
        self._neutral_points = np.array(self.last_points, copy=True)
        if self.retargeter is not None:
            self.retargeter.calibrate(self._neutral_points)

    @property
    def calibrated(self) -> bool:
        return self._neutral_points is not None

    def _retargeter(self, mode: str):
        from f2f_cam.retarget import Retargeter

        if self.persona is None:
            return None
        r = Retargeter(self.persona, mode)
        if self._neutral_points is not None:
            r.calibrate(self._neutral_points)  # the same face, aligned onto this persona
        return r
