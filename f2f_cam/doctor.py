"""``f2f-cam doctor``: what works on this machine, and for each problem, its fix.

Every check is quick and can neither hang nor crash the report: cameras are probed in
threads with a timeout, the tray in a subprocess with a timeout, and any exception a
check raises becomes that check's problem line.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

from f2f_cam.errors import UserError, one_line
from f2f_cam.system import display_problem, native_bf16

CAMERA_TIMEOUT = 3.0  # seconds per camera probe
TRAY_TIMEOUT = 15.0  # seconds for `import pystray` in a subprocess


def _check(name: str, status: str, summary: str, fix: str | None = None, essential: bool = False,
           **details) -> dict:
    """status: ok | note (works, but read this) | problem."""
    return {"name": name, "status": status, "essential": essential, "summary": summary, "fix": fix,
            "details": details}


def all_checks() -> tuple:
    """Every check, in report order (the known traps live in ``doctor_traps``)."""
    from f2f_cam import doctor_traps as traps

    return (check_landmark_model, check_personas, traps.check_config_file, check_virtual_camera,
            traps.check_virtual_camera_driver, check_cameras, traps.check_video_apps, check_torch,
            check_compiler, check_display_and_tray, check_daemon)


def run_checks() -> dict:
    """All checks; ``ok`` is False when an essential one has a problem."""
    checks = []
    for fn in all_checks():
        t0 = time.monotonic()
        try:
            result = fn()
        except Exception as e:  # a check must never take the report down
            result = _check(fn.__name__.removeprefix("check_").replace("_", " "), "problem",
                            f"the check itself failed: {type(e).__name__}: {e}",
                            "please report this (run `f2f-cam --verbose doctor`)")
        result["seconds"] = round(time.monotonic() - t0, 2)
        checks.append(result)
    ok = not any(c["essential"] and c["status"] == "problem" for c in checks)
    return {"ok": ok, "platform": f"{platform.system()} {platform.release()} ({platform.machine()}), "
                                  f"Python {platform.python_version()}", "checks": checks}


def format_report(report: dict) -> str:
    lines = [f"f2f-cam doctor: {report['platform']}"]
    for c in report["checks"]:
        lines.append(f"  {c['status']:<8} {c['name']:<21} {c['summary']}")
        if c["fix"] and c["status"] != "ok":
            lines.append(f"  {'':<8} {'':<21} fix: {c['fix']}")
    lines.append("essentials work: " + ("yes" if report["ok"] else
                                        "NO (see the problems marked essential above)"))
    return "\n".join(lines)


# -- landmarks and personas (the essentials) ---------------------------------------------

def check_landmark_model() -> dict:
    from f2f_cam.landmarks import LandmarkDetector, find_model

    try:
        path = find_model(download=False)
    except UserError as e:
        return _check("landmark model", "problem", str(e),
                      "reinstall f2f-cam, or run any f2f-cam command online once to download it", essential=True)
    try:
        LandmarkDetector(path, mode="image").close()
    except Exception as e:
        return _check("landmark model", "problem", f"{path} does not load ({one_line(e)})",
                      f"delete {path} and reinstall f2f-cam", essential=True, path=str(path))
    return _check("landmark model", "ok", f"{path} ({path.stat().st_size / 1e6:.1f} MB), loads",
                  essential=True, path=str(path))


def check_personas() -> dict:
    from f2f_cam.persona import Persona, PersonaStore

    store = PersonaStore()
    good, broken = [], []
    for p in store.list():
        if not isinstance(p, Persona):
            broken.append({"name": p[0], "problem": p[2]})
            continue
        try:
            p.load_generator()
            good.append(p.name)
        except UserError as e:
            broken.append({"name": p.name, "problem": str(e)})
    details = {"store": str(store.root), "loadable": good, "broken": broken}
    if broken:
        names = ", ".join(b["name"] for b in broken)
        status = "problem" if not good else "note"
        return _check("personas", status, f"{len(good)} load ({', '.join(good) or 'none'}); broken: {names} "
                      f"({broken[0]['problem']})",
                      "re-import them (`f2f-cam personas import FILE.f2f --force`) or remove them "
                      "(`f2f-cam personas remove NAME`)", essential=True, **details)
    if not good:
        return _check("personas", "note", f"none installed yet (store: {store.root}); the layouts landmarks "
                      "and camera work without one",
                      "train one with `f2f-cam train VIDEO --name NAME`, or import one with "
                      "`f2f-cam personas import FILE.f2f`", essential=True, **details)
    return _check("personas", "ok", f"{len(good)} load: {', '.join(good)}", essential=True, **details)


# -- devices ---------------------------------------------------------------------------

def check_virtual_camera() -> dict:
    import pyvirtualcam

    from f2f_cam.sinks.virtualcam import (BUILTIN_BACKENDS, CARD_LABEL, available_backends, default_device,
                                    how_to_get_a_backend, v4l2_devices)

    fix = how_to_get_a_backend()
    if _daemon_running():
        return _check("virtual camera", "ok", "in use by the running f2f-cam daemon (`f2f-cam ctl status` "
                      "shows its backend and device)", fix, daemon_running=True)
    registered = available_backends()
    backends = []
    for name in BUILTIN_BACKENDS:
        if name not in registered:
            backends.append({"backend": name, "works": False, "why": f"not available on {platform.system()}"})
            continue
        device = default_device(name)
        try:
            cam = pyvirtualcam.Camera(640, 480, 30, fmt=pyvirtualcam.PixelFormat.RGB, backend=name, device=device)
        except Exception as e:
            backends.append({"backend": name, "works": False,
                             "why": one_line(e).removeprefix(f"'{name}' backend: ")})
            continue
        backends.append({"backend": name, "works": True, "device": cam.device})
        cam.close()
    loopback = [{"device": d, "label": label} for d, label in v4l2_devices()]
    working = [b for b in backends if b["works"]]
    details = {"backends": backends, "v4l2_devices": loopback}
    if not working:
        why = "; ".join(f"{b['backend']}: {b['why']}" for b in backends)
        return _check("virtual camera", "problem", f"no backend works ({why}); `--output window` and "
                      "`--output FILE.mp4` still work", fix, **details)
    best = working[0]
    if best["backend"] == "v4l2loopback" and not any(d["label"] == CARD_LABEL for d in loopback):
        return _check("virtual camera", "note", f"v4l2loopback works ({best['device']}) but no device is "
                      f"labelled \"{CARD_LABEL}\": apps show another name", fix, **details)
    return _check("virtual camera", "ok", f"{best['backend']} works ({best['device']})", **details)


def _probe_camera(spec, out: dict) -> None:
    import cv2

    cap = cv2.VideoCapture(spec)
    try:
        if not cap.isOpened():
            out["why"] = "cannot be opened"
            return
        ok, frame = cap.read()
        if not ok:
            out["why"] = "opens but gives no frame (busy, or not a capture device)"
            return
        out.update(works=True, size=[int(frame.shape[1]), int(frame.shape[0])])
    finally:
        cap.release()


def camera_candidates() -> list:
    """/dev/video* on Linux (where index N is /dev/videoN), indexes 0-4 elsewhere; the
    virtual camera's own loopback devices are left out."""
    if platform.system() != "Linux":
        return list(range(5))
    from f2f_cam.sinks.virtualcam import CARD_LABEL, v4l2_devices

    labels = dict(v4l2_devices())
    devices = sorted(glob.glob("/dev/video*"), key=lambda d: int(d[10:]) if d[10:].isdigit() else 1 << 30)
    return [d for d in devices if labels.get(d, "") != CARD_LABEL and "loopback" not in labels.get(d, "").lower()
            and "dummy video device" not in labels.get(d, "").lower()]


def _probe_cameras(candidates: list) -> list[dict]:
    """{"camera", "works", "size" or "why"} per candidate, probed in parallel threads
    that all get CAMERA_TIMEOUT together (a hung camera is left behind, not waited for)."""
    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # no WARN line per missing index
    try:
        threads = []
        for spec in candidates:
            out = {"camera": spec, "works": False}
            t = threading.Thread(target=_probe_camera, args=(spec, out), daemon=True)
            t.start()
            threads.append((t, out))
        deadline = time.monotonic() + CAMERA_TIMEOUT
        for t, out in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                out["why"] = f"did not answer within {CAMERA_TIMEOUT:g} s"
    finally:
        cv2.utils.logging.setLogLevel(level)
    return [out for _, out in threads]


def check_cameras(candidates: list | None = None, proc: Path = Path("/proc")) -> dict:
    """Which cameras give a frame; for one that does not, the process that holds it."""
    from f2f_cam.doctor_traps import device_holders

    fix = ("plug in a webcam and check that no other app holds it; without one, "
           "`f2f-cam run --camera VIDEO_FILE` plays a video file as the camera")
    candidates = camera_candidates() if candidates is None else candidates
    if not candidates:
        return _check("cameras", "note", "none found (no /dev/video* devices)", fix, cameras=[])
    results = _probe_cameras(candidates)
    failed = [r for r in results if not r["works"] and isinstance(r["camera"], str)]  # a device path
    holders = device_holders([r["camera"] for r in failed], proc) if failed else {}
    busy = []
    for r in failed:
        if holders.get(r["camera"]):
            r["held_by"] = [{"pid": pid, "name": name} for pid, name in holders[r["camera"]]]
            r["why"] = "busy: held by " + ", ".join(f"{h['name']} (pid {h['pid']})" for h in r["held_by"])
            busy.append(r)
    if busy:
        holder = busy[0]["held_by"][0]
        fix = f"close {holder['name']} (pid {holder['pid']}) or pick another camera with --camera"
    working = [r for r in results if r["works"]]
    if not working:
        tried = ", ".join(str(c) for c in candidates)
        return _check("cameras", "note", f"none works (tried {tried}: {(busy or results)[0].get('why', '?')})",
                      fix, cameras=results)
    names = ", ".join(f"{r['camera']} ({r['size'][0]}x{r['size'][1]})" for r in working)
    if busy:
        return _check("cameras", "note", f"{names}; {busy[0]['camera']} is {busy[0]['why']}", fix, cameras=results)
    return _check("cameras", "ok", names, cameras=results)


# -- compute, desktop, daemon ---------------------------------------------------------------

def check_torch() -> dict:
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    bf16 = native_bf16("cpu")
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    details = {"version": torch.__version__, "threads": torch.get_num_threads(), "cpu_capability": capability,
               "mkldnn": torch.backends.mkldnn.is_available(), "bf16": bf16, "cuda": cuda,
               "cuda_device": torch.cuda.get_device_name(0) if cuda else None, "mps": mps}
    accel = f"CUDA ({details['cuda_device']})" if cuda else "MPS" if mps else "no GPU"
    summary = (f"torch {torch.__version__}, {details['threads']} threads, CPU {capability}, "
               f"bf16 {'yes' if bf16 else 'no'}, {accel}")
    if not cuda and not mps and not bf16:
        return _check("torch", "note", summary + ": personas larger than ngf=32 may run below 30 fps",
                      "use a persona trained with a smaller generator (ngf=32 or 16)", **details)
    return _check("torch", "ok", summary, **details)


def check_compiler() -> dict:
    """Whether generators can be compiled for this CPU (1.5-2.5x the eager path), and which are."""
    from f2f_cam import accel
    from f2f_cam.paths import cache_dir

    folder = cache_dir() / "generators"
    done = sorted(p.name for p in folder.glob("*.so")) if folder.is_dir() else []
    details = {"cache": str(folder), "compiled": len(done), "enabled": accel.enabled()}
    if not accel.enabled():
        return _check("compiled generator", "note", "compiling is off (F2F_CAM_COMPILE=0): generators run eager",
                      "unset F2F_CAM_COMPILE to run them 1.5-2.5x faster", **details)
    problem = accel.compiler_problem()
    if problem:
        return _check("compiled generator", "note", f"generators run eager (1.5-2.5x slower): {problem}",
                      "install a C++ compiler (Debian/Ubuntu: sudo apt install g++; Fedora: sudo dnf install "
                      "gcc-c++; macOS: xcode-select --install)", **details)
    return _check("compiled generator", "ok", f"a C++ compiler is here; {len(done)} generator(s) compiled in "
                  f"{folder} (the first `f2f-cam run` with a persona compiles it in the background)", **details)


def check_display_and_tray() -> dict:
    """The tray backend this desktop gets (``f2f_cam.desktop``, in a process of its own:
    PyGObject and Xlib can hang on a broken display), what menus still need here, and
    the session bus and notification service it uses."""
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    headless_fix = "run `f2f-cam run --no-tray` and control it with `f2f-cam ctl`"
    problem = display_problem()
    if problem:
        return _check("display and tray", "note", f"no display ({problem}): no tray icon "
                      "and no preview window", headless_fix, display=None)
    if sys.platform in ("win32", "darwin"):
        return _check("display and tray", "ok", "the system tray (menu bar) with menus", display=display)
    try:
        proc = subprocess.run([sys.executable, "-m", "f2f_cam.desktop"], capture_output=True, text=True,
                              timeout=TRAY_TIMEOUT)
    except subprocess.TimeoutExpired:
        return _check("display and tray", "problem", f"asking the desktop for its tray took over {TRAY_TIMEOUT:g} s",
                      headless_fix, display=display)
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return _check("display and tray", "problem", f"asking the desktop for its tray failed: {err}",
                      headless_fix, display=display)
    from f2f_cam.desktop import menus_fix

    info = json.loads(proc.stdout.strip().splitlines()[-1])
    services = (("session bus yes" if info["bus"] else "no D-Bus session bus") + ", "
                + ("notifications yes" if info["notifications"] else "no notification service"))
    if info["backend"] is None:
        fix = (menus_fix(info["missing"]) if "AppIndicator" in info["missing"] else
               "start your desktop's panel (on GNOME: enable the AppIndicator extension, "
               "gnome-shell-extension-appindicator), or use `f2f-cam ctl`")
        return _check("display and tray", "note", f"display {display}, {info['why']}: `f2f-cam run` runs without "
                      f"an icon; {services}", fix, **info)
    if info["missing"]:
        return _check("display and tray", "note", f"display {display}; tray icon without menus ({info['backend']} "
                      f"backend: {info['why']}); {services}", menus_fix(info["missing"]) + ", or use `f2f-cam ctl`",
                      **info)
    return _check("display and tray", "ok", f"display {display}; tray with menus ({info['backend']} backend: "
                  f"{info['why']}); {services}", **info)


def _daemon_running() -> bool:
    from f2f_cam import paths
    from f2f_cam.lock import InstanceLock

    try:
        return InstanceLock(paths.runtime_dir()).held_elsewhere()
    except OSError:
        return False


def check_daemon() -> dict:
    """Whether the daemon runs and answers; its log file either way (where to look when
    it stopped or misbehaves)."""
    from f2f_cam import paths
    from f2f_cam.control import ControlClient

    log = paths.daemon_log()
    where = f"log: {log}" + ("" if log.is_file() else " (not written yet)")
    if not _daemon_running():
        return _check("daemon", "ok", f"not running (start it with `f2f-cam run`); {where}", running=False,
                      log=str(log))
    try:
        st = ControlClient(timeout=3).request("status")["status"]
    except UserError as e:
        return _check("daemon", "problem", f"running but not answering ({e}); {where}",
                      "stop it (kill its pid, in the lock file) and start it again", running=True, log=str(log))
    return _check("daemon", "ok", f"running (pid {st['pid']}): persona {st['persona']}, layout {st['layout']}, "
                  f"camera {st['camera']}, {st['fps']:.0f} fps; {where}", running=True, daemon_status=st,
                  log=str(log))
