"""`f2f-cam doctor`'s known traps (issue 12), each simulated, with its healthy twin.

No machine here has v4l2loopback, a webcam, mokutil or OBS: the checks read the trees
they are given (a fake /sys, /lib/modules, /proc, Info.plist built in tmp_path) and find
commands on PATH (a fake mokutil or ps script). The busy camera is a real file held
open by a real process.
"""

import plistlib
import shutil
import subprocess
import sys
import time

import pytest

from f2f_cam import doctor, doctor_traps, paths
from f2f_cam.sinks.virtualcam import CARD_LABEL

KERNEL = "6.1.0-18-amd64"


def fake_sysfs(root, devices: dict[int, str], caps: str | None = "Y,N,N,N,N,N,N,N", video_nr: str | None = None):
    """/sys with v4l2loopback loaded: {N: label} as /sys/devices/virtual/video4linux/videoN."""
    params = root / "module" / "v4l2loopback" / "parameters"
    params.mkdir(parents=True)
    if caps is not None:
        (params / "exclusive_caps").write_text(caps + "\n")
    if video_nr is not None:
        (params / "video_nr").write_text(video_nr + "\n")
    for nr, label in devices.items():
        dev = root / "devices" / "virtual" / "video4linux" / f"video{nr}"
        dev.mkdir(parents=True)
        (dev / "name").write_text(label + "\n")
    return root


def fake_modules(root, kernels: dict[str, str | None]):
    """/lib/modules with one folder per kernel; the value: where v4l2loopback.ko* lies in it."""
    for kernel, module in kernels.items():
        (root / kernel / "kernel" / "drivers" / "media").mkdir(parents=True)
        (root / kernel / "kernel" / "drivers" / "media" / "uvcvideo.ko.zst").write_bytes(b"")
        if module:
            (root / kernel / module).parent.mkdir(parents=True, exist_ok=True)
            (root / kernel / module).write_bytes(b"")
    return root


def path_with(monkeypatch, tmp_path, **scripts: str):
    """PATH = a folder holding only these shell scripts (name -> body)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


def driver(tmp_path, **kw):
    kw.setdefault("sysfs", tmp_path / "sys")
    kw.setdefault("modules", tmp_path / "modules")
    return doctor_traps.check_virtual_camera_driver("Linux", kernel=KERNEL, **kw)


# -- 1. exclusive_caps ---------------------------------------------------------------

@pytest.mark.parametrize("caps, video_nr, devices, bad", [
    ("N,N,N,N,N,N,N,N", None, {10: CARD_LABEL}, True),
    ("0", None, {10: CARD_LABEL}, True),
    # Two devices: the parameter's i-th entry is the device with video_nr[i].
    ("Y,N,N,N,N,N,N,N", "0,10,-1,-1,-1,-1,-1,-1", {0: "OBS Virtual Camera", 10: CARD_LABEL}, True),
    ("N,Y,N,N,N,N,N,N", "0,10,-1,-1,-1,-1,-1,-1", {0: "OBS Virtual Camera", 10: CARD_LABEL}, False),
    ("N,Y,N,N,N,N,N,N", "10,0,-1,-1,-1,-1,-1,-1", {0: "OBS Virtual Camera", 10: CARD_LABEL}, True),
    ("Y,N,N,N,N,N,N,N", None, {10: CARD_LABEL}, False),
    ("1", None, {10: CARD_LABEL}, False),
])
def test_exclusive_caps_off_is_flagged(tmp_path, caps, video_nr, devices, bad):
    fake_sysfs(tmp_path / "sys", devices, caps, video_nr)
    c = driver(tmp_path)
    if bad:
        assert c["status"] == "problem", c
        assert "/dev/video10 has exclusive_caps=0" in c["summary"] and "Chrome and Zoom" in c["summary"]
        assert ("sudo modprobe -r v4l2loopback && sudo modprobe v4l2loopback exclusive_caps=1 video_nr=10 "
                f'card_label="{CARD_LABEL}"') in c["fix"]
        assert "`sudo installer/linux/install.sh`" in c["fix"]
    else:
        assert c["status"] == "ok", c
        assert c["summary"] == f'v4l2loopback loaded: /dev/video10 "{CARD_LABEL}" (exclusive_caps=1)'


# -- 2. a device number apps do not look at -------------------------------------------

@pytest.mark.parametrize("nr, bad", [(70, True), (64, True), (63, False), (10, False)])
def test_device_number_above_63_is_flagged(tmp_path, nr, bad):
    fake_sysfs(tmp_path / "sys", {0: "Integrated Camera", nr: CARD_LABEL}, caps="Y")
    c = driver(tmp_path)
    assert c["status"] == ("problem" if bad else "ok"), c
    if bad:
        assert f"/dev/video{nr} is numbered above 63" in c["summary"] and "Zoom" in c["summary"]
        assert "video_nr=10 " in c["fix"] and "`sudo installer/linux/install.sh`" in c["fix"]
    else:
        assert f"/dev/video{nr}" in c["summary"]


def test_both_traps_at_once_share_one_fix(tmp_path):
    fake_sysfs(tmp_path / "sys", {99: CARD_LABEL}, caps="N")
    c = driver(tmp_path)
    assert c["status"] == "problem" and "exclusive_caps=0" in c["summary"] and "above 63" in c["summary"]
    assert c["fix"].count("modprobe v4l2loopback exclusive_caps=1 video_nr=10") == 1


def test_a_kept_device_number_goes_to_the_installer(tmp_path):
    fake_sysfs(tmp_path / "sys", {2: CARD_LABEL}, caps="N")
    c = driver(tmp_path)
    assert "video_nr=2 " in c["fix"] and "`sudo installer/linux/install.sh --video-nr 2`" in c["fix"]


def test_loaded_without_devices(tmp_path):
    fake_sysfs(tmp_path / "sys", {})
    c = driver(tmp_path)
    assert c["status"] == "problem" and "made no device" in c["summary"] and "devices=1" in c["fix"]


# -- 3. Secure Boot refuses the module --------------------------------------------------

@pytest.mark.parametrize("mokutil, refused", [
    ("echo SecureBoot enabled", True),
    ("echo SecureBoot disabled", False),
    ("echo 'EFI variables are not supported on this system' >&2; exit 1", False),
    (None, False),  # no mokutil on PATH
])
def test_secure_boot_refusing_the_module(tmp_path, monkeypatch, mokutil, refused):
    fake_modules(tmp_path / "modules", {KERNEL: "updates/dkms/v4l2loopback.ko.zst"})
    path_with(monkeypatch, tmp_path, **({"mokutil": mokutil} if mokutil else {}))
    c = driver(tmp_path)
    assert c["status"] == "problem"
    if refused:
        assert "Secure Boot is on" in c["summary"] and "refuses" in c["summary"]
        assert "sudo mokutil --import /var/lib/dkms/mok.pub" in c["fix"] and "reboot" in c["fix"]
        assert c["details"]["secure_boot"] is True
    else:
        assert "Secure Boot" not in c["summary"] and "mokutil" not in c["fix"]
        assert "installed" in c["summary"] and "updates/dkms/v4l2loopback.ko.zst" in c["summary"]
        assert "but not loaded" in c["summary"] and "sudo modprobe v4l2loopback" in c["fix"]


def test_a_hanging_mokutil_does_not_hang_doctor(tmp_path, monkeypatch):
    fake_modules(tmp_path / "modules", {KERNEL: "extra/v4l2loopback.ko.xz"})
    # sleep runs as the script's child and holds its stdout: killing the script alone
    # would leave doctor waiting for the pipe to close.
    path_with(monkeypatch, tmp_path, mokutil=f"{shutil.which('sleep')} 30; echo SecureBoot enabled")
    monkeypatch.setattr(doctor_traps, "COMMAND_TIMEOUT", 0.5)
    t0 = time.monotonic()
    c = driver(tmp_path)
    assert time.monotonic() - t0 < 5
    assert c["status"] == "problem" and "but not loaded" in c["summary"] and c["details"]["secure_boot"] is None


# -- 4. a kernel update left the module behind ------------------------------------------

def test_module_missing_for_the_running_kernel(tmp_path, monkeypatch):
    path_with(monkeypatch, tmp_path)
    fake_modules(tmp_path / "modules", {"6.1.0-17-amd64": "updates/dkms/v4l2loopback.ko", KERNEL: None})
    c = driver(tmp_path)
    assert c["status"] == "problem"
    assert f"built for kernel 6.1.0-17-amd64 but not for the running kernel {KERNEL}" in c["summary"]
    assert f"sudo apt install linux-headers-{KERNEL} && sudo dkms autoinstall" in c["fix"]
    assert "reboot into 6.1.0-17-amd64" in c["fix"]
    assert c["details"]["other_kernels"] == ["6.1.0-17-amd64"]


def test_module_there_for_the_running_kernel_is_no_kernel_update(tmp_path, monkeypatch):
    path_with(monkeypatch, tmp_path)
    fake_modules(tmp_path / "modules", {"6.1.0-17-amd64": "updates/dkms/v4l2loopback.ko",
                                        KERNEL: "updates/dkms/v4l2loopback.ko"})
    c = driver(tmp_path)
    assert "kernel update" not in c["summary"] and "linux-headers" not in c["fix"]
    assert "but not loaded" in c["summary"]


def test_module_nowhere_is_not_installed(tmp_path, monkeypatch):
    path_with(monkeypatch, tmp_path)
    fake_modules(tmp_path / "modules", {"6.1.0-17-amd64": None, KERNEL: None})
    c = driver(tmp_path)
    assert c["status"] == "problem" and f"not installed for kernel {KERNEL}" in c["summary"]
    assert "sudo installer/linux/install.sh" in c["fix"] and "v4l2loopback-dkms" in c["fix"]


def test_no_driver_traps_off_linux(tmp_path):
    c = doctor_traps.check_virtual_camera_driver("Windows")
    assert c["status"] == "ok" and "Windows" in c["summary"]


# -- 5. an odd output size ---------------------------------------------------------------

def write_config(text: str):
    path = paths.config_file()  # in the F2F_CAM_CONFIG_DIR of the autouse fixture
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("size, fit, words", [("1281x720", "1280x720", "width must be even"),
                                              ("1280x721", "1280x720", "height must be even"),
                                              ("641x481", "640x480", "width and height must be even")])
def test_odd_output_size_in_an_old_config_file(size, fit, words):
    path = write_config(f'[daemon]\nsize = "{size}"\n')
    c = doctor_traps.check_config_file()
    assert c["status"] == "problem" and words in c["summary"] and str(path) in c["summary"]
    assert c["fix"] == f'set size = "{fit}" under [daemon] in {path} (or run `f2f-cam run --size {fit}`)'


def test_even_size_and_no_config_file_are_fine():
    c = doctor_traps.check_config_file()
    assert c["status"] == "ok" and "the defaults" in c["summary"] and "output 1280x720" in c["summary"]
    path = write_config('[daemon]\nsize = "640x480"\nfps = 25\n')
    c = doctor_traps.check_config_file()
    assert c["status"] == "ok" and c["summary"] == f"{path}; output 640x480 at 25 fps"


def test_another_bad_setting_gets_its_own_fix():
    path = write_config('[daemon]\nsize = "1280x720"\nfps = 0\n')
    c = doctor_traps.check_config_file()
    assert c["status"] == "problem" and "fps = 0" in c["summary"]
    assert c["fix"] == f"fix that line in {path}, or delete the file"
    write_config('[daemon]\nsize = "big"\n')
    assert doctor_traps.check_config_file()["fix"] == f"fix that line in {path}, or delete the file"
    write_config("[daemon\n")
    c = doctor_traps.check_config_file()
    assert "not valid TOML" in c["summary"] and c["fix"] == f"fix or delete {path}"


# -- 6. the webcam held by another process ---------------------------------------------

@pytest.fixture
def held_file(tmp_path):
    """(path, process): a stand-in for /dev/video0, held open by another process."""
    device = tmp_path / "video0"
    device.write_bytes(b"not a camera")
    proc = subprocess.Popen([sys.executable, "-c", f"import time; f = open({str(device)!r}); print('ready', "
                             "flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield device, proc
    proc.kill()
    proc.wait()


def test_busy_camera_names_the_process(held_file):
    device, proc = held_file
    comm = open(f"/proc/{proc.pid}/comm").read().strip()
    c = doctor.check_cameras(candidates=[str(device)])
    assert c["status"] == "note", c
    assert f"busy: held by {comm} (pid {proc.pid})" in c["summary"]
    assert c["fix"] == f"close {comm} (pid {proc.pid}) or pick another camera with --camera"
    assert c["details"]["cameras"][0]["held_by"] == [{"pid": proc.pid, "name": comm}]


@pytest.mark.parametrize("tools", [True, False])
def test_holders_from_proc_alone_or_with_fuser(held_file, tmp_path, monkeypatch, tools):
    device, proc = held_file
    if not tools:  # no fuser, no lsof: /proc/*/fd alone finds it
        path_with(monkeypatch, tmp_path)
    comm = open(f"/proc/{proc.pid}/comm").read().strip()
    assert doctor_traps.device_holders([str(device)]) == {str(device): [(proc.pid, comm)]}


@pytest.mark.parametrize("tools", [True, False])
def test_a_camera_nobody_holds_is_not_called_busy(tmp_path, monkeypatch, tools):
    device = tmp_path / "video0"
    device.write_bytes(b"not a camera")
    if not tools:
        path_with(monkeypatch, tmp_path)
    with open(device):  # this process holds it: doctor itself (a probe thread) never counts
        c = doctor.check_cameras(candidates=[str(device)])
        assert doctor_traps.device_holders([str(device)]) == {str(device): []}
    assert c["status"] == "note" and "busy" not in c["summary"] and "cannot be opened" in c["summary"]
    assert "close" not in c["fix"] and "--camera VIDEO_FILE" in c["fix"]


# -- 7. macOS: OBS older than 30 -----------------------------------------------------------

def write_plist(tmp_path, version: str):
    path = tmp_path / "OBS.app" / "Contents" / "Info.plist"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        plistlib.dump({"CFBundleName": "OBS Studio", "CFBundleShortVersionString": version}, f)
    return path


@pytest.mark.parametrize("version, old", [("29.1.3", True), ("27.2", True), ("30.0.2", False), ("31.1", False)])
def test_obs_older_than_30_on_macos(tmp_path, version, old):
    c = doctor_traps.check_virtual_camera_driver("Darwin", plist=write_plist(tmp_path, version))
    assert c["details"]["obs_version"] == version
    if old:
        assert c["status"] == "problem" and f"OBS Studio {version}" in c["summary"] and "30" in c["summary"]
        assert "update OBS Studio to 30+" in c["fix"]
    else:
        assert c["status"] == "ok" and c["summary"] == f"OBS Studio {version}"


def test_obs_missing_on_macos(tmp_path):
    c = doctor_traps.check_virtual_camera_driver("Darwin", plist=tmp_path / "nowhere" / "Info.plist")
    assert c["status"] == "problem" and "not installed" in c["summary"] and "installer/macos" in c["fix"]


# -- 8. a video app started before f2f-cam ---------------------------------------------------

def fake_proc(root, comms: dict[int, str]):
    for pid, comm in comms.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "comm").write_text(comm + "\n")
    (root / "self").mkdir()  # not a pid: skipped
    return root


def test_video_app_running_before_f2f_cam(tmp_path):
    proc = fake_proc(tmp_path / "proc", {1: "systemd", 4242: "zoom", 4300: "bash"})
    c = doctor_traps.check_video_apps(proc, "Linux")
    assert c["status"] == "note" and "Zoom running while f2f-cam is not" in c["summary"]
    assert c["fix"] == f"restart Zoom after `f2f-cam run` so that it lists {CARD_LABEL}"
    assert c["details"]["apps"] == [{"pid": 4242, "app": "Zoom"}]


def test_no_video_app_running(tmp_path):
    proc = fake_proc(tmp_path / "proc", {1: "systemd", 4300: "bash", 4301: "zoomer"})
    c = doctor_traps.check_video_apps(proc, "Linux")
    assert c["status"] == "ok" and "start f2f-cam before the video app" in c["summary"]


def test_video_apps_from_ps_on_macos(tmp_path, monkeypatch):
    path_with(monkeypatch, tmp_path, ps="echo '  1 /sbin/launchd'; echo ' 812 /Applications/Google Chrome.app/"
              "Contents/MacOS/Google Chrome'; echo ' 900 /Applications/zoom.us.app/Contents/MacOS/zoom.us'")
    c = doctor_traps.check_video_apps(tmp_path / "no-proc", "Darwin")
    assert c["status"] == "note" and "Chrome, Zoom running" in c["summary"]
    assert "restart Chrome, Zoom after `f2f-cam run`" in c["fix"]


# -- 9. the daemon check names the log ------------------------------------------------------

def test_daemon_check_names_the_log():
    c = doctor.check_daemon()
    log = paths.daemon_log()
    assert c["status"] == "ok" and c["details"]["log"] == str(log)
    assert c["summary"] == f"not running (start it with `f2f-cam run`); log: {log} (not written yet)"
    log.parent.mkdir(parents=True)
    log.write_text("")
    assert doctor.check_daemon()["summary"].endswith(f"log: {log}")
