import json
import os
import shutil
import zipfile

import numpy as np
import pytest
import torch

from f2f_cam import persona as pf
from f2f_cam import persona_archive
from f2f_cam.errors import UserError
from f2f_cam.generator import Generator, to_input
from f2f_cam.persona import PersonaStore

from conftest import TINY_SIZE, run_cli


def store_is_clean(store: PersonaStore, names=()) -> bool:
    """Only the named personas, no temp or half-written folders."""
    if not store.root.exists():
        return not names
    return sorted(p.name for p in store.root.iterdir()) == sorted(names)


def test_round_trip_export_import_load_matches_eager(tiny_persona, tmp_path):
    folder, net = tiny_persona
    archive = pf.write_archive(folder, tmp_path / "tiny.f2f")
    store = PersonaStore()
    installed = store.import_archive(archive)
    assert installed.name == "tiny" and installed.path.parent == store.root
    loaded = store.get("tiny")
    x = to_input(np.random.default_rng(0).integers(0, 255, (2, TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8))
    with torch.no_grad():
        want = net.eval()(x)
    got = Generator(loaded, precision="fp32").forward(x)
    assert got.shape == (2, 3, TINY_SIZE, TINY_SIZE)
    assert (got - want).abs().max().item() <= 1e-5
    # The runtime's default on bf16 hardware: close, not equal.
    fast = Generator(loaded).forward(x)
    assert (fast - want).abs().max().item() <= 0.05
    # uint8 path: one sketch in, one face out
    face = Generator(loaded)(np.zeros((TINY_SIZE, TINY_SIZE, 3), np.uint8))
    assert face.shape == (TINY_SIZE, TINY_SIZE, 3) and face.dtype == np.uint8


def test_persona_json_describes_itself(tiny_persona):
    meta = json.loads((tiny_persona[0] / pf.PERSONA_JSON).read_text())
    assert meta["format"] == pf.FORMAT and meta["format_version"] == 2  # no student: the lowest version that holds it
    assert meta["sketch_version"] == 1 and meta["image_size"] == TINY_SIZE
    assert np.array(meta["canonical_landmarks"]).shape == (478, 2)
    assert np.array(meta["neutral_landmarks"]).shape == (478, 2)
    assert meta["generator"]["file"] == "generator.pt" and meta["generator"]["dtype"] == "float32"
    assert set(meta["crop"]) == {"x", "y", "size", "frame_width", "frame_height"}
    assert meta["training"]["frames"] > 0
    assert (tiny_persona[0] / "thumbnail.png").stat().st_size > 0


def test_generator_file_is_torchscript_not_pickle(tiny_persona):
    with zipfile.ZipFile(tiny_persona[0] / "generator.pt") as z:
        names = z.namelist()
    assert any(n.endswith("code/__torch__.py") or "/code/" in n for n in names)  # TorchScript code


def _broken_copy(src, tmp_path, edit=None, drop=None):
    dst = tmp_path / "broken"
    shutil.copytree(src, dst)
    if edit:
        meta = json.loads((dst / pf.PERSONA_JSON).read_text())
        edit(meta)
        (dst / pf.PERSONA_JSON).write_text(json.dumps(meta))
    if drop:
        (dst / drop).unlink()
    return dst


@pytest.mark.parametrize("edit,drop,message", [
    (lambda m: m.update(sketch_version=99), None, "sketch version 99"),
    (lambda m: m.update(format_version=7), None, "upgrade f2f-cam"),
    (lambda m: m.update(format="something else"), None, "not an f2f-cam persona"),
    (lambda m: m.pop("crop"), None, "missing field"),
    (lambda m: m.update(image_size=100), None, "image_size"),
    (lambda m: m.update(canonical_landmarks=[[0, 0]] * 10), None, "478"),
    (lambda m: m["generator"].update(file="../../etc/passwd"), None, "generator file"),
    (None, "generator.pt", "generator.pt is missing"),
])
def test_invalid_personas_are_refused_and_nothing_installed(tiny_persona, tmp_path, edit, drop, message):
    broken = _broken_copy(tiny_persona[0], tmp_path, edit, drop)
    store = PersonaStore()
    with pytest.raises(UserError, match=message):
        store.install_folder(broken)
    assert store_is_clean(store)


def test_generator_with_wrong_output_shape_is_refused(tiny_persona, tmp_path):
    broken = _broken_copy(tiny_persona[0], tmp_path)
    half = torch.jit.script(torch.nn.AvgPool2d(2))  # (1,3,S,S) -> (1,3,S/2,S/2)
    torch.jit.save(half, str(broken / "generator.pt"))
    store = PersonaStore()
    with pytest.raises(UserError, match="generator maps"):
        store.install_folder(broken)
    assert store_is_clean(store)


def test_corrupt_generator_is_refused(tiny_persona, tmp_path):
    broken = _broken_copy(tiny_persona[0], tmp_path)
    data = (broken / "generator.pt").read_bytes()
    (broken / "generator.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a working TorchScript generator"):
        PersonaStore().install_folder(broken)


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


@pytest.mark.parametrize("entry", ["../evil.txt", "/abs/persona.json", "sub/persona.json", "notes.txt"])
def test_archive_with_unexpected_paths_is_refused(tiny_persona, tmp_path, entry):
    files = {n: (tiny_persona[0] / n).read_bytes() for n in ("persona.json", "generator.pt")}
    archive = _zip(tmp_path / "evil.f2f", {**files, entry: b"x"})
    store = PersonaStore()
    with pytest.raises(UserError, match="unexpected entry"):
        store.import_archive(archive)
    assert store_is_clean(store)
    assert not (tmp_path / "evil.txt").exists() and not (store.root.parent / "evil.txt").exists()


def test_oversized_and_lying_archives_are_refused(tiny_persona, tmp_path, monkeypatch):
    files = {n: (tiny_persona[0] / n).read_bytes() for n in ("persona.json", "generator.pt")}
    archive = _zip(tmp_path / "big.f2f", files)
    monkeypatch.setattr(persona_archive, "MAX_ARCHIVE_BYTES", 1000)
    store = PersonaStore()
    with pytest.raises(UserError, match="limit"):
        store.import_archive(archive)
    assert store_is_clean(store)


def test_truncated_and_non_zip_archives_are_refused(tiny_persona, tmp_path):
    good = pf.write_archive(tiny_persona[0], tmp_path / "good.f2f")
    cut = tmp_path / "cut.f2f"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "text.f2f"
    text.write_text("hello")
    store = PersonaStore()
    for bad in (cut, text):
        with pytest.raises(UserError):
            store.import_archive(bad)
    assert store_is_clean(store)


def test_import_existing_needs_force_and_replaces_atomically(tiny_persona, tmp_path):
    archive = pf.write_archive(tiny_persona[0], tmp_path / "tiny.f2f")
    store = PersonaStore()
    store.import_archive(archive)
    with pytest.raises(UserError, match="--force"):
        store.import_archive(archive)
    store.import_archive(archive, force=True)
    assert store_is_clean(store, ["tiny"])


def test_bundled_personas_listed_beside_users_and_not_removable(tiny_persona, tmp_path):
    bundled = tmp_path / "bundled"
    shutil.copytree(tiny_persona[0], bundled / "demo")
    meta = json.loads((bundled / "demo" / pf.PERSONA_JSON).read_text())
    meta["name"] = "demo"
    (bundled / "demo" / pf.PERSONA_JSON).write_text(json.dumps(meta))
    store = PersonaStore(bundled_root=bundled)
    assert store.default().name == "demo"  # nothing of the user's yet
    store.install_folder(tiny_persona[0])
    assert store.names() == ["demo", "tiny"]
    assert store.default().name == "tiny"  # the user's own comes first
    assert store.get("demo").bundled and not store.get("tiny").bundled
    with pytest.raises(UserError, match="bundled"):
        store.remove("demo")
    store.remove("tiny")
    assert store.names() == ["demo"]
    with pytest.raises(UserError, match="unknown persona 'nope'; choose one of: demo"):
        store.get("nope")


def test_personas_cli(installed_persona, tmp_path):
    out = run_cli("personas", "list", "--json", check=True)
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows] == ["tiny"] and rows[0]["ok"] and rows[0]["source"] == "user"
    assert "tiny" in run_cli("personas", "list", check=True).stdout
    shown = json.loads(run_cli("personas", "show", "tiny", "--json", check=True).stdout)
    assert shown["name"] == "tiny" and shown["image_size"] == TINY_SIZE
    archive = tmp_path / "shared.f2f"
    run_cli("personas", "export", "tiny", "-o", archive, check=True)
    assert zipfile.is_zipfile(archive)
    assert set(zipfile.ZipFile(archive).namelist()) == {"persona.json", "generator.pt", "thumbnail.png"}
    assert run_cli("personas", "remove", "tiny", "--yes", check=True).returncode == 0
    assert json.loads(run_cli("personas", "list", "--json").stdout) == []
    run_cli("personas", "import", archive, check=True)
    assert [r["name"] for r in json.loads(run_cli("personas", "list", "--json").stdout)] == ["tiny"]


@pytest.mark.parametrize("args,message", [
    (["personas", "show", "nobody"], "unknown persona 'nobody'"),
    (["personas", "import", "missing.f2f"], "no such file"),
    (["personas", "remove", "nobody", "--yes"], "unknown persona"),
    (["personas", "export", "nobody", "-o", "x.f2f"], "unknown persona"),
])
def test_personas_cli_errors_are_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = run_cli(*args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not os.listdir(tmp_path)


def test_install_under_another_name_rewrites_only_the_name(tiny_persona):
    store = PersonaStore()
    p = store.install_folder(tiny_persona[0], name="renamed")
    assert p.name == "renamed" and p.path == store.root / "renamed" and store_is_clean(store, ["renamed"])
    meta = json.loads((p.path / pf.PERSONA_JSON).read_text())
    original = json.loads((tiny_persona[0] / pf.PERSONA_JSON).read_text())
    assert meta == {**original, "name": "renamed"}
    assert (p.path / "generator.pt").read_bytes() == (tiny_persona[0] / "generator.pt").read_bytes()
    assert store.get("renamed").load_generator() is not None
