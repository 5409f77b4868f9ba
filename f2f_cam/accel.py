"""The persona's generator compiled for this machine, and cached (issue 11).

A persona ships ``generator.pt`` (TorchScript: portable, loads without unpickling).
Once per machine it becomes an AOTInductor package in the user cache folder:

    generator.pt -> an FX graph (torch._export's TorchScript converter)
      -> uint8 (S, S, 3) in and out inside the graph (no conversions on the frame path)
      -> bf16 where the CPU has it natively, else fp32 -> AOTInductor with freezing
      -> ``CACHE/generators/KEY.so`` (the package's one shared library, weights inside)

It runs through the library's C interface (``Compiled``), without Python's GIL.
KEY hashes the generator's bytes, torch's version, the precision, the CPU features
that change the code (AVX-512, bf16, AMX, VNNI) and ``CACHE_VERSION`` (``cache_facts``).
Beside each library, ``KEY.json`` (written after it, once it is complete) repeats those
facts with the library's size and SHA-256; a library is loaded only when its record
matches this generator and this torch, and its bytes match the record (``check_package``):
``dlopen`` of a truncated or foreign file can crash the process, so a stale, damaged or
replaced entry is removed and compiled again, never loaded. Loading a cached
package takes ~0.1 s; compiling one takes 10-40 s of 2 cores, so it never runs on the
frame path: ``Compiler`` runs it in a background process at the lowest priority and the
generator swaps it in between two frames once it is there (until then the eager bf16
path runs). A package holds native code: f2f-cam loads only the ones this machine
compiled into its own cache; personas never carry one.

``F2F_CAM_COMPILE=0`` turns compiling off (the tests do, except the ones about it).

``KEY.timing.json`` keeps what the generator measured of itself here on its first
frames (compiled against eager, and the full generator's time when the persona has a
real-time student), with the CPU model and thread count, so that the next start runs
the faster way from its first frame instead of trying both again (``recall``, ``remember``).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from f2f_cam.landmarks import sha256_file

log = logging.getLogger(__name__)

CACHE_VERSION = 4  # 1: with the sub-pixel decoder rewrite (dropped: slower compiled); 3: KEY.json records;
# 4: tanh apart from the last convolution, a student's unfold outside the library
_CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def enabled() -> bool:
    """Whether compiling is allowed here (``F2F_CAM_COMPILE=0`` says no)."""
    return os.environ.get("F2F_CAM_COMPILE", "1") != "0"


def compiler_problem() -> str | None:
    """Why AOTInductor cannot compile here (no C++ compiler), or None."""
    import shutil

    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "no C++ compiler (g++ or clang++) on PATH; install one (Debian: apt install g++)"
    return None


def _cpu_features() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        import platform

        return [platform.machine(), platform.processor()]
    return [f for f in _CPU_FEATURES if f in flags]


_SHA_MEMO: dict[tuple, str] = {}


def _generator_sha256(path: Path) -> str:
    """``sha256_file``, remembered while the file's size and mtime stay (a frame that
    records a timing should not hash a 7 MB generator four times)."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = sha256_file(path)
    return _SHA_MEMO[key]


def cache_facts(generator: Path, size: int, precision: str) -> dict:
    """What a compiled package depends on: its key hashes these, its record repeats them."""
    import torch

    return {"cache_version": CACHE_VERSION, "generator_sha256": _generator_sha256(Path(generator)),
            "torch": torch.__version__, "size": int(size), "precision": precision, "cpu": _cpu_features()}


def package_path(generator: Path, size: int, precision: str) -> Path:
    """Where the compiled package for ``generator`` at ``precision`` lives in the cache."""
    from f2f_cam.paths import cache_dir

    key = hashlib.sha256(json.dumps(cache_facts(generator, size, precision), sort_keys=True).encode())
    return cache_dir() / "generators" / f"{key.hexdigest()[:32]}.so"


def record_path(package: Path) -> Path:
    """``KEY.json``, the record beside ``KEY.so``."""
    return Path(package).with_suffix(".json")


def check_package(package: Path, generator: Path, size: int, precision: str) -> str | None:
    """Why the cached library ``package`` must not be loaded for this generator, or None.

    Checked before ``dlopen``: its record exists and names this generator, torch,
    precision and CPU, and the library has the recorded size and SHA-256 (a truncated,
    garbage or swapped file fails one of these)."""
    try:
        record = json.loads(record_path(package).read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not an object")
    except FileNotFoundError:
        return "it has no record (left by an interrupted compile or an older f2f-cam)"
    except (OSError, ValueError) as e:
        return f"its record is unreadable ({type(e).__name__})"
    want = cache_facts(generator, size, precision)
    diff = [k for k in want if record.get(k) != want[k]]
    if diff:
        return "it was compiled for another " + ", ".join(diff).replace("_sha256", "")
    try:
        if package.stat().st_size != record.get("bytes"):
            return f"it has {package.stat().st_size} bytes, its record says {record.get('bytes')}"
        if sha256_file(package) != record.get("sha256"):
            return "its bytes do not match its record (SHA-256)"
    except OSError as e:
        return f"it cannot be read ({e.strerror or type(e).__name__})"
    return None


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    """The CPU's model name (two CPUs with the same features can differ 2x in speed);
    read once a process, not at each timing kept on the frame path."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                        platform.processor())
    except OSError:
        return platform.processor()


def timing_facts(generator: Path, size: int, precision: str, threads: int) -> dict:
    """What a timing measured here depends on: the compiled package's facts, and the CPU's
    model, its CPU count and the torch threads the generator runs with."""
    from f2f_cam.system import cpu_count

    return {**cache_facts(generator, size, precision), "cpu_model": _cpu_model(), "cpus": cpu_count(),
            "threads": int(threads)}


def timing_path(generator: Path, size: int, precision: str) -> Path:
    """``KEY.timing.json``: what f2f-cam measured of this generator on this machine."""
    return package_path(generator, size, precision).with_suffix(".timing.json")


def recall(generator: Path, size: int, precision: str, threads: int) -> dict:
    """The timings ``remember`` kept for this generator here ({} when none, or when they
    were measured on another CPU, torch or thread count, or the file is damaged)."""
    path = timing_path(generator, size, precision)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.info("ignoring the timing record %s (%s)", path.name, type(e).__name__)
        return {}
    if not isinstance(record, dict) or record.get("facts") != timing_facts(generator, size, precision, threads) \
            or not isinstance(record.get("values"), dict):
        return {}
    return record["values"]


def remember(generator: Path, size: int, precision: str, threads: int, **values) -> None:
    """Keep ``values`` (JSON numbers and strings) about this generator here, beside what
    was kept before, so that the next start need not measure them again. Written
    atomically; a cache folder that cannot be written only costs the measurement again."""
    from f2f_cam import atomic

    path = timing_path(generator, size, precision)
    record = {"facts": timing_facts(generator, size, precision, threads),
              "values": {**recall(generator, size, precision, threads), **values}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, json.dumps(record, indent=1, sort_keys=True))
    except OSError as e:
        log.info("could not keep the generator's timings in %s (%s)", path, e.strerror or type(e).__name__)


def discard(package: Path) -> None:
    """Remove a cached library and its record (the next compile writes them again)."""
    for p in (Path(package), record_path(package)):
        p.unlink(missing_ok=True)


# -- the graph ------------------------------------------------------------------------

def _frames_module(net, dtype):
    import torch

    class Frames(torch.nn.Module):
        """uint8 (S, S, 3) sketch -> uint8 (S, S, 3) face, as ``Generator.__call__``."""

        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, img):
            x = img.permute(2, 0, 1).unsqueeze(0).float().div(127.5).sub(1.0).to(dtype)
            y = self.net(x).float().clamp(-1, 1).add(1.0).mul(127.5).round()
            return y.to(torch.uint8)[0].permute(1, 2, 0).contiguous()

    return Frames()


def _tanh_apart(gm) -> None:
    """Write each ``tanh(x)`` as ``1 - 2 / (exp(2x) + 1)`` (the same function).

    Inductor otherwise fuses the generator's last tanh into oneDNN's transposed
    convolution as a post-op, which oneDNN runs slowly on AVX2 (5.5 -> 12.5 ms on the
    student's last layer, Zen 1); apart, it is one vectorised pass over the output."""
    import torch

    aten = torch.ops.aten
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target == aten.tanh.default:
            with gm.graph.inserting_before(node):
                x = node.args[0]
                # x + x, not 2 * x: freezing folds a multiplication by a constant into the
                # convolution before it, wrongly for a transposed one (torch 2.13).
                e = gm.graph.call_function(aten.exp.default, (gm.graph.call_function(aten.add.Tensor, (x, x)),))
                r = gm.graph.call_function(aten.reciprocal.default, (gm.graph.call_function(aten.add.Tensor, (e, 1.0)),))
                y = gm.graph.call_function(aten.rsub.Scalar, (gm.graph.call_function(aten.mul.Tensor, (r, 2.0)), 1.0))
            node.replace_all_uses_with(y)
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()


_ELEMENTWISE = ("add.Tensor", "exp.default", "reciprocal.default", "mul.Tensor", "rsub.Scalar", "tanh.default")


def _unfold_apart(gm) -> int:
    """A graph that ends by unfolding channels into pixels (a student's pixel shuffle by
    ``f``) ends before it instead, its last convolution's channels reordered so that the
    output, (S/f, S/f, 3 f^2), unfolds with one copy (``unfold``, depth-to-space in DCR
    order). Inside the graph that unfold is a gather which Inductor vectorises over the 3
    colours only, the exp of the tanh with it: 3.3 of the student's 23 ms (Zen 1).
    Returns ``f``; 1 where the graph is left as it was (it ends otherwise)."""
    import torch

    aten = torch.ops.aten
    out = next(n for n in gm.graph.nodes if n.op == "output")
    results = out.args[0] if isinstance(out.args[0], (tuple, list)) else (out.args[0],)
    shuffle = results[0] if len(results) == 1 else None
    if getattr(shuffle, "target", None) != aten.pixel_shuffle.default or len(shuffle.users) != 1:
        return 1
    f = int(shuffle.args[1])
    # Back from the shuffle through elementwise steps (the tanh) to one transposed
    # convolution: reordering its channels then reorders the shuffle's input alike.
    conv, todo, seen = None, [shuffle.args[0]], set()
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.target == aten.convolution.default:
            if conv not in (None, node) or len(node.args) < 9 or node.args[8] != 1:
                return 1
            conv = node
        elif node.op == "call_function" and str(node.target).removeprefix("aten.") in _ELEMENTWISE:
            todo += [a for a in node.args if isinstance(a, torch.fx.Node)]
        else:
            return 1
    weight, bias = (conv.args[1], conv.args[2]) if conv is not None else (None, None)
    if conv is None or not conv.args[6] or weight.op != "get_attr" or (bias is not None and bias.op != "get_attr"):
        return 1
    w = getattr(gm, weight.target)  # transposed: (in, out, kh, kw)
    if w.shape[1] != 3 * f * f:
        return 1
    # out channel c*f*f + p*f + q (pixel_shuffle's order) -> (p*f + q)*3 + c
    order = [c * f * f + p * f + q for p in range(f) for q in range(f) for c in range(3)]
    setattr(gm, weight.target, w[:, order].contiguous())
    if bias is not None:
        setattr(gm, bias.target, getattr(gm, bias.target)[order].contiguous())
    shuffle.replace_all_uses_with(shuffle.args[0])
    gm.graph.erase_node(shuffle)
    gm.graph.lint()
    gm.recompile()
    return f


def unfold(y, f: int):
    """(H, W, 3 f^2) uint8 in DCR order (``_unfold_apart``) -> (H f, W f, 3), one copy."""
    h, w = y.shape[:2]
    return y.view(h, w, f, f * 3).permute(0, 2, 1, 3).reshape(h * f, w * f, 3)


def build(script_module, size: int, precision: str):
    """The TorchScript generator as an exported program on uint8 frames at ``precision``."""
    import warnings

    import torch
    from torch._export.converter import TS2EPConverter

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    weights = next((n.output().type().dtype() for n in script_module.graph.nodes()
                    if n.kind() == "prim::Constant" and n.output().type().kind() == "TensorType"
                    and n.output().type().dtype() is not None and n.output().type().dtype().is_floating_point),
                   torch.float32)
    quiet = logging.getLogger("torch._export")  # "dimension ... 0/1 specialized": batch 1 is what we want
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = TS2EPConverter(script_module, (torch.zeros(1, 3, size, size, dtype=weights),)).convert().module()
    finally:
        quiet.setLevel(level)
    _tanh_apart(gm)
    _unfold_apart(gm)
    for node in gm.graph.nodes:
        # Weights in the running dtype and channels-last: freezing then prepacks them for
        # oneDNN once (in NCHW every call reorders them: 2.4x slower here).
        if node.op == "get_attr":
            t = getattr(gm, node.target)
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                t = t.to(dtype)
                t = t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t
                # As parameters: AOTInductor's freezing prepacks parameters, not constants.
                delattr(gm, node.target)
                gm.register_parameter(node.target, torch.nn.Parameter(t, requires_grad=False))
    frames = _frames_module(gm, dtype)
    with torch.inference_mode(False), torch.no_grad():
        return torch.export.export(frames, (torch.zeros(size, size, 3, dtype=torch.uint8),))


def compile_package(generator: Path, size: int, precision: str, out: Path) -> Path:
    """Compile ``generator`` into the shared library ``out`` (written atomically): the
    one ``.so`` of the AOTInductor package, its weights inside."""
    import tempfile
    import zipfile

    import torch

    from f2f_cam.atomic import atomic_path, write_text
    from f2f_cam.persona import load_generator_file

    problem = compiler_problem()
    if problem:
        raise RuntimeError(problem)
    module = load_generator_file(Path(generator), size)
    ep = build(module, size, precision)
    out.parent.mkdir(parents=True, exist_ok=True)
    record_path(out).unlink(missing_ok=True)  # the old record must not vouch for the new library
    with tempfile.TemporaryDirectory() as tmp, atomic_path(out) as part:
        package = Path(tmp) / "generator.pt2"
        # Under no_grad: with grad mode on, freezing leaves the convolutions unpacked (1.4x slower).
        with torch.no_grad():
            torch._inductor.aoti_compile_and_package(ep, package_path=str(package),
                                                     inductor_configs={"freezing": True})
        with zipfile.ZipFile(package) as z:
            libs = [n for n in z.namelist() if n.endswith(".so")]
            if len(libs) != 1:
                raise RuntimeError(f"the compiled package holds {len(libs)} libraries, not one")
            part.write_bytes(z.read(libs[0]))
    # The record last, once the library is whole: without it the library is never loaded.
    record = {**cache_facts(generator, size, precision), "bytes": out.stat().st_size, "sha256": sha256_file(out)}
    write_text(record_path(out), json.dumps(record, indent=1))
    return out


class Compiled:
    """A compiled generator library, run through its C interface with ctypes, which
    lets go of Python's GIL for the call (torch's own loader holds it: the landmarks
    thread then waits the whole generator step). uint8 tensor (S, S, 3) -> the same."""

    def __init__(self, path: Path):
        import ctypes

        import torch

        self._torch = torch
        self._lib = ctypes.CDLL(str(path))
        self._handle = ctypes.c_void_p()
        err = self._lib.AOTInductorModelContainerCreateWithDevice(ctypes.byref(self._handle), ctypes.c_size_t(1),
                                                                  b"cpu", None)
        if err:
            raise RuntimeError(f"{path.name}: the compiled generator did not start (error {err})")
        vp = ctypes.POINTER(ctypes.c_void_p)
        self._run = self._lib.AOTInductorModelContainerRun
        self._run.argtypes = [ctypes.c_void_p, vp, ctypes.c_size_t, vp, ctypes.c_size_t, ctypes.c_void_p,
                              ctypes.c_void_p]
        api = ctypes.pythonapi
        self._ptr, self._capsule = api.PyCapsule_GetPointer, api.PyCapsule_New
        self._ptr.restype, self._ptr.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
        self._capsule.restype = ctypes.py_object
        self._capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        self._arr = ctypes.c_void_p * 1

    def __call__(self, x):
        aoti = self._torch._C._aoti
        # Tensor handles: the input one is taken over by the run, the output one is ours.
        ins = self._arr(self._ptr(aoti.unsafe_alloc_void_ptrs_from_tensors([x])[0], None))
        outs = self._arr()
        err = self._run(self._handle, ins, 1, outs, 1, None, None)
        if err:
            raise RuntimeError(f"the compiled generator failed (error {err})")
        y = aoti.alloc_tensors_by_stealing_from_void_ptrs([self._capsule(outs[0], None, None)])[0]
        return y if y.shape[-1] == 3 else unfold(y, round((y.shape[-1] // 3) ** 0.5))


# -- compiling in the background -------------------------------------------------------

_running: set[subprocess.Popen] = set()


@atexit.register
def _stop_all() -> None:
    """A compile still running when f2f-cam exits is stopped (its partial file goes with it)."""
    for proc in list(_running):
        if proc.poll() is None:
            proc.terminate()


class Compiler:
    """Compiles one generator in a background process (lowest CPU priority, one torch
    thread) and loads the package once it is there. ``result()`` is the loaded package,
    or None while compiling and when compiling failed (said once in the log)."""

    def __init__(self, generator: Path, size: int, precision: str, out: Path):
        self.out, self.error, self.seconds = out, None, None
        self._facts = (generator, size, precision)
        self._loaded = None
        self._t0 = time.monotonic()
        cmd = [sys.executable, "-m", "f2f_cam.accel", str(generator), str(size), precision, str(out)]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, env=env)
        _running.add(self._proc)
        self._done = threading.Event()
        threading.Thread(target=self._wait, name="f2f-compile", daemon=True).start()

    def _wait(self) -> None:
        try:
            _, err = self._proc.communicate()
            _running.discard(self._proc)
            self.seconds = time.monotonic() - self._t0
            if self._proc.returncode != 0:
                lines = err.decode("utf-8", "replace").strip().splitlines()
                self.error = lines[-1] if lines else f"exit status {self._proc.returncode}"
                log.warning("compiling the generator failed (%s); it runs uncompiled", self.error)
                return
            problem = check_package(self.out, *self._facts)
            if problem:
                discard(self.out)
                raise RuntimeError(f"{self.out.name}: {problem}")
            self._loaded = Compiled(self.out)
            log.info("generator compiled in %.0f s: %s", self.seconds, self.out.name)
        except Exception as e:  # a broken package: say so, keep the eager path
            from f2f_cam.errors import one_line

            self.error = one_line(e)
            log.warning("loading the compiled generator failed (%s); it runs uncompiled", self.error)
        finally:
            self._done.set()

    def result(self):
        return self._loaded if self._done.is_set() else None

    def wait(self, timeout: float | None = None):
        """Block until compiled (or failed); returns ``result()``."""
        self._done.wait(timeout)
        return self.result()


def main(argv: list[str]) -> int:
    """``python -m f2f_cam.accel GENERATOR SIZE PRECISION OUT``: what ``Compiler`` runs."""
    import torch

    import signal

    generator, size, precision, out = argv
    # Stopped (f2f-cam exiting): unwind, so that the partial library is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if hasattr(os, "nice"):
        os.nice(19)  # the lowest priority: the running daemon's frames come first
    torch.set_num_threads(1)
    compile_package(Path(generator), int(size), precision, Path(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
