"""The runtime pipeline: one camera frame in, one output frame out, in one direction:

LandmarkDetector -> Smoother -> Retargeter -> sketch.render -> Generator -> Compositor

``stages_for`` is the one place that knows which stages a layout needs (at start and
for a live switch alike), and whether the landmark detector must give the expression
scores and pose (``expression`` retargeting, for a persona with an expression model);
``Pipeline.__call__`` runs them in order.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from f2f_cam import sketch
from f2f_cam.compositor import Compositor, lost_frame
from f2f_cam.config import PipelineConfig
from f2f_cam.errors import UserError, one_line
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
    blendshapes: bool = False  # the detector gives each face's expression scores and pose


def needs_scores(retarget: str, persona: Persona | None) -> bool:
    """Whether retargeting ``retarget`` onto ``persona`` uses the expression scores."""
    return retarget == "expression" and persona is not None and persona.expression is not None


def stages_for(layout: str, persona: Persona | None, out_size: tuple[int, int], *,
               cfg: PipelineConfig, current: Stages | None = None, detector_mode: str = "video",
               retarget: str | None = None, compile: str = "cached") -> Stages:
    """Load the stages ``layout`` needs for ``persona`` and ``retarget`` (default
    ``cfg.retarget``), reusing what ``current`` has. ``compile``: see ``Generator``
    (``cfg.compile = False`` makes it "off").

    Raises ``UserError`` when the layout shows a generated face and there is no persona.
    """
    spec = LAYOUTS[layout]
    if spec.needs_generator and persona is None:
        raise UserError(f"layout '{layout}' needs a persona and none is installed or selected; train one with "
                        "`f2f-cam train VIDEO --name NAME`, import one with `f2f-cam personas import FILE.f2f`, "
                        "or use layout landmarks or camera")
    detector = current.detector if current is not None else None
    blendshapes = current.blendshapes if current is not None else False
    # Scores cost ~1 ms a frame: asked for only when used, and kept once there.
    scores = spec.tracks_face and needs_scores(retarget or cfg.retarget, persona)
    if spec.tracks_face and (detector is None or (scores and not blendshapes)):
        from f2f_cam.landmarks import LandmarkDetector

        detector_mode = detector.mode if detector is not None else detector_mode
        detector, blendshapes = LandmarkDetector(mode=detector_mode, blendshapes=scores), scores
    generator = current.generator if current is not None and current.persona is persona else None
    if spec.needs_generator and generator is None:
        from f2f_cam.generator import CACHE

        generator = CACHE.get(persona, device=cfg.device, precision=cfg.precision,
                              compile=compile if cfg.compile else "off", student=cfg.student)
    return Stages(Compositor(layout, out_size), persona, detector, generator, blendshapes)


def resolve_persona(name: str | None) -> Persona | None:
    """The named persona, else the default one (the user's first, else a bundled one),
    else None when none is installed."""
    from f2f_cam.persona import PersonaStore

    store = PersonaStore()
    return store.get(name) if name else store.default()


def build_pipeline(cfg: PipelineConfig, out_size: tuple[int, int], *, persona=KEEP,
                   detector_mode: str = "video", compile: str = "cached") -> "Pipeline":
    """The pipeline ``cfg`` describes, with ``cfg.persona`` resolved (or ``persona``);
    ``compile`` says how its generators find their compiled form (see ``Generator``)."""
    if persona is KEEP:
        persona = resolve_persona(cfg.persona)
    stages = stages_for(cfg.layout, persona, out_size, cfg=cfg, detector_mode=detector_mode, compile=compile)
    return Pipeline(cfg, stages, compile=compile)


class Pipeline:
    """One camera frame in, one output frame out. Holds the no-face policy: without a
    face, show the last generated frame; before the first face, the persona's idle
    frame (its neutral landmarks through its generator). Without a camera frame at
    all (``frame=None``: the camera is lost), the last output darkened, with a note."""

    def __init__(self, cfg: PipelineConfig, stages: Stages, *, compile: str = "cached"):
        from f2f_cam.smoothing import ExpressionSmoother, Smoother

        self.cfg = cfg
        self.stages = stages
        self.compile = compile  # for the generators a live switch loads
        self.smoother = Smoother(cfg.min_cutoff, cfg.beta) if cfg.smoothing else None
        # ``expression`` predicts the shape from the scores and the head pose, not the
        # points: those are smoothed instead, each score on its own (see ExpressionSmoother).
        self.expression_smoother = ExpressionSmoother() if cfg.smoothing else None
        self.mirror = cfg.mirror
        self.retarget_asked = RETARGET_MODES.check(cfg.retarget)  # what the user chose
        self._neutral_face = None  # the user's calibrated neutral Face (smoothed points)
        self._noted: set[str] = set()  # personas already logged as falling back to transfer
        self._loading: _Loading | None = None  # a detector with scores, loading for a live switch
        self._retired: list = []  # detectors swapped out by that switch, closed at the next apply
        self.retargeter = self._retargeter(self.retarget_asked)
        self.stats = Stats()
        self.last_sketch: np.ndarray | None = None
        self.last_face: np.ndarray | None = None
        self.last_output: np.ndarray | None = None
        self.last_points: np.ndarray | None = None  # (478, 3) smoothed camera-frame points
        self._face_from = None  # the generator that made last_face
        self._last_seen = None  # the last Face, with the smoothed points
        self.face_found = False
        self._load_scores_if_needed()

    # The stages in use, by name (read by status, the tray and tests).
    persona = property(lambda self: self.stages.persona)
    detector = property(lambda self: self.stages.detector)
    generator = property(lambda self: self.stages.generator)
    compositor = property(lambda self: self.stages.compositor)
    layout = property(lambda self: self.stages.compositor.layout)
    tracks_face = property(lambda self: self.stages.compositor.spec.tracks_face)

    @property
    def retarget_mode(self) -> str:
        """The retargeting in use (what status shows): ``expression`` runs as ``transfer``
        for a persona without an expression model, and while a live switch's landmark
        model with expression scores loads."""
        r = self.retargeter
        if r is None:
            return self.retarget_asked
        if r.mode_used == "expression" and self.tracks_face and not self.stages.blendshapes:
            return "transfer"
        return r.mode_used

    def close(self) -> None:
        if self._loading is not None:
            self._loading.discard()
            self._loading = None
        for det in self._retired + [self.detector]:
            if det is not None:
                det.close()
        self._retired = []

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, frame: np.ndarray | None, t: float) -> np.ndarray:
        """frame: RGB uint8 (H, W, 3), or None when the camera is lost; t: seconds."""
        return self.finish(self.track(frame, t))

    # A frame has two halves, so that two threads can overlap them (``flow.run(...,
    # overlap=True)``: the landmarks of frame t+1 while the generator works on frame t):
    # ``track`` (landmarks -> smoothing -> retarget -> sketch) and ``finish`` (generator ->
    # compositor). Each half keeps its own state; a ``Tracked`` carries the rest across.

    def track(self, frame: np.ndarray | None, t: float) -> "Tracked":
        """The first half of a frame: call it from one thread, between live switches."""
        if self._loading is not None:
            self._take_loaded()
        stages = self.stages
        if frame is None:
            return Tracked(None, t, stages, None, False)
        self.stats.frames += 1
        if self.mirror:
            frame = frame[:, ::-1]
        new = self._track(frame, t) if self.tracks_face else False
        sketch_now = self.last_sketch
        if sketch_now is None and stages.persona is not None and stages.compositor.spec.tracks_face:
            sketch_now = self.last_sketch = sketch.render(stages.persona.neutral, stages.persona.image_size)
        return Tracked(frame, t, stages, sketch_now, new)

    def between_frames(self) -> None:
        """Work that may wait until a frame is handed on (from ``track``'s thread): the
        detector's periodic check for a larger face, off the frame's latency."""
        work = getattr(self.detector, "between_frames", None)
        if work is not None:
            work()

    def finish(self, tr: "Tracked") -> np.ndarray:
        """The second half: the generated face and the output frame (another thread may
        run ``track`` for the next frame meanwhile)."""
        if tr.frame is None:
            return lost_frame(self.last_output, (tr.stages.compositor.width, tr.stages.compositor.height))
        gen = tr.stages.generator
        if gen is not None and tr.sketch is not None:
            if self._face_from is not gen:  # another persona since: its face, not the old one's
                self.last_face = None
            if tr.new_sketch or self.last_face is None:
                with _Timer(self.stats, "generator"):
                    self.last_face = gen(tr.sketch)
                self._face_from = gen
        with _Timer(self.stats, "compose"):
            self.last_output = tr.stages.compositor(tr.frame, tr.sketch, self.last_face if gen is not None else None)
        return self.last_output

    def _track(self, frame: np.ndarray, t: float) -> bool:
        """Landmarks -> smoothing -> retargeting -> sketch, into last_*; whether there is
        a new sketch (a face was found)."""
        st, persona = self.stats, self.persona
        with _Timer(st, "landmarks"):
            face = self.detector(frame, int(round(t * 1000)))
        self.face_found = face is not None
        if face is None:
            self._reset_smoothing()  # the next face starts fresh, not from a stale pose
            return False
        st.faces += 1
        h, w = frame.shape[:2]
        with _Timer(st, "smooth+retarget"):
            points = self.smoother(face.points, t) if self.smoother else face.points
            self.last_points = points
            self._last_seen = dataclasses.replace(face, points=points)
            if persona is not None:
                if self.retargeter.mode_used != self.retargeter.mode:
                    self._note_fallback()
                es = self.expression_smoother
                points = self.retargeter(self._last_seen, (w, h),
                                         smooth=None if es is None else lambda s, p: es(s, p, t))
        with _Timer(st, "sketch"):
            # Without a persona there is no training crop: draw on the whole frame.
            self.last_sketch = sketch.render(points, persona.image_size if persona is not None else (w, h))
        return True

    def _reset_smoothing(self) -> None:
        for s in (self.smoother, self.expression_smoother):
            if s is not None:
                s.reset()

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
    # pipeline. So a switch never stalls the processing loop. ``set_retarget`` is called
    # between frames: the one thing it may need loaded (a landmark model with
    # expression scores) loads in a thread of its own and comes in at a later frame.

    def prepare(self, *, layout: str | None = None, persona=KEEP, retarget: str | None = None) -> Stages:
        """The stages for ``layout``, ``persona`` and ``retarget`` (default: the current ones)."""
        persona = self.persona if persona is KEEP else persona
        size = (self.compositor.width, self.compositor.height)
        return stages_for(layout or self.layout, persona, size, cfg=self.cfg, current=self.stages,
                          retarget=retarget or self.retarget_asked, compile=self.compile)

    def apply(self, stages: Stages, *, retarget: str | None = None) -> None:
        """Install what ``prepare`` returned (call between frames), and ``retarget`` with it."""
        old = self.stages
        if any(stages.detector is d for d in self._retired):
            # Prepared before a live switch brought in a newer detector: keep that one.
            stages = dataclasses.replace(stages, detector=old.detector, blendshapes=old.blendshapes)
        if old.detector is not None and stages.detector is not old.detector:
            self._retired.append(old.detector)
        for det in self._retired:
            det.close()
        self._retired = []
        self.stages = stages
        if stages.persona is not old.persona:
            # The new persona starts from its own idle frame, not the old one's face.
            self.last_sketch = self.last_face = None
            self._reset_smoothing()
        if stages.persona is not old.persona or retarget is not None:
            self.retarget_asked = RETARGET_MODES.check(retarget or self.retarget_asked)
            self.retargeter = self._retargeter(self.retarget_asked)
        self._load_scores_if_needed()

    def set_retarget(self, mode: str) -> None:
        """Switch retargeting (expression | raw | align | transfer); a calibrated neutral
        face is kept. ``expression`` may need a landmark model with expression scores:
        it loads in the background and runs as ``transfer`` until it is in."""
        self.retarget_asked = RETARGET_MODES.check(mode)
        self.retargeter = self._retargeter(mode)
        if self.expression_smoother is not None:
            self.expression_smoother.reset()
        self._load_scores_if_needed()

    def _load_scores_if_needed(self) -> None:
        """Start loading a detector with expression scores when the mode needs one and
        the running detector has none (the processing loop never waits for it)."""
        if (self._loading is None and self.tracks_face and not self.stages.blendshapes
                and needs_scores(self.retarget_asked, self.persona)):
            from f2f_cam.landmarks import LandmarkDetector

            mode = self.detector.mode if self.detector is not None else "video"
            self._loading = _Loading(lambda: LandmarkDetector(mode=mode, blendshapes=True))

    def _take_loaded(self) -> None:
        """Swap in the detector that ``_load_scores_if_needed`` loaded, once it is ready."""
        detector = self._loading.take()
        if detector is _Loading.PENDING:
            return
        self._loading = None
        if detector is None:
            return  # failed (logged): retargeting stays on transfer
        if self.stages.blendshapes or not needs_scores(self.retarget_asked, self.persona):
            detector.close()  # no longer wanted (another switch came first)
            return
        if self.detector is not None:
            self._retired.append(self.detector)
        self.stages = dataclasses.replace(self.stages, detector=detector, blendshapes=True)
        log.info("landmarks: expression scores on")

    def set_mirror(self, on: bool) -> None:
        if bool(on) != self.mirror:
            self.mirror = bool(on)
            self._reset_smoothing()  # every point jumps across the frame
            self._neutral_face = None  # a mirrored neutral face is not the user's
            self.retargeter = self._retargeter(self.retarget_asked)

    def calibrate(self) -> None:
        """Take the face in view now as the user's neutral face (for ``transfer`` and
        ``expression``: its points, scores and pose)."""
        if not self.tracks_face:
            raise UserError(f"layout '{self.layout}' does not track the face; switch to the persona, "
                            "side-by-side or landmarks layout to calibrate")
        if not self.face_found or self._last_seen is None:
            raise UserError("no face in view to calibrate: look at the camera with a relaxed, "
                            "neutral face and try again")
        self._neutral_face = self._last_seen
        if self.retargeter is not None:
            self.retargeter.calibrate(self._neutral_face)

    @property
    def calibrated(self) -> bool:
        return self._neutral_face is not None

    def _note_fallback(self) -> None:
        """One line in the log, once per persona, when ``expression`` first runs as
        ``transfer`` on a face (not before: a run that never sees a face says nothing)."""
        if self.persona.name not in self._noted:
            self._noted.add(self.persona.name)
            log.warning("persona '%s' has no expression model (made before format 2, or exported without "
                        "its dataset): retargeting with transfer; retrain or re-export it to use expression", self.persona.name)

    def _retargeter(self, mode: str):
        from f2f_cam.retarget import Retargeter

        if self.persona is None:
            return None
        r = Retargeter(self.persona, mode)
        if self._neutral_face is not None:
            r.calibrate(self._neutral_face)  # the same face, aligned onto this persona
        return r


@dataclass(frozen=True)
class Tracked:
    """What ``Pipeline.track`` hands to ``Pipeline.finish``: the (mirrored) frame, its
    time, the stages it was tracked with, the sketch to show, and whether that sketch is
    new (a face was found: the generator runs) or the last one again (no face)."""

    frame: np.ndarray | None
    t: float
    stages: Stages
    sketch: np.ndarray | None
    new_sketch: bool


class _Loading:
    """One slow object (a landmark model) made in a thread of its own; ``take()``, called
    between frames, returns it once made (None if making it failed), else ``PENDING``."""

    PENDING = object()

    def __init__(self, make):
        self._result = None
        self._done = threading.Event()
        self._discarded = False
        threading.Thread(target=self._run, args=(make,), name="f2f-load", daemon=True).start()

    def _run(self, make) -> None:
        try:
            self._result = make()
        except Exception as e:  # a missing model file, a broken install: say so, carry on
            log.warning("could not load the landmark model with expression scores: %s", one_line(e))
        finally:
            self._done.set()
        if self._discarded and self._result is not None:
            self._result.close()

    def take(self):
        return self._result if self._done.is_set() else self.PENDING

    def discard(self) -> None:
        """Nobody will take it: close it when it comes (or now, if it is here)."""
        self._discarded = True
        if self._done.is_set() and self._result is not None:
            self._result.close()
