"""The package installs as a wheel (not only editable) and still finds models/."""

import subprocess
import sys
import zipfile
from pathlib import Path

from f2f_cam import landmarks, paths

ROOT = Path(__file__).resolve().parents[1]


def test_bundled_model_found_where_f2f_cam_is_imported_from():
    model = paths.bundled_models_dir() / landmarks.MODEL_FILE
    assert model.is_file() and model.stat().st_size == landmarks.MODEL_SIZE
    assert landmarks._sha256(model) == landmarks.MODEL_SHA256
    assert (paths.bundled_models_dir() / "NOTICE").read_text().count("Apache License") >= 1
    assert landmarks.find_model(download=False) == model


def test_wheel_carries_models_and_works_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = wheels.glob("f2f_cam-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for f in ("face_landmarker.task", "NOTICE", "face_landmarker.PROVENANCE.md"):
        assert f"f2f_cam/models/{f}" in names
    assert "trainers/networks.py" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import f2f_cam, f2f_cam.paths as p, f2f_cam.landmarks as l; "
            "print(f2f_cam.__file__); print(l.find_model(download=False))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, check=True).stdout.split()
    assert out[0].startswith(str(target)) and out[1].startswith(str(target))
