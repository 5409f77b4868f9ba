"""The persona's generator as a pipeline stage: sketch (uint8) -> face (uint8)."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from f2f_cam.persona import Persona
from f2f_cam.registry import PRECISIONS, STUDENT_MODES, check_device
from f2f_cam.system import native_bf16

log = logging.getLogger(__name__)

# The most a generator may take a frame for 30 fps: 33 ms less the ~5 ms of the frame's
# other work on its thread (compose, hand-offs; `f2f-cam bench` on a Zen 2: 19.1 fps with a
# 47.5 ms generator, 37.6 fps with 21.3 ms).
REAL_TIME_MS = 28.0


def to_input(images: np.ndarray, dtype=None):
    """uint8 (H, W, 3) or (N, H, W, 3) -> torch float (N, 3, H, W) in [-1, 1]."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x[None]
    x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return x if dtype is None else x.to(dtype)


def to_image(x) -> np.ndarray:
    """torch (N, 3, H, W) or (3, H, W) in [-1, 1] -> uint8 (N, H, W, 3) or (H, W, 3)."""
    import torch

    x = x.detach().float().clamp(-1, 1).add(1.0).mul(127.5).round().to(torch.uint8)
    return x.permute(*range(x.ndim - 3), -2, -1, -3).cpu().numpy()


class Generator:
    """Runs a persona's generator on one sketch at a time.

    ``Generator(persona)(sketch)`` with sketch RGB uint8 (S, S, 3) -> RGB uint8 (S, S, 3).
    precision "auto" runs bf16 where the hardware has native bf16 (about 2x faster on
    this project's CPUs, within ~1/255 of fp32 on the output); "fp32" runs the exported
    weights as they are. On a CPU the generator also runs compiled for this machine
    (``f2f_cam.accel``: 1.5-2.5x the eager bf16 path) when a compiled package is in the
    cache; ``compile`` says what to do when it is not: "cached" runs eager,
    "background" compiles in a background process and swaps the package in between two
    frames once it is there (the daemon), "now" compiles first (the bench), "off" never
    compiles. ``forward`` (float batches: quality figures, tests) always runs eager.

    ``student`` (a persona with a real-time student, format 3): "auto" times the full
    generator on the first frames, in the way that stays (compiled or eager), and hands
    over to the student when the full one takes more than ``REAL_TIME_MS`` a frame here;
    "always" runs the student, "never" the full generator.
    """

    COMPILE_MODES = ("off", "cached", "background", "now")
    REAL_TIME_MS = REAL_TIME_MS  # the generator's share of a 30 fps frame
    SPEED_RUNS = 8  # frames of the full generator, timed once its way is settled

    def __init__(self, persona: Persona, device: str = "cpu", precision: str = "auto", compile: str = "cached",
                 student: str = "auto"):
        import torch

        PRECISIONS.check(precision)
        STUDENT_MODES.check(student)
        if compile not in self.COMPILE_MODES:
            raise ValueError(f"compile must be one of {self.COMPILE_MODES}, not {compile!r}")
        if check_device(device) == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.persona = persona
        self.size = persona.image_size
        self.device = device
        self.dtype = getattr(torch, persona.dtype)
        low = precision == "bf16" or (precision == "auto" and native_bf16(device))
        # On a GPU without bf16, "auto" is fp16 autocast (every CUDA GPU has fast fp16).
        self.autocast_dtype = torch.float16 if device.startswith("cuda") and precision == "auto" and not low \
            else torch.bfloat16
        self.autocast = (low or self.autocast_dtype == torch.float16) and self.dtype == torch.float32
        self.precision = ("bf16" if self.autocast_dtype == torch.bfloat16 else "fp16") if self.autocast \
            else "bf16" if self.dtype == torch.bfloat16 else "fp32"
        self.path = persona.generator_path
        self.module = persona.load_generator(device)
        self.compiled = None  # the AOTInductor package, once loaded
        self.compiler = None  # accel.Compiler while one compiles in the background
        self.compile_error: str | None = None
        self.threads = torch.get_num_threads()  # for the compiled kernels, in whichever thread calls
        self._threads_set = None
        self.trial = Trial()  # compiled against eager on the first frames: the faster one stays
        may_compile = compile != "off" and device == "cpu" and self.precision in ("bf16", "fp32")
        # What an earlier start measured here (accel.recall): the trial's verdict, the full
        # generator's time. Not re-measured, so no frame runs the slower way for it.
        from f2f_cam import accel

        self._recalled = accel.recall(self.path, self.size, self.precision, self.threads) if device == "cpu" else {}
        if may_compile and accel.enabled() and self._recalled.get("trial") in ("compiled", "eager"):
            self.trial.verdict = self._recalled["trial"]
        # The real-time student, and whether it runs: None until the full one is timed.
        self.student: Generator | None = None
        self.use_student: bool | None = None
        self._full_times: list[float] = []
        self.full_ms: float | None = None  # the full generator's time a frame here, once measured
        self._compile_mode = compile
        if persona.student_path is not None and student != "never":
            # Not compiled in the background before it is chosen: one compile at a time.
            self.student = Generator(persona.as_student(), device, precision,
                                     "cached" if compile == "background" else compile)
            if student == "always":
                self.use_student = True
            else:
                engine, full_ms = self._full_engine(may_compile), self._recalled.get("full_ms")
                if engine is not None and self._recalled.get("full_engine") == engine \
                        and isinstance(full_ms, (int, float)) and full_ms > 0:
                    self._choose(float(full_ms), measured=False)
        if may_compile and not self.use_student and self.trial.verdict != "eager":
            self._find_compiled(compile)
        elif self.use_student and compile == "background" and self.student.compiled is None:
            self.student._find_compiled("background")

    def _full_engine(self, may_compile: bool) -> str | None:
        """How the full generator will run once settled, as far as is known at load:
        "eager", "compiled", or None (the trial has not decided here yet)."""
        from f2f_cam import accel

        if not may_compile or not accel.enabled() or self.trial.verdict == "eager":
            return "eager"
        return "compiled" if self.trial.verdict == "compiled" else None

    def _find_compiled(self, mode: str) -> None:
        from f2f_cam import accel

        if not accel.enabled():
            return
        path = accel.package_path(self.path, self.size, self.precision)
        problem = accel.check_package(path, self.path, self.size, self.precision) \
            if path.is_file() else None
        if problem:  # never dlopen a library we cannot vouch for: it could crash the daemon
            log.warning("the cached compiled generator %s is not used (%s); %s", path.name, problem,
                        "it runs uncompiled" if mode == "cached" else "compiling it again")
            accel.discard(path)
        if not path.is_file() and mode == "background":
            problem = accel.compiler_problem()
            if problem:
                self.compile_error = problem
                log.info("generator runs uncompiled: %s", problem)
            else:
                self.compiler = accel.Compiler(self.path, self.size, self.precision, path)
            return
        try:
            if not path.is_file() and mode == "now":
                accel.compile_package(self.path, self.size, self.precision, path)
            if path.is_file():
                self.compiled = accel.Compiled(path)
        except Exception as e:  # no compiler, a torch that cannot: the eager path runs
            from f2f_cam.errors import one_line

            self.compile_error = one_line(e)
            log.warning("generator runs uncompiled: %s", self.compile_error)

    @property
    def engine(self) -> str:
        """What runs a frame now: "compiled" (AOTInductor), "eager (compiling)", "eager
        (faster than compiled here)" (the trial's verdict) or "eager"; "student, ..." when
        the real-time student runs."""
        if self.use_student:
            return f"student, {self.student.engine}"
        if self.compiled is not None:
            return "compiled"
        if self.trial.verdict == "eager":
            return "eager (faster than compiled here)"
        return "eager (compiling)" if self.compiler is not None and self.compiler.error is None else "eager"

    def forward(self, x):
        """(N, 3, S, S) float in [-1, 1] -> (N, 3, S, S) float32 in [-1, 1], eager."""
        import torch

        # channels_last: oneDNN's convolutions run NHWC without reordering each layer.
        x = x.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=self.autocast_dtype,
                                                    enabled=self.autocast):
            return self.module(x).float()

    def __call__(self, sketch: np.ndarray) -> np.ndarray:
        if sketch.shape != (self.size, self.size, 3):
            raise ValueError(f"sketch must be ({self.size}, {self.size}, 3), got {sketch.shape}")
        if self.use_student:
            return self.student(sketch)
        if self.student is None:
            return self._full(sketch)
        settled = self.compiler is None and (self.compiled is None or self.trial.verdict is not None)
        start = time.perf_counter()
        out = self._full(sketch)
        if settled:  # timed in the way that stays, not while a compile runs beside it
            self._full_times.append(time.perf_counter() - start)
            if len(self._full_times) >= Trial.WARMUP + self.SPEED_RUNS:
                self._choose(float(np.median(self._full_times[Trial.WARMUP:])) * 1e3)
        return out

    def _choose(self, full_ms: float, measured: bool = True) -> None:
        """The student runs from now on when ``full_ms`` is too slow; a measured time is
        kept for the next start (with the way the full one ran)."""
        self.use_student = full_ms > self.REAL_TIME_MS
        self.full_ms = full_ms
        if measured:
            self._remember(full_ms=full_ms, full_engine="compiled" if self.compiled is not None else "eager")
        if self.use_student:
            log.info("generator: the full one takes %.1f ms a frame here%s, more than 30 fps allows; "
                     "the persona's real-time student runs from now on", full_ms,
                     "" if measured else " (measured at an earlier start)")
            if measured and self._compile_mode == "background" and self.student.compiled is None:
                self.student._find_compiled("background")
        else:
            self.student = None  # not needed here: let it go

    def _remember(self, **values) -> None:
        from f2f_cam import accel

        if self.device == "cpu":
            accel.remember(self.path, self.size, self.precision, self.threads, **values)

    def _full(self, sketch: np.ndarray) -> np.ndarray:
        if self.compiler is not None and self.compiler.result() is not None:
            self.compiled, self.compiler = self.compiler.result(), None  # between two frames
        if self.compiled is None:
            return self._eager(sketch)
        way = self.trial.next()  # on the first frames, compiled and eager in turns
        start = time.perf_counter()
        out = self._run_compiled(sketch) if way == "compiled" else self._eager(sketch)
        verdict = self.trial.record(way, time.perf_counter() - start)
        if verdict is not None:
            self._remember(trial=verdict)
        if verdict == "eager":
            log.info("generator: eager runs faster than compiled on this machine (%s); keeping eager",
                     self.trial.summary())
            self.compiled = None
        return out

    @property
    def settled(self) -> bool:
        """Whether every start-up choice is made (no compile running, compiled against
        eager decided, the full generator timed against the student): from here on each
        frame runs the way that stays."""
        if self.compiler is not None or (self.compiled is not None and self.trial.verdict is None):
            return False
        if self.student is not None and self.use_student is None:
            return False
        return not self.use_student or self.student.settled

    def settle(self, sketch: np.ndarray) -> None:
        """Run ``sketch`` until the compiled-or-eager trial has decided (benchmarks time
        the way that stays, not the trial's turns); nothing to do without a compiled one."""
        while (self.compiled is not None and self.trial.verdict is None) or \
                (self.student is not None and self.use_student is None):
            self(sketch)
        if self.use_student:
            self.student.settle(sketch)

    def _eager(self, sketch: np.ndarray) -> np.ndarray:
        return to_image(self.forward(to_input(sketch)))[0]

    def _run_compiled(self, sketch: np.ndarray) -> np.ndarray:
        import torch

        if self._threads_set != threading.get_ident():
            # The compiled kernels' OpenMP teams size by the calling thread's setting:
            # give this thread torch's (else it takes every core, against the landmarks).
            torch.set_num_threads(self.threads)
            self._threads_set = threading.get_ident()
        with torch.inference_mode():
            return self.compiled(torch.from_numpy(np.ascontiguousarray(sketch))).numpy()


class Trial:
    """Compiled against eager on a persona's first frames, in turns, in the conditions of
    the run (the landmarks working beside it): the faster by median stays.

    The compiled generator is not faster everywhere: on an AVX2-only CPU (Zen 2, fp32)
    with one thread the 512 px ngf 8 one took 72 ms against eager's 50. Each way's first
    ``WARMUP`` calls are not counted (first-call allocations), then ``RUNS`` of each.
    """

    WARMUP, RUNS = 2, 6

    def __init__(self):
        self.times = {"compiled": [], "eager": []}
        self.verdict: str | None = None  # "compiled" or "eager", once decided

    def next(self) -> str:
        if self.verdict is not None:
            return self.verdict
        return "compiled" if len(self.times["compiled"]) <= len(self.times["eager"]) else "eager"

    def record(self, way: str, seconds: float) -> str | None:
        """Count one call; returns the verdict on the call that decides it, else None."""
        if self.verdict is not None:
            return None
        self.times[way].append(seconds)
        if min(len(t) for t in self.times.values()) < self.WARMUP + self.RUNS:
            return None
        c, e = (float(np.median(self.times[w][self.WARMUP:])) for w in ("compiled", "eager"))
        self.verdict = "compiled" if c <= e else "eager"
        return self.verdict

    def summary(self) -> str:
        c, e = (float(np.median(self.times[w][self.WARMUP:])) * 1e3 for w in ("compiled", "eager"))
        return f"median {c:.1f} ms compiled, {e:.1f} ms eager"


class GeneratorCache:
    """The generators of the last ``keep`` personas used, so that switching back to one
    is instant and loads nothing: each load of a generator leaves the allocator a little
    larger (the daemon's soak grew at every switch when each one loaded anew). An entry
    is the persona's generator file as it is on disk (path, inode, size, mtime): a
    persona reinstalled under the same name is loaded again."""

    def __init__(self, keep: int = 3):
        self.keep = keep
        self._lock = threading.Lock()
        self._entries: dict[tuple, Generator] = {}  # oldest first

    @staticmethod
    def _key(persona: Persona, device: str, precision: str, compile: str, student: str) -> tuple:
        from f2f_cam import accel, paths

        st = persona.generator_path.stat()
        # What decides how it runs, too: compiling allowed, and where compiled ones are kept.
        return (str(persona.generator_path), st.st_ino, st.st_size, st.st_mtime_ns, persona.image_size,
                device, precision, compile, student, accel.enabled(), str(paths.cache_dir()))

    def get(self, persona: Persona, device: str = "cpu", precision: str = "auto",
            compile: str = "cached", student: str = "auto") -> Generator:
        try:
            key = self._key(persona, device, precision, compile, student)
        except OSError:  # the persona's file went away: let Generator say so
            return Generator(persona, device=device, precision=precision, compile=compile, student=student)
        with self._lock:
            gen = self._entries.pop(key, None)
            if gen is not None:
                self._entries[key] = gen  # now the newest
                return gen
        gen = Generator(persona, device=device, precision=precision, compile=compile, student=student)
        with self._lock:
            self._entries[key] = gen
            while len(self._entries) > self.keep:
                self._entries.pop(next(iter(self._entries)))
        return gen

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CACHE = GeneratorCache()  # the process's: the daemon's switches and its pipelines share it
