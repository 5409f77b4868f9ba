"""Bad input for personas (issue 13): archives, persona.json, generators, thumbnails and
expression models; the compiled-generator cache; training checkpoints; and the security
claims of docs/RELIABILITY.md, each as a test.

Every refused input gives one line that says what is wrong and what to do (the CLI: one
stderr line, a non-zero exit, no traceback), and leaves the data folder exactly as it
was (every name and byte, checked by a snapshot): nothing written, nothing half-written,
and the persona already installed under that name untouched, even with ``--force``.
``test_persona.py`` has the first cases (unexpected paths, oversized, truncated and
non-zip archives, bad fields, a generator of the wrong output shape); this file adds the
rest and the command-line side.

Expression model (``expression.npz``): one with wrong shapes, NaNs or pickled arrays is
refused, on import and on load (``personas list`` shows the persona as BROKEN with the
reason). A user expects the persona they were sent to be the one they run: silently
running ``transfer`` instead would hide a damaged file, and the sender can re-export.
Falling back to ``transfer`` (one log line) is for format-1 personas, which never had
a model.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import pickle
import shutil
import socket
import stat
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from f2f_cam import accel, paths
from f2f_cam import persona as pf
from f2f_cam import persona_archive
from f2f_cam.control import ControlClient, ControlServer, ensure_runtime_dir
from f2f_cam.errors import UserError
from f2f_cam.expression import ARRAYS
from f2f_cam.generator import Generator
from f2f_cam.persona import PersonaStore

from conftest import ROOT, TINY_SIZE, run_cli
from tests_helpers import one_line_error

PNG = b"\x89PNG\r\n\x1a\n"  # the PNG signature

# TorchScript is deprecated upstream; personas are TorchScript (see README): not news here.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


class Creates:
    """Unpickled, it creates ``path``: the side effect a malicious pickle would have."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def snapshot(root: Path | None = None) -> dict:
    """Every name under the data folder (the store and its neighbours) with its bytes."""
    root = Path(root or paths.data_dir())
    out = {}
    for p in sorted(root.rglob("*")) if root.exists() else []:
        rel = str(p.relative_to(root))
        out[rel] = f"-> {os.readlink(p)}" if p.is_symlink() else "dir" if p.is_dir() else p.read_bytes()
    return out


def refused(call, *expected: str) -> str:
    """``call()`` raises a one-line UserError holding each ``expected`` and changes nothing."""
    before = snapshot()
    with pytest.raises(UserError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg and all(t in msg for t in expected), msg
    assert snapshot() == before
    return msg


def zip_bytes(entries, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``entries``: {name: bytes} or [(name or ZipInfo, bytes)]."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in entries.items() if isinstance(entries, dict) else entries:
            z.writestr(name, data)
    return buf.getvalue()


def patch_entry(data: bytes, name: str, local: int, central: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of ``name``'s local and central headers (zipfile never writes
    encrypted flags, unknown methods or lying sizes). Offsets: flags 6/8, method 8/10,
    uncompressed size 22/24."""
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02")
    while pos >= 0:
        n, = struct.unpack_from("<H", out, pos + 28)
        if out[pos + 46:pos + 46 + n].decode() == name:
            lho, = struct.unpack_from("<I", out, pos + 42)
            struct.pack_into(fmt, out, pos + central, value)
            struct.pack_into(fmt, out, lho + local, value)
        pos = out.find(b"PK\x01\x02", pos + 4)
    return bytes(out)


def png_header_bomb(width: int, height: int) -> bytes:
    """A real, valid 1-bit PNG of width x height, all black: ~50 KB for 20000 x 20000
    (400 M pixels, 1.2 GB as RGB when decoded)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    c = zlib.compressobj(9)
    rows = (b"\x00" + bytes((width + 7) // 8)) * 100
    idat = b"".join(c.compress(rows) for _ in range(height // 100)) + c.flush()
    return (PNG + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def expression_arrays(k: int = 3) -> dict:
    """A small valid expression model (K components): the shapes of ``ARRAYS``."""
    a = {n: np.zeros(tuple(k if d == "K" else d for d in shape), np.float32) for n, shape in ARRAYS.items()}
    a["score_hi"][:] = 1
    a["pose_lo"][3], a["pose_hi"][3] = 0.5, 1.5  # the scale range must be positive
    a["placement"][2] = 30.0  # face width, px
    return a


def npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # object arrays are pickled: allow_pickle=False must refuse them
    return buf.getvalue()


@pytest.fixture
def files(tiny_persona) -> dict[str, bytes]:
    """The tiny persona's files, to break one at a time."""
    return pf.read_files(tiny_persona[0])


@pytest.fixture
def store(installed_persona) -> PersonaStore:
    """The store, holding 'tiny': a bad archive named 'tiny' must not replace it."""
    return PersonaStore()


def with_meta(files: dict, edit=None, **fields) -> dict:
    meta = json.loads(files[pf.PERSONA_JSON])
    meta.update(fields)
    if edit:
        edit(meta)
    return {**files, pf.PERSONA_JSON: json.dumps(meta).encode()}


def write(tmp_path: Path, data: bytes, name: str = "bad.f2f") -> Path:
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


def import_refused(store, tmp_path, data: bytes, *expected: str) -> str:
    archive = write(tmp_path, data)
    return refused(lambda: store.import_archive(archive, force=True), *expected)


# -- archives -----------------------------------------------------------------------

def test_a_good_archive_built_like_the_bad_ones_imports(store, files, tmp_path):
    """The control: the helpers below break one thing each, not everything."""
    data = with_meta(files, format_version=2, expression={"file": pf.EXPRESSION_FILE})
    data[pf.EXPRESSION_FILE] = npz(expression_arrays())
    p = store.import_archive(write(tmp_path, zip_bytes(data)), force=True)
    assert p.expression is not None and store.get("tiny").expression is not None


def test_zip_bomb_is_refused_from_the_directory_without_unpacking(store, files, tmp_path, monkeypatch):
    data = zip_bytes({**files, pf.MODEL_CARD: bytes(64 << 20)})  # packs ~1000x
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(name)
                        or real_open(self, name, *a, **k))
    import_refused(store, tmp_path, data, "zip bomb", f"more than {persona_archive.MAX_RATIO}x")
    assert opened == []  # refused before any entry was decompressed
    # The total cap, for entries that pack modestly (~10x): over it, refused as well.
    text = "".join(f"line {i:08d}\n" for i in range(300_000)).encode()  # 4.2 MB
    monkeypatch.setattr(persona_archive, "MAX_ARCHIVE_BYTES", 3 << 20)
    import_refused(store, tmp_path, zip_bytes({**files, pf.MODEL_CARD: text}), "unpacks to", "limit")


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("case", ["symlink", "duplicate", "encrypted", "unknown method", "lying size",
                                  "no persona.json", "no generator", "unlisted expression.npz"])
def test_malformed_archives_are_refused(store, files, tmp_path, case):
    if case == "symlink":
        # Unpacked by `unzip`, this would be a link from the store to the user's home.
        link = zipfile.ZipInfo(pf.THUMBNAIL)
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        entries = [(n, d) for n, d in files.items() if n != pf.THUMBNAIL] + [(link, b"../../../../.bashrc")]
        import_refused(store, tmp_path, zip_bytes(entries), "symbolic link")
    elif case == "duplicate":
        entries = list(files.items()) + [(pf.PERSONA_JSON, with_meta(files, name="other")[pf.PERSONA_JSON])]
        import_refused(store, tmp_path, zip_bytes(entries), "persona.json twice")
    elif case == "encrypted":
        data = patch_entry(zip_bytes(files), pf.PERSONA_JSON, 6, 8, "<H", 0x1)
        import_refused(store, tmp_path, data, "persona.json cannot be read", "encrypted")
    elif case == "unknown method":
        data = patch_entry(zip_bytes(files, zipfile.ZIP_STORED), pf.GENERATOR_FILE, 8, 10, "<H", 99)
        import_refused(store, tmp_path, data, "generator.pt cannot be read", "compression")
    elif case == "lying size":
        small = len(files[pf.GENERATOR_FILE]) // 2
        data = patch_entry(zip_bytes(files, zipfile.ZIP_STORED), pf.GENERATOR_FILE, 22, 24, "<I", small)
        import_refused(store, tmp_path, data, "is damaged")
    elif case == "no persona.json":
        import_refused(store, tmp_path, zip_bytes({pf.GENERATOR_FILE: files[pf.GENERATOR_FILE]}),
                       "has no persona.json")
    elif case == "no generator":
        import_refused(store, tmp_path, zip_bytes({pf.PERSONA_JSON: files[pf.PERSONA_JSON]}),
                       "generator.pt is missing")
    else:  # an allowed name that persona.json does not vouch for: nothing would check it
        import_refused(store, tmp_path, zip_bytes({**files, pf.EXPRESSION_FILE: npz(expression_arrays())}),
                       "lists no expression model")


# -- persona.json -------------------------------------------------------------------

BAD_META = [  # (id, edit of persona.json's dict, or its raw bytes; what the one line says)
    ("size as text", lambda m: m.update(image_size="64"), "image_size '64'"),
    ("size as float", lambda m: m.update(image_size=64.0), "image_size 64.0"),
    ("crop as list", lambda m: m.update(crop=[1, 2, 3]), "crop must be an object of numbers"),
    ("crop x as text", lambda m: m["crop"].update(x="left"), "crop must be an object of numbers"),
    ("crop x as bool", lambda m: m["crop"].update(x=True), "crop must be an object of numbers"),
    ("generator as text", lambda m: m.update(generator="generator.pt"), "generator must be an object"),
    ("training as list", lambda m: m.update(training=[1]), "training must be an object"),
    ("frames as text", lambda m: m["training"].update(frames="400"), "training.frames must be a whole number"),
    ("display name as list", lambda m: m.update(display_name=["a"]), "display_name must be a string"),
    ("landmarks as object", lambda m: m.update(neutral_landmarks={"x": 1}), "neutral_landmarks is not a list"),
    ("no name", lambda m: m.pop("name"), "missing field 'name'"),
    ("no generator file", lambda m: m["generator"].pop("file"), "missing field 'file'"),
    ("huge int in crop", lambda m: m["crop"].update(frame_width=10 ** 400), "too large"),
    ("huge frame", lambda m: m["crop"].update(frame_width=10 ** 12), "frame_width and frame_height"),
    ("huge crop", lambda m: m["crop"].update(size=1e300), "positive finite square in the frame"),
    ("huge size", lambda m: m.update(image_size=10 ** 400), "image_size"),
    ("huge landmark", lambda m: m["canonical_landmarks"][0].__setitem__(0, 10 ** 400), "not a list of numbers"),
    ("float overflow", lambda m: m["canonical_landmarks"][0].__setitem__(0, 1e300), "far outside"),
    ("infinite crop", lambda m: m["crop"].update(size=float("inf")), "positive finite square"),
    ("NaN crop", lambda m: m["crop"].update(x=float("nan")), "positive finite square"),
    ("NaN landmark", lambda m: m["neutral_landmarks"][5].__setitem__(1, float("nan")), "non-finite"),
    ("sketch version as text", lambda m: m.update(sketch_version="1"), "sketch_version must be a whole number"),
    ("format version as text", lambda m: m.update(format_version="2"), "bad format_version"),
    ("top level list", b"[1, 2]", "top level is not an object"),
    ("deep nesting", b"[" * 200_000, "nested too deeply"),
    ("1e999", None, "positive finite square"),  # JSON's own overflow: parsed as inf
    ("not UTF-8", b'{"name": "\xff"}', "corrupt"),
]


@pytest.mark.parametrize("edit,expected", [c[1:] for c in BAD_META], ids=[c[0] for c in BAD_META])
def test_wrong_json_types_and_values_are_refused(store, files, tmp_path, edit, expected):
    if edit is None:
        text = files[pf.PERSONA_JSON].decode()
        meta = json.loads(text)
        data = {**files, pf.PERSONA_JSON: text.replace(json.dumps(meta["crop"]["size"]), "1e999", 1).encode()}
    elif isinstance(edit, bytes):
        data = {**files, pf.PERSONA_JSON: edit}
    else:
        data = with_meta(files, edit)
    msg = import_refused(store, tmp_path, zip_bytes(data), expected)
    assert "re-import or re-export it" in msg


def test_future_format_and_other_sketch_versions(store, files, tmp_path):
    # A newer format may have fields this one does not know: the upgrade line comes first.
    future = with_meta(files, lambda m: m.pop("crop"), format_version=pf.FORMAT_VERSION + 1)
    import_refused(store, tmp_path, zip_bytes(future), "made by a newer f2f-cam", "upgrade f2f-cam")
    import_refused(store, tmp_path, zip_bytes(with_meta(files, format_version=10 ** 30)), "newer f2f-cam")
    import_refused(store, tmp_path, zip_bytes(with_meta(files, sketch_version=2)),
                   "trained on sketch version 2", "retrain it")


# -- the generator, the thumbnail, the expression model -----------------------------------

def _script_bytes(module) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buf)
    return buf.getvalue()


class Pair(torch.nn.Module):
    def forward(self, x):
        return x, x


class NaNs(torch.nn.Module):
    def forward(self, x):
        return x * float("nan")


def test_generators_with_the_wrong_contract_are_refused(store, files, tmp_path):
    one_channel = _script_bytes(torch.nn.Conv2d(1, 3, 1))  # wants (N, 1, S, S)
    import_refused(store, tmp_path, zip_bytes({**files, pf.GENERATOR_FILE: one_channel}),
                   "not a working TorchScript generator")
    import_refused(store, tmp_path, zip_bytes({**files, pf.GENERATOR_FILE: _script_bytes(Pair())}),
                   "generator maps (1, 3, 64, 64) to tuple")
    import_refused(store, tmp_path, zip_bytes({**files, pf.GENERATOR_FILE: _script_bytes(NaNs())}),
                   "NaN or infinite values")


def test_pickles_posing_as_generator_are_refused_before_unpickling(store, files, tmp_path):
    marker = tmp_path / "pwned"
    plain = io.BytesIO()
    torch.save({"weight": torch.zeros(3)}, plain)  # a checkpoint-like pickle, harmless
    evil_zip = io.BytesIO()
    torch.save(Creates(marker), evil_zip)  # torch.save's zip format, with a malicious data.pkl
    for generator, expected in ((plain.getvalue(), "a pickle (torch.save), not TorchScript"),
                                (evil_zip.getvalue(), "a pickle (torch.save), not TorchScript"),
                                (pickle.dumps(Creates(marker)), "a pickle, not TorchScript")):
        import_refused(store, tmp_path, zip_bytes({**files, pf.GENERATOR_FILE: generator}), expected)
        assert not marker.exists()


def test_torchscript_never_runs_a_pickles_python(files, tmp_path):
    """What a real TorchScript file with a malicious data.pkl does in torch.jit.load: its
    C++ unpickler resolves ``builtins.open`` as a TorchScript type and fails; no Python
    runs (the claim in persona.torchscript_problem's docstring)."""
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(io.BytesIO(files[pf.GENERATOR_FILE])) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    for n in entries:
        if n.endswith("/data.pkl"):
            entries[n] = pickle.dumps(Creates(marker), protocol=2)
    evil = zip_bytes(entries, zipfile.ZIP_STORED)
    assert pf.torchscript_problem(evil) is None  # it looks like TorchScript: torch reads it
    with pytest.raises(UserError, match="not a working TorchScript generator.*Unknown type name"):
        pf.load_generator_file(evil, TINY_SIZE)
    assert not marker.exists()


def test_bad_thumbnails_are_refused_without_decoding(store, files, tmp_path):
    """A 20000 x 20000 PNG is ~50 KB and 1.2 GB decoded (cv2.imread decodes it; PIL
    raises DecompressionBombError): refused from its header. A 10 MB one, or not a PNG:
    refused too. f2f-cam itself never decodes a thumbnail."""
    import_refused(store, tmp_path, zip_bytes({**files, pf.THUMBNAIL: png_header_bomb(20000, 20000)}),
                   "thumbnail.png is 20000x20000 px", "2048x2048")
    big = os.urandom(10 << 20)  # does not pack: no zip bomb, just large
    import_refused(store, tmp_path, zip_bytes({**files, pf.THUMBNAIL: PNG + big}),
                   "thumbnail.png is 10 MiB")
    import_refused(store, tmp_path, zip_bytes({**files, pf.THUMBNAIL: b"GIF89a" + bytes(100)}),
                   "thumbnail.png is not a PNG")


def _with_model(files, arrays_bytes):
    data = with_meta(files, format_version=2, expression={"file": pf.EXPRESSION_FILE})
    return {**data, pf.EXPRESSION_FILE: arrays_bytes}


def test_bad_expression_models_are_refused_on_import_and_load(store, files, tmp_path):
    marker = tmp_path / "pwned"
    cases = []
    a = expression_arrays()
    a["basis"] = np.zeros((3, 10), np.float32)
    cases.append((npz(a), "basis must have shape (3, 956)"))
    a = expression_arrays()
    a["weights"][0, 0] = np.nan
    cases.append((npz(a), "weights has non-finite values"))
    a = expression_arrays()
    a["bias"] = np.array([Creates(marker)] * 3, dtype=object)
    cases.append((npz(a), "not a readable .npz"))
    a = expression_arrays()
    del a["pose_map"]
    cases.append((npz(a), "missing ['pose_map']"))
    cases.append((b"PK\x03\x04 not really", "not a readable .npz"))
    for data, expected in cases:
        import_refused(store, tmp_path, zip_bytes(_with_model(files, data)), "expression.npz", expected)
        assert not marker.exists()
    # Installed, then damaged on disk: the persona is refused (listed as broken), not run as `transfer`.
    good = store.import_archive(write(tmp_path, zip_bytes(_with_model(files, npz(expression_arrays())))),
                                force=True)
    a = expression_arrays()
    a["coef_hi"][:] = -1  # below coef_lo
    (good.path / pf.EXPRESSION_FILE).write_bytes(npz(a))
    with pytest.raises(UserError, match="corrupt: expression.npz: coef_lo is above coef_hi"):
        store.get("tiny")
    row = json.loads(run_cli("personas", "list", "--json", check=True).stdout)[0]
    assert not row["ok"] and "coef_lo is above coef_hi" in row["problem"]


# -- the command line ------------------------------------------------------------------

CLI_CASES = ["not a zip", "zip bomb", "../ entry", "absolute entry", "symlink entry", "future version",
             "pickle generator", "huge thumbnail", "name ../ in persona.json", "--name ../evil",
             "--name /abs", "remove ../x", "export ../x"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_refuses_bad_archives_and_names_in_one_line(installed_persona, files, tmp_path, monkeypatch, case):
    marker = tmp_path / "pwned"
    monkeypatch.chdir(tmp_path)
    link = zipfile.ZipInfo(pf.GENERATOR_FILE)
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archives = {
        "not a zip": (b"%PDF-1.4 not a zip", "not a persona archive"),
        "zip bomb": (zip_bytes({**files, pf.MODEL_CARD: bytes(64 << 20)}), "zip bomb"),
        "../ entry": (zip_bytes({**files, "../evil": b"x"}), "unexpected entry '../evil'"),
        "absolute entry": (zip_bytes({**files, "/tmp/f2f-evil": b"x"}), "unexpected entry '/tmp/f2f-evil'"),
        "symlink entry": (zip_bytes([(pf.PERSONA_JSON, files[pf.PERSONA_JSON]), (link, b"/etc/passwd")]),
                          "symbolic link"),
        "future version": (zip_bytes(with_meta(files, format_version=99)), "made by a newer f2f-cam: upgrade"),
        "pickle generator": (zip_bytes({**files, pf.GENERATOR_FILE: pickle.dumps(Creates(marker))}),
                             "a pickle, not TorchScript"),
        "huge thumbnail": (zip_bytes({**files, pf.THUMBNAIL: png_header_bomb(20000, 20000)}), "20000x20000"),
        "name ../ in persona.json": (zip_bytes(with_meta(files, name="../evil")), "bad name '../evil'"),
    }
    before = snapshot()
    if case in archives:
        data, expected = archives[case]
        proc = run_cli("personas", "import", write(tmp_path, data), "--force")
    elif case.startswith("--name"):
        good = write(tmp_path, zip_bytes(files), "good.f2f")
        proc = run_cli("personas", "import", good, "--name", case.split()[1])
        expected = f"invalid persona name '{case.split()[1]}'"
    elif case == "remove ../x":
        proc, expected = run_cli("personas", "remove", "../tiny", "--yes"), "unknown persona '../tiny'"
    else:
        proc, expected = run_cli("personas", "export", "../tiny", "-o", "out.f2f"), "unknown persona '../tiny'"
    one_line_error(proc, expected)
    assert snapshot() == before
    assert not marker.exists() and not Path("/tmp/f2f-evil").exists() and not (tmp_path / "out.f2f").exists()
    assert not list(paths.data_dir().parent.glob("**/evil"))


def test_import_under_another_name(installed_persona, files, tmp_path):
    """``--name`` (given bad names above) installs a good archive under a good name."""
    archive = write(tmp_path, zip_bytes(files), "good.f2f")
    assert PersonaStore().import_archive(archive, name="copy").name == "copy"
    assert PersonaStore().names() == ["copy", "tiny"]
    assert json.loads((PersonaStore().get("copy").path / pf.PERSONA_JSON).read_text())["name"] == "copy"


# -- the compiled-generator cache --------------------------------------------------------

@pytest.fixture(scope="module")
def compiled(tmp_path_factory, tiny_persona):
    """(library, record, precision): the tiny persona's generator compiled once for the
    module (~20 s), outside any test's cache; tests copy it into theirs, then break it."""
    if accel.compiler_problem():
        pytest.skip(accel.compiler_problem())
    persona = pf.read_persona(tiny_persona[0])
    precision = Generator(persona, compile="off").precision
    out = tmp_path_factory.mktemp("compiled") / "tiny.so"
    accel.compile_package(persona.generator_path, TINY_SIZE, precision, out)
    return out, accel.record_path(out), precision


def _place(compiled, persona) -> Path:
    """The compiled library and its record, where the cache looks for ``persona``'s."""
    lib, record, precision = compiled
    path = accel.package_path(persona.generator_path, persona.image_size, precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(lib, path)
    shutil.copyfile(record, accel.record_path(path))
    return path


def _foreign_library(tmp_path: Path, marker: Path) -> bytes:
    """A valid shared library whose constructor creates ``marker``: what dlopen runs."""
    src = tmp_path / "foreign.c"
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void hello(void) '
                   f'{{ FILE *f = fopen("{marker}", "w"); if (f) fclose(f); }}\n')
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "foreign.so"), str(src)], check=True)
    return (tmp_path / "foreign.so").read_bytes()


def test_a_good_cache_entry_is_used(compiled, installed_persona, monkeypatch):
    monkeypatch.setenv("F2F_CAM_COMPILE", "1")
    _place(compiled, installed_persona)
    gen = Generator(installed_persona, compile="cached")
    assert gen.engine == "compiled"
    eager = Generator(installed_persona, compile="off")
    sketch = np.random.default_rng(0).integers(0, 255, (TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8)
    assert np.abs(gen(sketch).astype(int) - eager(sketch).astype(int)).max() <= 8


@pytest.mark.parametrize("case", ["truncated", "garbage", "foreign library", "other torch", "other generator",
                                  "no record", "record garbage"])
def test_stale_or_damaged_cache_entries_are_never_loaded(compiled, installed_persona, monkeypatch, tmp_path,
                                                         caplog, case):
    """The library is checked against its record before dlopen: the entry is removed,
    the generator runs eager (the daemon's "background" mode compiles it again), with
    one log line, and its output is the eager generator's."""
    monkeypatch.setenv("F2F_CAM_COMPILE", "1")
    marker = tmp_path / "constructor-ran"
    persona = installed_persona
    path = _place(compiled, persona)
    record = accel.record_path(path)
    if case == "other generator":
        # This persona's library and record under the key of another generator ("other":
        # the same network saved again, so other bytes), as if copied or mixed up.
        other = PersonaStore().install_folder(persona.path, name="other")
        torch.jit.save(torch.jit.load(str(other.generator_path)), str(other.generator_path))
        persona = PersonaStore().get("other")
        theirs = accel.package_path(persona.generator_path, TINY_SIZE, compiled[2])
        assert theirs != path
        os.replace(path, theirs)
        os.replace(record, accel.record_path(theirs))
        path, record = theirs, accel.record_path(theirs)
    lib = path.read_bytes()
    if case == "truncated":
        path.write_bytes(lib[: len(lib) // 3])
    elif case == "garbage":
        path.write_bytes(os.urandom(len(lib)))
    elif case == "foreign library":
        path.write_bytes(_foreign_library(tmp_path, marker))
    elif case == "other torch":
        record.write_text(json.dumps({**json.loads(record.read_text()), "torch": "1.13.0"}))
    elif case == "no record":
        record.unlink()
    elif case == "record garbage":
        record.write_bytes(b"\x00garbage")
    with caplog.at_level(logging.WARNING, logger="f2f_cam"):
        gen = Generator(persona, compile="cached")
    assert gen.engine == "eager" and gen.compiled is None
    lines = [r.getMessage() for r in caplog.records if "is not used" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "it runs uncompiled" in lines[0], caplog.text
    assert not path.exists() and not record.exists()  # removed: the next compile writes a good one
    assert not marker.exists()  # the foreign library's code never ran
    eager = Generator(persona, compile="off")
    sketch = np.random.default_rng(1).integers(0, 255, (TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8)
    assert np.array_equal(gen(sketch), eager(sketch))


# -- checkpoints ----------------------------------------------------------------------

def test_malicious_and_nan_checkpoints_are_refused(tmp_path):
    from f2f_cam.sketch import SKETCH_VERSION
    from trainers.checkpoint import load_checkpoint
    from trainers.networks import define_G

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"version": 1, "G": {}, "x": Creates(marker)}, evil)
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_checkpoint(evil)
    assert not marker.exists()  # weights_only=True: the reduce never ran
    G = define_G("unet", size=TINY_SIZE, ngf=8).state_dict()
    name = next(k for k, t in G.items() if t.is_floating_point())
    G[name] = torch.full_like(G[name], float("nan"))
    nan = tmp_path / "nan.pt"
    torch.save({"version": 1, "sketch_version": SKETCH_VERSION, "G": G, "D": {}}, nan)
    before = snapshot()
    line = one_line_error(run_cli("export", nan, "--name", "x"), "NaN or infinite weights", name, "diverged")
    assert "internal error" not in line and snapshot() == before


# -- security -------------------------------------------------------------------------

def test_runtime_folder_and_socket_are_private(tmp_path, monkeypatch):
    """Socket 0600 in a 0700 folder; a folder that was there already, open to others, is
    made private; one of another user's is refused (root can show that one)."""
    folder = tmp_path / "run"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    with ControlServer(lambda cmd, arg: {}, folder=folder) as srv:
        assert stat.S_IMODE(os.stat(srv.folder / "control.sock").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    if os.getuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(UserError, match="belongs to another user"):
            ensure_runtime_dir(theirs)


def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.255", 9))  # routing only: UDP connect sends nothing
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def test_tcp_transport_is_loopback_only_and_needs_the_token(monkeypatch):
    monkeypatch.setattr("f2f_cam.control.has_unix_sockets", lambda: False)
    with ControlServer(lambda cmd, arg: {"pong": arg}, transport="tcp") as srv:
        host, port = srv._sock.getsockname()[:2]
        assert host in ("127.0.0.1", "::1")
        other = _non_loopback_address()
        if other is not None:  # this machine's own address on its network: nobody listens there
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((other, port), timeout=2).close()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b'{"cmd": "ping", "arg": 1}\n')  # no token at all
            assert json.loads(s.makefile().readline()) == {"ok": False, "error": "bad or missing token"}
        assert ControlClient().request("ping", 2)["pong"] == 2  # the token from control.json


def unsafe_loads(source: str) -> list[str]:
    """Calls in ``source`` that could unpickle: torch.load without weights_only=True,
    np.load without allow_pickle=False, and any pickle/dill/joblib load."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
        kw = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
        name = f"{owner}.{node.func.attr}"
        if (name == "torch.load" and kw.get("weights_only") is not True
                or name == "np.load" and kw.get("allow_pickle") is not False
                or owner in ("pickle", "dill", "joblib", "cloudpickle") and node.func.attr.startswith("load")):
            bad.append(f"line {node.lineno}: {name}")
    return bad


def test_every_load_is_weights_only():
    # The guard can fail: it flags what it should.
    assert unsafe_loads("torch.load(f)\ntorch.load(f, weights_only=False)\nnp.load(f)\npickle.loads(b)\n"
                        "torch.load(f, weights_only=True)\nnp.load(f, allow_pickle=False)\n") == \
        ["line 1: torch.load", "line 2: torch.load", "line 3: np.load", "line 4: pickle.loads"]
    sources = sorted((ROOT / "f2f_cam").rglob("*.py")) + sorted((ROOT / "trainers").rglob("*.py"))
    found = {str(p.relative_to(ROOT)): unsafe_loads(p.read_text()) for p in sources}
    assert {k: v for k, v in found.items() if v} == {}
    text = "".join(p.read_text() for p in sources)
    assert "torch.load(" in text and "weights_only=True" in text  # the scan saw the real calls


def test_personas_carry_no_pickles(tiny_persona):
    """The bundled persona and a freshly exported one: TorchScript, JSON, PNG and plain
    arrays; nothing in them needs unpickling to load."""
    for folder in (tiny_persona[0], paths.bundled_models_dir() / "personas" / "astronaut"):
        data = pf.read_files(folder)
        assert pf.torchscript_problem(data[pf.GENERATOR_FILE]) is None
        json.loads(data[pf.PERSONA_JSON])
        assert data[pf.THUMBNAIL][:8] == PNG
        if pf.EXPRESSION_FILE in data:
            with np.load(io.BytesIO(data[pf.EXPRESSION_FILE]), allow_pickle=False) as z:
                assert all(z[n].dtype == np.float32 for n in z.files)
