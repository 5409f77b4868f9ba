"""``f2f-cam doctor``'s checks for the known traps: why Zoom or Chrome does not list
"Face2Face Cam" although f2f-cam runs.

Each check takes the roots it reads (``sysfs``, ``modules``, ``proc``, ``plist``, the
config file) as parameters with the real ones as defaults, so a test hands it a fake
tree; commands (mokutil, fuser, lsof, ps) are found on PATH and run with a timeout.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
from pathlib import Path

from f2f_cam.doctor import _check, _daemon_running
from f2f_cam.errors import UserError
from f2f_cam.sinks.virtualcam import CARD_LABEL, LINUX_INSTALLER, how_to_get_a_backend

SYSFS = Path("/sys")
MODULES = Path("/lib/modules")
PROC = Path("/proc")
OBS_PLIST = Path("/Applications/OBS.app/Contents/Info.plist")
COMMAND_TIMEOUT = 3.0  # seconds for mokutil, fuser, lsof, ps

# Apps that find V4L2 cameras by trying /dev/video0 ... /dev/video63 see no further:
# WebRTC's Linux capture module (Firefox; Chrome before it listed /dev itself) loops
# `n < 64` ("detect /dev/video [0-63]"), and OBS has MAX_DEVICES 64 (obs-studio issue
# 4347: a loopback device at video_nr=99 is not found). 0-63 is also the old V4L2 minor
# range for video devices. Zoom's code is closed: we assume it stops there too, to be
# safe. The installer's --video-nr takes 0-255, so numbers from 64 up are flagged.
MAX_LISTED_VIDEO_NR = 63
RELOAD = "sudo modprobe -r v4l2loopback && sudo modprobe v4l2loopback"
# OBS 30 moved its macOS virtual camera to a camera system extension (macOS 13+), which
# is what pyvirtualcam's obs backend and today's video apps talk to; older OBS ships the
# DAL plugin that Zoom, Chrome and FaceTime no longer load.
OBS_MIN_MAJOR = 30
# What video apps are called in /proc/PID/comm (15 chars at most), `ps -o comm` (the
# path's last part on macOS) and tasklist (without .exe), lower case -> the app's name.
VIDEO_APPS = {"zoom": "Zoom", "zoom.us": "Zoom", "zoomwebviewhost": "Zoom", "chrome": "Chrome",
              "google chrome": "Chrome", "chromium": "Chromium", "chromium-browse": "Chromium",
              "teams": "Teams", "ms-teams": "Teams", "microsoft teams": "Teams", "teams-for-linux": "Teams",
              "firefox": "Firefox", "firefox-bin": "Firefox", "firefox-esr": "Firefox", "obs": "OBS",
              "obs studio": "OBS", "obs64": "OBS", "msteams": "Teams"}


def _run(*cmd: str) -> str | None:
    """The stdout of a command found on PATH; None if it is missing, fails to start or
    runs past COMMAND_TIMEOUT (then it is killed with its children: a child left
    holding the pipe would keep us waiting)."""
    exe = shutil.which(cmd[0])
    if exe is None:
        return None
    try:
        proc = subprocess.Popen([exe, *cmd[1:]], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                errors="replace", start_new_session=os.name == "posix")
    except OSError:
        return None
    try:
        return proc.communicate(timeout=COMMAND_TIMEOUT)[0]
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        proc.communicate()
        return None


# -- virtual camera driver: v4l2loopback (Linux), OBS (macOS) ---------------------------

def check_virtual_camera_driver(system: str | None = None, sysfs: Path = SYSFS, modules: Path = MODULES,
                                kernel: str | None = None, plist: Path = OBS_PLIST) -> dict:
    """The traps of this OS's virtual camera driver (Linux: v4l2loopback's options,
    device number, Secure Boot, a kernel update; macOS: the OBS version)."""
    system = system or platform.system()
    if system == "Linux":
        return check_v4l2loopback(Path(sysfs), Path(modules), kernel or platform.release())
    if system == "Darwin":
        return check_obs_version(Path(plist))
    return _check("virtual camera driver", "ok", f"no known driver trap to check on {system}")


def loopback_devices(sysfs: Path = SYSFS) -> list[tuple[int, str]]:
    """(N of /dev/videoN, card label) of each v4l2loopback device, in N order: the
    video4linux devices with no hardware parent live in devices/virtual."""
    folder = Path(sysfs) / "devices" / "virtual" / "video4linux"
    out = []
    for entry in folder.glob("video*") if folder.is_dir() else ():
        if entry.name[5:].isdigit():
            try:
                label = (entry / "name").read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                label = ""
            out.append((int(entry.name[5:]), label))
    return sorted(out)


def _param(sysfs: Path, name: str) -> list[str]:
    """A v4l2loopback array parameter, one entry per device slot ("Y,N,N,..." -> list)."""
    try:
        text = (sysfs / "module" / "v4l2loopback" / "parameters" / name).read_text().strip()
    except OSError:
        return []
    return [v.strip() for v in text.split(",")] if text else []


def exclusive_caps(sysfs: Path, devices: list[tuple[int, str]]) -> dict[int, bool | None]:
    """Device number -> its exclusive_caps (None: unknown). The parameter has one entry
    per device in the order the module made them: the i-th is video_nr[i] where that was
    given, else the devices come in number order."""
    caps, nrs = _param(sysfs, "exclusive_caps"), _param(sysfs, "video_nr")
    flag = {"y": True, "1": True, "n": False, "0": False}
    out = {}
    for position, (nr, _label) in enumerate(devices):
        i = nrs.index(str(nr)) if str(nr) in nrs else position
        out[nr] = flag.get(caps[i].lower()) if i < len(caps) else None
    return out


def check_v4l2loopback(sysfs: Path = SYSFS, modules: Path = MODULES, kernel: str | None = None) -> dict:
    name = "virtual camera driver"
    kernel = kernel or platform.release()
    if not (sysfs / "module" / "v4l2loopback").is_dir():
        return _not_loaded(modules, kernel)
    devices = loopback_devices(sysfs)
    if not devices:
        return _check(name, "problem", "v4l2loopback is loaded but made no device",
                      f"reload it: `{RELOAD} devices=1 video_nr=10 exclusive_caps=1 card_label=\"{CARD_LABEL}\"`")
    ours = [d for d in devices if d[1] == CARD_LABEL] or devices  # what f2f-cam writes to
    caps = exclusive_caps(sysfs, devices)
    listed = ", ".join(f"/dev/video{nr} \"{label}\"" for nr, label in ours)
    details = {"devices": [{"device": f"/dev/video{nr}", "label": label, "exclusive_caps": caps[nr]}
                           for nr, label in devices]}
    problems = []
    if off := [nr for nr, _ in ours if caps[nr] is False]:
        problems.append(f"/dev/video{off[0]} has exclusive_caps=0: Chrome and Zoom do not list it")
    if high := [nr for nr, _ in ours if nr > MAX_LISTED_VIDEO_NR]:
        problems.append(f"/dev/video{high[0]} is numbered above {MAX_LISTED_VIDEO_NR}: Zoom, Firefox and OBS "
                        f"look at /dev/video0-{MAX_LISTED_VIDEO_NR} only")
    if not problems:
        state = "exclusive_caps=1" if caps[ours[0][0]] else "exclusive_caps unknown"
        return _check(name, "ok", f"v4l2loopback loaded: {listed} ({state})", **details)
    nr = ours[0][0] if ours[0][0] <= MAX_LISTED_VIDEO_NR else 10
    installer = f"sudo {LINUX_INSTALLER}" + (f" --video-nr {nr}" if nr != 10 else "")
    return _check(name, "problem", "; ".join(problems),
                  f"stop f2f-cam and the apps using the camera, then `{RELOAD} exclusive_caps=1 video_nr={nr} "
                  f"card_label=\"{CARD_LABEL}\"`; for every boot: `{installer}`", **details)


def find_module(folder: Path) -> Path | None:
    """The first v4l2loopback.ko* under a kernel's modules folder (kernel/, updates/dkms,
    extra/ ...; not into the build/ and source/ links, which os.walk does not follow)."""
    for root, _dirs, files in os.walk(folder):
        for f in files:
            if f.startswith("v4l2loopback.ko"):
                return Path(root) / f
    return None


def secure_boot() -> bool | None:
    """Whether `mokutil --sb-state` says Secure Boot is on (None: no mokutil, no answer)."""
    out = _run("mokutil", "--sb-state")
    if out is None or "SecureBoot" not in out:
        return None
    return "SecureBoot enabled" in out


def _not_loaded(modules: Path, kernel: str) -> dict:
    """v4l2loopback is not loaded: built for another kernel only (a kernel update),
    refused under Secure Boot, simply not loaded yet, or not installed."""
    name = "virtual camera driver"
    folder = modules / kernel
    here = find_module(folder)
    others = sorted(p.name for p in modules.iterdir() if p.is_dir() and p.name != kernel
                    and find_module(p)) if modules.is_dir() else []
    details = {"kernel": kernel, "module": str(here) if here else None, "other_kernels": others}
    if here is None and others:
        return _check(name, "problem", f"v4l2loopback is built for kernel {', '.join(others)} but not for the "
                      f"running kernel {kernel} (after a kernel update)",
                      f"install this kernel's headers and rebuild it: `sudo apt install linux-headers-{kernel} "
                      f"&& sudo dkms autoinstall` (Fedora: `sudo akmods --force`), then `sudo modprobe v4l2loopback`; "
                      f"or reboot into {others[-1]}", **details)
    if here is not None or not folder.is_dir():  # there, or no folder to tell: Secure Boot may refuse it
        details["secure_boot"] = secure_boot()
    if details.get("secure_boot"):
        return _check(name, "problem", "v4l2loopback is not loaded and Secure Boot is on: the kernel refuses a "
                      "module DKMS built until its signing key is enrolled",
                      "enrol the DKMS signing key: `sudo mokutil --import /var/lib/dkms/mok.pub`, reboot and accept "
                      "it (Enroll MOK), then `sudo modprobe v4l2loopback`; or install your distribution's signed "
                      "v4l2loopback", **details)
    if here is not None:
        return _check(name, "problem", f"v4l2loopback is installed ({here}) but not loaded",
                      f"`sudo modprobe v4l2loopback` (`sudo dmesg | tail` says why if it fails); for every boot: "
                      f"`sudo {LINUX_INSTALLER}`", **details)
    why = (f"not installed for kernel {kernel}" if folder.is_dir()
           else f"{folder} is missing: cannot tell whether it is installed")
    return _check(name, "problem", f"v4l2loopback is not loaded ({why})", how_to_get_a_backend("Linux"), **details)


def check_obs_version(plist: Path = OBS_PLIST) -> dict:
    """macOS: OBS Studio's version, from its Info.plist (CFBundleShortVersionString)."""
    import plistlib

    name = "virtual camera driver"
    try:
        with open(plist, "rb") as f:
            version = str(plistlib.load(f).get("CFBundleShortVersionString", ""))
    except FileNotFoundError:
        return _check(name, "problem", f"OBS Studio is not installed ({plist} is missing)",
                      how_to_get_a_backend("Darwin"))
    except (OSError, plistlib.InvalidFileException, ValueError) as e:
        return _check(name, "note", f"cannot read OBS's version from {plist} ({e})",
                      f"check that OBS Studio is {OBS_MIN_MAJOR} or later (OBS > About)")
    major = re.match(r"\d+", version)
    if major is None:
        return _check(name, "note", f"OBS Studio {version!r}: not a version number I know",
                      f"check that it is {OBS_MIN_MAJOR} or later (OBS > About)", obs_version=version)
    if int(major.group()) < OBS_MIN_MAJOR:
        return _check(name, "problem", f"OBS Studio {version}: its virtual camera needs OBS {OBS_MIN_MAJOR} or "
                      "later on macOS (the camera system extension, macOS 13+)",
                      f"update OBS Studio to {OBS_MIN_MAJOR}+ (obsproject.com, or `brew upgrade --cask obs`), then "
                      "start its virtual camera once and allow the extension in System Settings",
                      obs_version=version)
    return _check(name, "ok", f"OBS Studio {version}", obs_version=version)


# -- the webcam busy in another process ---------------------------------------------------

def _comm(pid: int, proc: Path) -> str:
    try:
        return (proc / str(pid) / "comm").read_text(errors="replace").strip() or "?"
    except OSError:
        out = _run("ps", "-o", "comm=", "-p", str(pid))
        return os.path.basename(out.strip()) if out and out.strip() else "?"


def device_holders(devices: list[str], proc: Path = PROC, skip: int | None = None) -> dict[str, list]:
    """Device path -> [(pid, process name)] of the processes that hold it open (this
    one, ``skip``, left out): /proc/*/fd links, else what fuser or lsof says."""
    skip = os.getpid() if skip is None else skip
    proc = Path(proc)
    wanted = {os.path.realpath(d): d for d in devices}
    found: dict[str, list] = {d: [] for d in devices}
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == skip:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone, or another user's
            continue
        targets = set()
        for fd in fds:
            with contextlib.suppress(OSError):  # closed since it was listed
                targets.add(os.readlink(fd))
        for target in targets & wanted.keys():
            found[wanted[target]].append((int(entry.name), _comm(int(entry.name), proc)))
    for device, holders in found.items():
        if not holders:  # another user's process (hidden from us) or no /proc: ask fuser or lsof
            out = _run("fuser", device) or _run("lsof", "-t", "--", device) or ""  # pids on stdout
            pids = sorted({int(p) for p in re.findall(r"\d+", out)} - {skip})
            holders.extend((pid, _comm(pid, proc)) for pid in pids)
    return found


# -- video apps: they list cameras when they start ---------------------------------------

def running_video_apps(proc: Path = PROC, system: str | None = None) -> list[tuple[int, str]]:
    """(pid, app name) of each running video app: /proc/*/comm on Linux, `ps -A -o
    pid=,comm=` on macOS, tasklist on Windows."""
    system = system or platform.system()
    found = []
    if system == "Linux" and Path(proc).is_dir():
        for entry in Path(proc).iterdir():
            if entry.name.isdigit():
                found.append((int(entry.name), _comm(int(entry.name), Path(proc))))
    elif system == "Windows":
        for line in (_run("tasklist", "/fo", "csv", "/nh") or "").splitlines():
            cells = [c.strip('"') for c in line.split('","')]
            if len(cells) > 1 and cells[1].isdigit():
                found.append((int(cells[1]), cells[0].removesuffix(".exe")))
    else:
        for line in (_run("ps", "-A", "-o", "pid=,comm=") or "").splitlines():
            pid, _, comm = line.strip().partition(" ")
            if pid.isdigit():
                found.append((int(pid), os.path.basename(comm.strip())))
    return sorted((pid, VIDEO_APPS[c.lower()]) for pid, c in found if c.lower() in VIDEO_APPS)


def check_video_apps(proc: Path = PROC, system: str | None = None) -> dict:
    """A video app started before f2f-cam does not list Face2Face Cam: apps enumerate
    cameras when they start (and with exclusive_caps=1 the device is a camera only while
    f2f-cam writes to it)."""
    name = "video apps"
    advice = "start f2f-cam before the video app: apps list cameras when they start"
    if _daemon_running():
        return _check(name, "ok", "f2f-cam runs: video apps started from now on list " + CARD_LABEL)
    apps = running_video_apps(proc, system)
    if not apps:
        return _check(name, "ok", f"none running; {advice}", apps=[])
    names = ", ".join(dict.fromkeys(app for _, app in apps))
    return _check(name, "note", f"{names} running while f2f-cam is not: {advice}",
                  f"restart {names} after `f2f-cam run` so that it lists {CARD_LABEL}",
                  apps=[{"pid": pid, "app": app} for pid, app in apps])


# -- config file: the output size and the rest -------------------------------------------

def _even_size_for(e) -> str | None:
    """For a SettingError on [daemon] size with an odd WIDTHxHEIGHT: the even size to
    write instead (None for any other bad setting)."""
    from f2f_cam.config import even_size, parse_size

    if (e.section, e.key) != ("daemon", "size"):
        return None
    try:
        size = parse_size(e.value)
    except UserError:  # not WIDTHxHEIGHT at all
        return None
    return None if size == even_size(size) else "{}x{}".format(*even_size(size))


def check_config_file(config: Path | None = None) -> dict:
    """Whether config.toml loads, and the output size (Chrome refuses odd widths and
    heights; a file written before f2f-cam refused them may hold one)."""
    from f2f_cam import paths
    from f2f_cam.config import DaemonConfig, PipelineConfig, SettingError, load_config

    name = "config file"
    path = Path(config) if config else paths.config_file()
    try:
        load_config(path, "pipeline", PipelineConfig)
        daemon = load_config(path, "daemon", DaemonConfig)
    except SettingError as e:
        fit = _even_size_for(e)
        fix = (f"set size = \"{fit}\" under [daemon] in {path} (or run `f2f-cam run --size {fit}`)" if fit
               else f"fix that line in {path}, or delete the file")
        return _check(name, "problem", str(e), fix, path=str(path))
    except UserError as e:  # not TOML, an unknown key, unreadable
        return _check(name, "problem", str(e), f"fix or delete {path}", path=str(path))
    where = str(path) if path.is_file() else f"none ({path}): the defaults"
    return _check(name, "ok", f"{where}; output {daemon.size} at {daemon.fps:g} fps", path=str(path),
                  size=daemon.size)
