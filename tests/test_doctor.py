"""`f2f-cam doctor` on a machine with no webcam and no virtual camera driver (this one)."""

import json

import pytest

from f2f_cam import doctor, paths
from f2f_cam.cli import main
from f2f_cam.errors import UserError

from conftest import run_cli


def by_name(report) -> dict:
    return {c["name"]: c for c in report["checks"]}


def test_doctor_reports_and_gives_fixes(installed_persona):
    proc = run_cli("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    checks = by_name(report)
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == [
        "landmark model", "personas", "config file", "virtual camera", "virtual camera driver", "cameras",
        "video apps", "torch", "compiled generator", "display and tray", "daemon"]
    # The tests turn compiling off (F2F_CAM_COMPILE=0): doctor says so, with the way back.
    assert checks["compiled generator"]["status"] == "note" and "F2F_CAM_COMPILE" in checks["compiled generator"]["fix"]
    assert checks["landmark model"]["status"] == "ok" and checks["landmark model"]["essential"]
    assert checks["personas"]["status"] == "ok" and checks["personas"]["details"]["loadable"] == ["tiny"]
    t = checks["torch"]["details"]
    assert {"version", "threads", "cpu_capability", "bf16", "cuda"} <= set(t) and t["threads"] >= 1
    for c in report["checks"]:
        assert c["status"] in ("ok", "note", "problem")
        if c["status"] != "ok":
            assert c["fix"], f"{c['name']}: a problem without its fix"
        assert c["seconds"] < 20
    vc = checks["virtual camera"]
    if vc["status"] == "problem":  # no v4l2loopback here
        assert "no backend works" in vc["summary"] and "modprobe v4l2loopback" in vc["fix"]
        assert {b["backend"] for b in vc["details"]["backends"]} == {"v4l2loopback", "obs", "unitycapture"}
    cams = checks["cameras"]
    if cams["status"] == "note":  # no webcam here
        assert "--camera VIDEO_FILE" in cams["fix"]

    text = run_cli("doctor")
    assert text.returncode == 0
    assert "essentials work: yes" in text.stdout and "landmark model" in text.stdout
    assert ("fix: " in text.stdout) == any(c["status"] != "ok" for c in report["checks"])


def test_no_persona_is_a_clear_note_not_a_failure():
    report = doctor.run_checks()
    p = by_name(report)["personas"]
    assert p["status"] == "note" and "none installed" in p["summary"] and "f2f-cam train" in p["fix"]
    assert report["ok"] is True


def test_missing_model_fails_the_essentials(monkeypatch, capsys):
    def missing(download=True):
        raise UserError("face landmark model missing: /x/face_landmarker.task; reinstall f2f-cam")

    monkeypatch.setattr("f2f_cam.landmarks.find_model", missing)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "problem  landmark model" in out and "essentials work: NO" in out


def test_a_broken_check_does_not_break_the_report(monkeypatch):
    def boom():
        raise RuntimeError("surprise")

    monkeypatch.setattr(doctor, "check_cameras", boom)
    report = doctor.run_checks()
    broken = [c for c in report["checks"] if "surprise" in c["summary"]]
    assert len(broken) == 1 and broken[0]["status"] == "problem" and broken[0]["fix"]


def test_broken_persona_is_named_with_its_fix(installed_persona):
    (installed_persona.path / "generator.pt").write_bytes(b"not torchscript")
    p = doctor.check_personas()
    assert p["status"] == "problem" and p["details"]["broken"][0]["name"] == "tiny"
    assert "personas import" in p["fix"]


@pytest.mark.parametrize("platform_name", ["Linux", "Windows", "Darwin"])
def test_camera_candidates(monkeypatch, platform_name):
    monkeypatch.setattr("platform.system", lambda: platform_name)
    cands = doctor.camera_candidates()
    if platform_name == "Linux":
        assert all(str(c).startswith("/dev/video") for c in cands)
    else:
        assert cands == [0, 1, 2, 3, 4]


def test_doctor_beside_a_running_daemon(installed_persona, talking_head, tmp_path):
    """doctor's daemon check asks the running daemon for its status over the control
    socket and reports it (a crash here was reported in issue 12)."""
    import os
    import subprocess
    import sys
    import time

    exe = os.path.join(os.path.dirname(sys.executable), "f2f-cam")
    proc = subprocess.Popen([exe, "run", "--camera", str(talking_head[0]), "--output", str(tmp_path / "o.mp4"),
                             "--layout", "camera", "--size", "320x180", "--no-tray", "--seconds", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while run_cli("ctl", "status").returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
            time.sleep(0.2)
        out = run_cli("doctor", "--json")
        assert out.returncode == 0, out.stderr
        daemon = {c["name"]: c for c in json.loads(out.stdout)["checks"]}["daemon"]
        assert daemon["status"] == "ok" and daemon["details"]["running"] is True, daemon
        assert f"pid {proc.pid}" in daemon["summary"] and "layout camera" in daemon["summary"]
        assert daemon["details"]["daemon_status"]["persona"] == installed_persona.name
        # Its log, named by the check, is the file the daemon writes.
        log = paths.daemon_log()
        assert daemon["details"]["log"] == str(log) and daemon["summary"].endswith(f"; log: {log}")
        assert log.is_file() and log.stat().st_size > 0
        video_apps = {c["name"]: c for c in json.loads(out.stdout)["checks"]}["video apps"]
        assert video_apps["status"] == "ok" and "f2f-cam runs" in video_apps["summary"]
        text = run_cli("doctor")
        assert "Traceback" not in text.stderr and f"running (pid {proc.pid})" in text.stdout
    finally:
        run_cli("ctl", "quit")
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0
