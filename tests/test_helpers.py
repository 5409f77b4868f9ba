"""The one copy of each small helper: atomic writes, one-line errors, registries."""

import pytest

from f2f_cam import atomic
from f2f_cam.errors import UserError, one_line
from f2f_cam.registry import Registry, check_device


def test_atomic_path_replaces_only_when_complete(tmp_path):
    target = tmp_path / "out.png"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".png" and atomic.is_partial(tmp)
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]
    with atomic.atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(tmp_path.iterdir()) == [target]
    atomic.write_text(tmp_path / "a.json", "{}")
    assert (tmp_path / "a.json").read_text() == "{}"


def test_atomic_dir_never_merges_and_replaces_only_when_asked(tmp_path):
    target = tmp_path / "persona"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    assert (target / "a").read_text() == "1"
    with pytest.raises(OSError):
        with atomic.atomic_dir(target) as tmp:  # an existing folder is not replaced unasked
            (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_dir(target, replace=True) as tmp:
            (tmp / "c").write_text("3")
            raise KeyboardInterrupt
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic.atomic_dir(target, replace=True) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["persona"]  # no temp folders left


def test_one_line():
    assert one_line(ValueError("first\n  second line")) == "first"
    assert one_line(ValueError("\n\n  a   b  \n")) == "a b"
    assert one_line(KeyError()) == "KeyError"
    assert len(one_line(ValueError("x" * 1000), limit=50)) == 50


def test_registry_lists_the_choices():
    colours = Registry("colour", {"red": 1, "green": 2})
    assert colours["red"] == 1 and "green" in colours and list(colours) == ["red", "green"]
    with pytest.raises(UserError, match="unknown colour 'blue'; choose one of: red, green"):
        colours["blue"]
    assert check_device("cuda:1") == "cuda:1"
    with pytest.raises(UserError, match="unknown device 'tpu'; choose one of: auto, cpu, cuda, mps"):
        check_device("tpu")
