"""The per-OS installers (installer/). The Linux and macOS scripts run for real against
temporary folders (--root, --user-home), with every system tool that changes something
(apt-get, modprobe, systemctl, sudo, launchctl, ...) replaced by a fake on PATH that
only records its call; the PowerShell script is checked as text, and run with -DryRun
only if pwsh is installed."""

from __future__ import annotations

import hashlib
import os
import plistlib
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from tests_helpers import skip_unless

ROOT = Path(__file__).resolve().parents[1]
LINUX = ROOT / "installer" / "linux" / "install.sh"
MACOS = ROOT / "installer" / "macos" / "install.sh"
WINDOWS = ROOT / "installer" / "windows" / "install.ps1"

F2F = "/usr/local/bin/f2f-cam"
OPTIONS_LINE = 'options v4l2loopback devices=1 video_nr=10 card_label="Face2Face Cam" exclusive_caps=1'
FAKE_TOOLS = (
    "apt-get", "dnf", "pacman", "modprobe", "systemctl", "sudo", "runuser", "launchctl",
    # read-only queries: answer "not installed", "available"
    "apt-cache", "dpkg-query", "rpm", "mokutil",
)
CHANGING_TOOLS = ("apt-get", "dnf", "pacman", "modprobe", "systemctl", "sudo", "runuser", "launchctl")


@pytest.fixture
def fake(tmp_path):
    """A bin folder of fakes that append "tool args" to calls.log; PATH = fakes + system."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    log.touch()
    for tool in FAKE_TOOLS:
        script = bindir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexit 0\n')
        script.chmod(0o755)
    home = tmp_path / "realhome"
    home.mkdir()
    env = {
        "PATH": f"{bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),  # nothing may default to the real user's home
        "LANG": "C.UTF-8",
    }

    class Fake:
        pass

    f = Fake()
    f.bin, f.log, f.env, f.home = bindir, log, env, home
    f.calls = lambda: [line for line in log.read_text().splitlines() if line]
    f.changing_calls = lambda: [c for c in f.calls() if c.split()[0] in CHANGING_TOOLS]
    return f


def run(script: Path, *args: str, env: dict, user: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = (user or []) + ["bash", str(script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def snapshot(top: Path) -> dict[str, tuple]:
    """Every file and folder under top: path -> (kind, mtime_ns, sha256)."""
    out = {}
    for p in sorted(top.rglob("*")):
        st = p.lstat()
        if p.is_dir():
            out[str(p.relative_to(top))] = ("dir", None, None)
        else:
            out[str(p.relative_to(top))] = ("file", st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def files_of(snap: dict) -> dict:
    return {k: v[2] for k, v in snap.items() if v[0] == "file"}


def content_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


@pytest.fixture
def box(tmp_path):
    """--root and --user-home folders: (root, home, paths of the four files)."""
    root = tmp_path / "root"
    root.mkdir()
    home = tmp_path / "home"
    paths = {
        "modules": root / "etc/modules-load.d/f2f-cam.conf",
        "modprobe": root / "etc/modprobe.d/f2f-cam.conf",
        "unit": home / ".config/systemd/user/f2f-cam.service",
        "desktop": home / ".config/autostart/f2f-cam.desktop",
    }
    return root, home, paths


def linux(fake, box, *extra: str) -> subprocess.CompletedProcess:
    root, home, _ = box
    return run(LINUX, "--root", str(root), "--user-home", str(home), *extra, env=fake.env)


# -- Linux -------------------------------------------------------------------------------

def test_linux_dry_run_prints_every_action_and_writes_nothing(fake, box, tmp_path):
    root, home, paths = box
    before = snapshot(tmp_path)
    r = linux(fake, box, "--dry-run", "--f2f-cam", F2F)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "would run: apt-get update" in out
    assert "would run: apt-get install -y v4l2loopback-dkms v4l2loopback-utils v4l-utils" in out
    assert f"would write {paths['modules']}: v4l2loopback\n" in out
    assert f"would write {paths['modprobe']}: {OPTIONS_LINE}\n" in out
    assert "skip: modprobe v4l2loopback (--root is not /" in out
    unit_line = next(line for line in out.splitlines() if line.startswith(f"would write {paths['unit']}: "))
    assert f"ExecStart={F2F} run --no-tray" in unit_line and "Restart=on-failure" in unit_line
    assert "After=graphical-session.target" in unit_line
    assert "skip: systemctl --user enable f2f-cam.service" in out
    assert f"would write {paths['desktop']}: [Desktop Entry]" in out and f"Exec={F2F} run |" in out
    assert out.splitlines()[-1] == "dry run: nothing was changed"
    # nothing written, nothing that changes the system called (only the package queries)
    snapshot_after = snapshot(tmp_path)
    snapshot_after.pop("calls.log"), before.pop("calls.log")
    assert snapshot_after == before
    assert fake.changing_calls() == []
    assert any(c.startswith("dpkg-query") for c in fake.calls())


def test_linux_dry_run_on_the_running_system_would_load_the_module(fake, tmp_path):
    """--root / in a dry run: it says it would modprobe, and touches nothing in /etc."""
    target = Path("/etc/modprobe.d/f2f-cam.conf")
    existed = target.exists()
    r = run(LINUX, "--dry-run", "--no-packages", "--user-home", str(tmp_path / "h"), "--f2f-cam", F2F, env=fake.env)
    assert r.returncode == 0, r.stderr
    if Path("/sys/module/v4l2loopback").is_dir():  # a machine with the module loaded
        assert "v4l2loopback" in r.stdout + r.stderr
    else:
        assert "would run: modprobe v4l2loopback" in r.stdout
    assert target.exists() == existed
    assert fake.changing_calls() == []
    assert not (tmp_path / "h").exists()


def test_linux_install_writes_exact_files_and_runs_no_system_tool(fake, box):
    root, home, paths = box
    r = linux(fake, box, "--no-packages", "--f2f-cam", F2F)
    assert r.returncode == 0, r.stdout + r.stderr
    assert content_lines(paths["modules"]) == ["v4l2loopback"]
    assert content_lines(paths["modprobe"]) == [OPTIONS_LINE]
    assert content_lines(paths["unit"]) == [
        "[Unit]",
        'Description=f2f-cam: your persona as the "Face2Face Cam" virtual camera',
        "After=graphical-session.target",
        "StartLimitIntervalSec=120",
        "StartLimitBurst=5",
        "[Service]",
        "Type=simple",
        f"ExecStart={F2F} run --no-tray",
        "Restart=on-failure",
        "RestartSec=5",
        "RestartPreventExitStatus=3",
        "[Install]",
        "WantedBy=default.target",
    ]
    desktop = content_lines(paths["desktop"])
    assert desktop[0] == "[Desktop Entry]"
    assert "Type=Application" in desktop and f"Exec={F2F} run" in desktop and "Name=Face2Face Cam" in desktop
    for p in paths.values():
        st = p.stat()
        assert stat.S_IMODE(st.st_mode) == 0o644, p
        assert st.st_uid == os.getuid(), p
        assert "Written by the f2f-cam installer" in p.read_text()
    # exactly these four files, no temporary file left behind
    written = {p for p in (root.rglob("*")) if p.is_file()} | {p for p in home.rglob("*") if p.is_file()}
    assert written == set(paths.values())
    # --root is not /: no modprobe, no systemctl, no package manager, no sudo
    assert fake.changing_calls() == []
    assert "skip: packages (--no-packages)" in r.stdout
    assert r.stdout.splitlines()[-1].startswith('done: "Face2Face Cam" is /dev/video10')


def test_linux_second_run_changes_nothing(fake, box):
    root, home, paths = box
    assert linux(fake, box, "--no-packages", "--f2f-cam", F2F).returncode == 0
    before = {**snapshot(root), **{"home/" + k: v for k, v in snapshot(home).items()}}
    r = linux(fake, box, "--no-packages", "--f2f-cam", F2F)
    assert r.returncode == 0, r.stderr
    after = {**snapshot(root), **{"home/" + k: v for k, v in snapshot(home).items()}}
    assert after == before  # same files, same mtimes
    for p in paths.values():
        assert f"already configured: {p}" in r.stdout
    assert "wrote " not in r.stdout and "updated " not in r.stdout
    # and a dry run on the configured system has nothing to do
    d = linux(fake, box, "--dry-run", "--no-packages", "--f2f-cam", F2F)
    assert d.returncode == 0 and "would " not in d.stdout, d.stdout


def test_linux_uninstall_removes_exactly_what_it_wrote(fake, box):
    root, home, paths = box
    # files that belong to someone else and must survive
    other = root / "etc/modprobe.d/other.conf"
    other.parent.mkdir(parents=True)
    other.write_text("options snd_hda_intel power_save=1\n")
    (home / ".config/autostart").mkdir(parents=True)
    (home / ".config/autostart/other.desktop").write_text("[Desktop Entry]\n")
    before = files_of(snapshot(root)), files_of(snapshot(home))
    assert linux(fake, box, "--no-packages", "--f2f-cam", F2F).returncode == 0
    assert all(p.exists() for p in paths.values())
    r = linux(fake, box, "--uninstall")
    assert r.returncode == 0, r.stderr
    for p in paths.values():
        assert f"removed {p}" in r.stdout
    assert (files_of(snapshot(root)), files_of(snapshot(home))) == before
    assert "packages stay installed; remove them with: sudo apt-get remove v4l2loopback-dkms" in r.stdout
    assert fake.changing_calls() == []
    again = linux(fake, box, "--uninstall")
    assert again.returncode == 0
    for p in paths.values():
        assert f"already removed: {p}" in again.stdout


def test_linux_uninstall_leaves_a_file_it_did_not_write(fake, box):
    root, home, paths = box
    paths["modprobe"].parent.mkdir(parents=True)
    paths["modprobe"].write_text("options v4l2loopback video_nr=3\n")
    r = linux(fake, box, "--uninstall")
    assert r.returncode == 0
    assert paths["modprobe"].read_text() == "options v4l2loopback video_nr=3\n"
    assert f"warning: left {paths['modprobe']} in place" in r.stderr


def test_linux_exclusive_caps_and_video_nr(fake, box):
    root, home, paths = box
    r = linux(fake, box, "--no-packages", "--no-autostart", "--exclusive-caps", "0", "--video-nr", "7")
    assert r.returncode == 0, r.stderr
    assert content_lines(paths["modprobe"]) == [
        'options v4l2loopback devices=1 video_nr=7 card_label="Face2Face Cam" exclusive_caps=0'
    ]
    assert not paths["unit"].exists() and not paths["desktop"].exists()
    assert "skip: autostart (--no-autostart)" in r.stdout
    r = linux(fake, box, "--no-packages", "--no-autostart", "--exclusive-caps=1")
    assert f"updated {paths['modprobe']}" in r.stdout
    assert content_lines(paths["modprobe"]) == [OPTIONS_LINE]


def test_linux_warns_about_other_v4l2loopback_options(fake, box):
    root, home, paths = box
    other = root / "etc/modprobe.d/v4l2loopback.conf"
    other.parent.mkdir(parents=True)
    other.write_text("options v4l2loopback exclusive_caps=0 card_label=OBS\n")
    r = linux(fake, box, "--no-packages", "--no-autostart")
    assert r.returncode == 0, r.stderr
    assert f"warning: {other} also sets v4l2loopback options" in r.stderr
    assert other.read_text() == "options v4l2loopback exclusive_caps=0 card_label=OBS\n"


@pytest.mark.parametrize(
    "args",
    [["--bogus"], ["--video-nr"], ["--video-nr", "abc"], ["--video-nr", "300"], ["--exclusive-caps", "2"], ["extra"]],
)
def test_linux_bad_option_fails_with_one_line(fake, box, tmp_path, args):
    before = snapshot(box[0])
    r = linux(fake, box, *args)
    assert r.returncode != 0
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stdout == ""
    assert snapshot(box[0]) == before and not box[1].exists()


def test_linux_help_lists_every_option(fake):
    r = run(LINUX, "--help", env=fake.env)
    assert r.returncode == 0
    for opt in ("--dry-run", "--uninstall", "--root", "--user-home", "--no-packages", "--no-autostart",
                "--no-tray", "--package-manager", "--video-nr", "--exclusive-caps", "--f2f-cam", "--help"):
        assert opt in r.stdout, opt


def test_linux_f2f_cam_from_path_and_quoting(fake, box):
    root, home, paths = box
    # not on PATH and not given: one-line error that says what to pass
    r = linux(fake, box, "--no-packages")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "--f2f-cam" in r.stderr
    assert not paths["modprobe"].exists()
    # on PATH: that one
    exe = fake.bin / "f2f-cam"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    r = linux(fake, box, "--no-packages")
    assert r.returncode == 0, r.stderr
    assert f"ExecStart={exe} run --no-tray" in content_lines(paths["unit"])
    # a path with a space is quoted in both files
    r = linux(fake, box, "--no-packages", "--f2f-cam", "/opt/my apps/f2f-cam")
    assert r.returncode == 0
    assert 'ExecStart="/opt/my apps/f2f-cam" run --no-tray' in content_lines(paths["unit"])
    assert 'Exec="/opt/my apps/f2f-cam" run' in content_lines(paths["desktop"])


TRAY_PACKAGES = {
    "apt-get": "pkg-config gcc python3-dev libcairo2-dev gir1.2-gtk-3.0 libgirepository-2.0-dev "
               "gir1.2-ayatanaappindicator3-0.1",
    "dnf": "pkgconf-pkg-config gcc python3-devel cairo-devel cairo-gobject-devel gobject-introspection-devel gtk3 "
           "libayatana-appindicator-gtk3",
    "pacman": "pkgconf gcc cairo gobject-introspection gtk3 libayatana-appindicator",
}


@pytest.mark.parametrize("pm", ["apt-get", "dnf", "pacman"])
def test_linux_dry_run_lists_the_tray_packages(fake, box, pm):
    """What tray menus need, per package manager (apt: girepository 2.0 where the
    archive has it, the fake apt-cache says it does); --no-tray leaves them out."""
    (fake.bin / "rpm").write_text("#!/bin/sh\nexit 1\n")  # nothing installed
    (fake.bin / "pacman").write_text(f'#!/bin/sh\n[ "$1" = -Q ] && exit 1\necho "pacman $*" >> "{fake.log}"\n')
    r = linux(fake, box, "--dry-run", "--f2f-cam", F2F, "--package-manager", pm)
    assert r.returncode == 0, r.stderr
    install = next(line for line in r.stdout.splitlines() if line.startswith(f"would run: {pm} ") and "update" not in line)
    assert install.endswith(TRAY_PACKAGES[pm]), install
    r = linux(fake, box, "--dry-run", "--f2f-cam", F2F, "--package-manager", pm, "--no-tray")
    install = next(line for line in r.stdout.splitlines() if line.startswith(f"would run: {pm} ") and "update" not in line)
    assert "gtk3" not in install and "gir1.2-gtk-3.0" not in install, install
    assert "skip: tray menus (--no-tray)" in r.stdout


def test_linux_apt_on_debian_12_takes_girepository_1(fake, box):
    (fake.bin / "apt-cache").write_text('#!/bin/sh\ncase "$*" in *girepository-2.0*) exit 100;; esac\nexit 0\n')
    r = linux(fake, box, "--dry-run", "--f2f-cam", F2F, "--package-manager", "apt-get")
    assert "libgirepository1.0-dev" in r.stdout and "libgirepository-2.0-dev" not in r.stdout


def _venv_f2f_cam(fake, tmp_path, has_gi: bool, venv: bool = True) -> Path:
    """An f2f-cam console script whose #! names a fake venv Python that logs its calls."""
    py = tmp_path / "venv" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text(f'''#!/bin/sh
case "$*" in
    *"import gi"*) exit {0 if has_gi else 1} ;;
    *sys.prefix*) exit {0 if venv else 1} ;;
esac
echo "venv-python $*" >> "{fake.log}"
''')
    py.chmod(0o755)
    exe = py.parent / "f2f-cam"
    exe.write_text(f"#!{py}\nimport f2f_cam\n")
    exe.chmod(0o755)
    return exe


@pytest.mark.parametrize("gir2, requirement", [(False, "PyGObject<3.51"), (True, "PyGObject")])
def test_linux_installs_pygobject_into_f2f_cams_python(fake, box, tmp_path, gir2, requirement):
    (fake.bin / "pkg-config").write_text(f"#!/bin/sh\nexit {0 if gir2 else 1}\n")
    (fake.bin / "pkg-config").chmod(0o755)
    exe = _venv_f2f_cam(fake, tmp_path, has_gi=False)
    r = linux(fake, box, "--no-packages", "--f2f-cam", str(exe), "--dry-run")
    quoted = requirement.replace("<", "\\<")  # copy-pasteable, as printf %q writes it
    assert f"would run: {exe.parent / 'python'} -m pip install {quoted}" in r.stdout, r.stdout
    r = linux(fake, box, "--no-packages", "--f2f-cam", str(exe))
    assert r.returncode == 0, r.stderr
    assert f"venv-python -m pip install {requirement}" in fake.calls()


def test_linux_pygobject_already_there_or_system_python(fake, box, tmp_path):
    exe = _venv_f2f_cam(fake, tmp_path, has_gi=True)
    r = linux(fake, box, "--no-packages", "--f2f-cam", str(exe))
    assert "already configured: PyGObject with GTK 3" in r.stdout
    assert not any(c.startswith("venv-python") for c in fake.calls())
    system = _venv_f2f_cam(fake, tmp_path / "sys", has_gi=False, venv=False)
    r = linux(fake, box, "--no-packages", "--f2f-cam", str(system))
    assert r.returncode == 0 and "python3-gi" in r.stderr
    assert not any(c.startswith("venv-python") for c in fake.calls())


def test_linux_asks_sudo_for_the_system_part_when_not_root(fake):
    """As an ordinary user, with --root /: the system part goes through sudo (a fake here),
    with the options it needs; the user files are written by the user."""
    user: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root and setpriv (util-linux) is missing: cannot test as a non-root user")
        user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # pytest's tmp_path is private to its owner: the other user gets its own open folder
    base = Path(tempfile.mkdtemp(prefix="f2f-installer-"))
    try:
        base.chmod(0o755)
        shutil.copytree(fake.bin, base / "bin")
        log = base / "calls.log"
        log.touch()
        log.chmod(0o666)
        for tool in (base / "bin").iterdir():
            tool.write_text(tool.read_text().replace(str(fake.log), str(log)))
        home = base / "userhome"
        home.mkdir()
        home.chmod(0o777)
        env = dict(fake.env, PATH=fake.env["PATH"].replace(str(fake.bin), str(base / "bin")))
        etc_conf = Path("/etc/modprobe.d/f2f-cam.conf")
        existed = etc_conf.exists()
        r = run(LINUX, "--no-packages", "--user-home", str(home), "--f2f-cam", F2F, env=env, user=user)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "the system part needs root: running it with sudo" in r.stdout
        calls = log.read_text().splitlines()
        assert f"sudo bash {LINUX} --system-only --root / --video-nr 10 --exclusive-caps 1 --no-packages" in calls
        unit = home / ".config/systemd/user/f2f-cam.service"
        assert unit.exists() and unit.stat().st_uid == (65534 if user else os.getuid())
        assert etc_conf.exists() == existed  # the fake sudo did nothing
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- macOS (run on Linux: dry run and --user-home) -------------------------------------

def test_macos_dry_run_prints_the_launch_agent_and_writes_nothing(fake, tmp_path):
    home = tmp_path / "home"
    before = snapshot(tmp_path)
    r = run(MACOS, "--dry-run", "--user-home", str(home), "--f2f-cam", F2F, env=fake.env)
    assert r.returncode == 0, r.stderr
    plist = home / "Library/LaunchAgents/org.f2f-cam.plist"
    assert f"would write {plist}: LaunchAgent org.f2f-cam, ProgramArguments {F2F} run, RunAtLoad" in r.stdout
    assert "skip: launchctl load (not macOS)" in r.stdout
    assert "brew install --cask obs" in r.stderr  # no OBS on this machine: how to get it
    after = snapshot(tmp_path)
    after.pop("calls.log"), before.pop("calls.log")
    assert after == before
    assert fake.changing_calls() == []


def test_macos_launch_agent_is_idempotent_and_uninstalls(fake, tmp_path):
    home = tmp_path / "home"
    plist = home / "Library/LaunchAgents/org.f2f-cam.plist"
    exe = "/Users/me/f2f & co/.venv/bin/f2f-cam"  # XML-escaped in the plist
    r = run(MACOS, "--user-home", str(home), "--f2f-cam", exe, env=fake.env)
    assert r.returncode == 0, r.stderr
    data = plistlib.loads(plist.read_bytes())
    assert data["Label"] == "org.f2f-cam"
    assert data["ProgramArguments"] == [exe, "run"]
    assert data["RunAtLoad"] is True
    mtime = plist.stat().st_mtime_ns
    r = run(MACOS, "--user-home", str(home), "--f2f-cam", exe, env=fake.env)
    assert f"already configured: {plist}" in r.stdout and plist.stat().st_mtime_ns == mtime
    r = run(MACOS, "--uninstall", "--user-home", str(home), env=fake.env)
    assert r.returncode == 0 and f"removed {plist}" in r.stdout
    assert not plist.exists() and list((home / "Library/LaunchAgents").iterdir()) == []
    assert fake.changing_calls() == []
    bad = run(MACOS, "--bogus", env=fake.env)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "listing, expect",
    [
        ("*\t*\tABCDE12345\tcom.obsproject.obs-studio.mac-camera-extension (30.1.2/30.1.2)\tOBS Virtual Camera\t[activated enabled]",
         ("stdout", "found: OBS virtual camera (system extension")),
        ("\t\tABCDE12345\tcom.obsproject.obs-studio.mac-camera-extension (30.1.2/30.1.2)\tOBS Virtual Camera\t[activated waiting for user]",
         ("stderr", "installed but not active")),
    ],
)
def test_macos_finds_the_obs_camera_extension(fake, tmp_path, listing, expect):
    tool = fake.bin / "systemextensionsctl"
    tool.write_text(f"#!/bin/sh\nprintf '%s\\n' '1 extension(s)' '{listing}'\n")
    tool.chmod(0o755)
    r = run(MACOS, "--dry-run", "--no-autostart", "--user-home", str(tmp_path / "h"), env=fake.env)
    assert r.returncode == 0
    stream, text = expect
    assert text in getattr(r, stream), r.stdout + r.stderr


# -- shell lint ----------------------------------------------------------------------------

def test_shell_scripts_parse():
    for script in (LINUX, MACOS):
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_shellcheck_passes():
    skip_unless(bool(shutil.which("shellcheck")), "shellcheck is not installed (apt-get install -y shellcheck)")
    r = subprocess.run(["shellcheck", str(LINUX), str(MACOS)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# -- Windows -------------------------------------------------------------------------------

def test_powershell_script_has_its_parameters_and_checks():
    text = WINDOWS.read_text()
    for needle in ("[switch]$DryRun", "[switch]$Uninstall", "[string]$F2fCam",
                   "{A3FCE0F5-3493-419F-958A-ABA1250EC20B}", "HKLM:\\SOFTWARE\\Classes\\CLSID",
                   "{5C2CD55C-92AD-4999-8666-912BD3E70010}", "winget install OBSProject.OBSStudio",
                   "GetFolderPath('Startup')", "f2f-cam", "'run'"):
        assert needle in text, needle


def test_powershell_dry_run():
    pwsh = shutil.which("pwsh") or shutil.which("powershell")
    if not pwsh:
        pytest.skip("pwsh is not installed: install.ps1 is checked as text only")
    for extra in ([], ["-Uninstall"]):
        r = subprocess.run([pwsh, "-NoProfile", "-NonInteractive", "-File", str(WINDOWS), "-DryRun", "-F2fCam", F2F, *extra],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "dry run: nothing was changed" in r.stdout
