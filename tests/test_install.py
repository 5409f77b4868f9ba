"""The package installs as a wheel (not only editable) and still finds models/."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from f2f_cam import landmarks, paths

ROOT = Path(__file__).resolve().parents[1]


def test_bundled_model_found_where_f2f_cam_is_imported_from():
    model = paths.bundled_models_dir() / landmarks.MODEL_FILE
    assert model.is_file() and model.stat().st_size == landmarks.MODEL_SIZE
    assert landmarks.sha256_file(model) == landmarks.MODEL_SHA256
    assert (paths.bundled_models_dir() / "NOTICE").read_text().count("Apache License") >= 1
    assert landmarks.find_model(download=False) == model


def test_wheel_carries_models_and_works_outside_the_checkout(tmp_path):
    # Built from a clean copy: a checkout's build/ folder can hold stale modules that
    # setuptools would put in the wheel and so hide a package missing from pyproject.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
                   check=True, capture_output=True)
    (wheel,) = wheels.glob("f2f_cam-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for f in ("face_landmarker.task", "NOTICE", "face_landmarker.PROVENANCE.md", "demo/drive.mp4",
              "personas/astronaut/persona.json", "personas/astronaut/generator.pt",
              "personas/astronaut/thumbnail.png", "personas/astronaut/MODEL_CARD.md"):
        assert f"f2f_cam/models/{f}" in names, f
    sources = sorted(str(p.relative_to(ROOT)) for pkg in ("f2f_cam", "trainers") for p in (ROOT / pkg).rglob("*.py")
                     if "__pycache__" not in p.parts)
    assert [s for s in sources if s not in names] == []  # every module and subpackage is shipped
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import importlib, pkgutil, f2f_cam, trainers; "
            "[importlib.import_module(m.name) for pkg in (f2f_cam, trainers) "
            " for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.') if not m.name.endswith('__main__')]; "
            "import f2f_cam.paths as p, f2f_cam.landmarks as l, f2f_cam.demo as d; "
            "from f2f_cam.persona import PersonaStore; "
            "print(f2f_cam.__file__); print(l.find_model(download=False)); print(d.driving_clip()); "
            "q = PersonaStore().get('astronaut'); q.load_generator(); print(q.path)")
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "F2F_CAM_DATA_DIR": str(tmp_path / "data")}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    assert len(out) == 4 and all(line.startswith(str(target)) for line in out), out
