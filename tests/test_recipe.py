"""train_persona called as a library (what `f2f-cam train` runs), checkpoints that
rebuild their own networks, and TrainConfig's own checks."""

import json
from pathlib import Path

import pytest
import torch

from f2f_cam.errors import UserError
from f2f_cam.persona import PersonaStore
from trainers.checkpoint import build_generator_from_checkpoint, build_networks, load_checkpoint, save_checkpoint
from trainers.config import TrainConfig
from trainers.dataset import build_dataset
from trainers.recipe import resume_command, train_persona

from conftest import run_cli

TINY = dict(size=64, ngf=8, ndf=8, batch_size=4, save_every=0, device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory, talking_head):
    out = tmp_path_factory.mktemp("recipe") / "ds"
    build_dataset(talking_head[0], out, frames=20, size=64, val_fraction=0.2, seed=0, progress=False)
    return out


def test_train_persona_from_a_video_installs_it(talking_head, tmp_path):
    r = train_persona("astro", video=talking_head[0], frames=20, workdir=tmp_path / "run", progress=False,
                      config=TrainConfig(**TINY, epochs=1), display_name="Astro")
    assert r.stopped == "done" and r.epochs == 1 and r.steps == 4  # 16 train pairs, batch 4
    assert r.device == "cpu" and r.precision == "fp32" and r.minutes >= 0
    assert r.val_l1 is not None and r.val_psnr is not None and r.val_ssim is not None
    assert r.run_dir == tmp_path / "run" and r.checkpoint == tmp_path / "run" / "checkpoints" / "last.pt"
    store = PersonaStore()
    p = store.get("astro")
    assert r.persona == p.path and p.display_name == "Astro"
    assert p.training["steps"] == 4 and p.training["frames"] == 20 and p.training["val_psnr"] > 0
    assert p.load_generator()(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    # Export fitted the expression model on the run's dataset.
    assert p.expression is not None and p.meta["expression"]["frames"] == 20
    assert sorted(x.name for x in store.root.iterdir()) == ["astro"]  # no temp folders left
    assert (r.run_dir / "dataset" / "dataset.json").is_file() and (r.run_dir / "metrics.csv").is_file()


def test_persona_that_exists_needs_force(small_dataset, tmp_path):
    cfg = TrainConfig(**TINY, epochs=1, max_steps=1)
    first = train_persona("same", dataset=small_dataset, workdir=tmp_path / "a", config=cfg, progress=False)
    before = (first.persona / "generator.pt").stat().st_mtime_ns
    with pytest.raises(UserError, match="persona 'same' already exists; add --force"):
        train_persona("same", dataset=small_dataset, workdir=tmp_path / "b", config=cfg, progress=False)
    assert not (tmp_path / "b").exists()  # refused before any work
    assert (first.persona / "generator.pt").stat().st_mtime_ns == before
    again = train_persona("same", dataset=small_dataset, workdir=tmp_path / "b", config=cfg, progress=False,
                          force=True)
    assert again.persona == first.persona and PersonaStore().names() == ["same"]


def test_resume_continues_the_run_and_reuses_its_dataset(talking_head, tmp_path):
    run = tmp_path / "run"
    part = train_persona("resumed", video=talking_head[0], frames=20, workdir=run, progress=False,
                         config=TrainConfig(**TINY, epochs=3, max_steps=6))
    assert part.stopped == "max steps" and part.steps == 6 and part.epochs == 1  # mid-epoch 2
    dataset_json = (run / "dataset" / "dataset.json").stat().st_mtime_ns

    # The run folder has a checkpoint: a new run there needs --resume or --force.
    with pytest.raises(UserError, match="add --resume to continue it or --force"):
        train_persona("other", video=talking_head[0], frames=20, workdir=run, progress=False,
                      config=TrainConfig(**TINY, epochs=3))
    full = train_persona("resumed", video=talking_head[0], frames=20, workdir=run, progress=False,
                         config=TrainConfig(**TINY, epochs=3), resume=True, force=True)
    assert full.stopped == "done" and full.steps == 12 and full.epochs == 3
    assert (run / "dataset" / "dataset.json").stat().st_mtime_ns == dataset_json  # reused, not rebuilt
    assert PersonaStore().get("resumed").training["steps"] == 12
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]  # history carried over the resume


def test_an_older_dataset_is_rebuilt_and_a_lost_one_exports_without_a_model(small_dataset, talking_head,
                                                                           tmp_path, caplog):
    import shutil

    from trainers.dataset import DATASET_FORMAT
    from trainers.export import export_checkpoint
    from trainers.recipe import ensure_dataset

    folder = tmp_path / "ds"
    shutil.copytree(small_dataset, folder)
    options = dict(frames=20, size=64, seed=0, progress=False)
    assert ensure_dataset(talking_head[0], folder, **options)  # the same video, size, seed: reused
    meta = json.loads((folder / "dataset.json").read_text())
    (folder / "dataset.json").write_text(json.dumps({**meta, "format": 1}))
    assert not ensure_dataset(talking_head[0], folder, **options)  # format 1 has no scores: rebuilt
    assert json.loads((folder / "dataset.json").read_text())["format"] == DATASET_FORMAT
    # The checkpoint's dataset is gone: the persona is exported without a model, with a warning.
    r = train_persona("lost", dataset=folder, workdir=tmp_path / "run", progress=False,
                      config=TrainConfig(**TINY, epochs=1, max_steps=1))
    shutil.rmtree(folder)
    p = export_checkpoint(r.checkpoint, "lost", force=True)
    assert p.expression is None and "expression" not in p.meta
    assert any("no expression model" in rec.getMessage() for rec in caplog.records)


def test_the_advice_to_train_longer_repeats_the_runs_own_source_and_folder():
    assert resume_command("me", Path("my clip.mp4"), None, None) == \
        "f2f-cam train 'my clip.mp4' --name me --resume --force --minutes 30"
    # A run from a dataset folder continues from it, in its own run folder.
    assert resume_command("me", None, Path("/data/me-ds"), Path("/runs/me")) == \
        "f2f-cam train --dataset /data/me-ds --name me --workdir /runs/me --resume --force --minutes 30"


def test_resume_needs_a_checkpoint(small_dataset, tmp_path):
    with pytest.raises(UserError, match="nothing to resume"):
        train_persona("x", dataset=small_dataset, workdir=tmp_path / "run", resume=True, progress=False,
                      config=TrainConfig(**TINY, epochs=1))


def test_checkpoint_rebuilds_its_generator_from_model_args_alone(small_dataset, tmp_path):
    r = train_persona("args", dataset=small_dataset, workdir=tmp_path / "run", progress=False,
                      config=TrainConfig(**{**TINY, "norm": "instance", "dropout": False}, epochs=1, max_steps=2))
    ckpt = load_checkpoint(r.checkpoint)
    assert ckpt["model_args"] == {
        "G": {"kind": "unet", "size": 64, "ngf": 8, "n_dropout": 0, "norm": "instance", "resize_up": 2},
        "D": {"kind": "face", "ndf": 8, "n_layers": 3, "norm": "instance", "num_D": 1, "features": False,
              "crop": 32},
    }
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        want = build_generator_from_checkpoint(ckpt)(x)
        # No config at all: the networks come from model_args alone.
        bare = {k: v for k, v in ckpt.items() if k != "config"}
        assert torch.equal(build_generator_from_checkpoint(bare)(x), want)
        G, D = build_networks(ckpt["model_args"])
        G.load_state_dict(ckpt["G_ema"])  # the weights' average (--ema), not the last weights
        D.load_state_dict(ckpt["D"])
        assert torch.equal(G.eval()(x), want)
        # An older checkpoint without model_args still loads, from its config dict.
        old = {k: v for k, v in ckpt.items() if k != "model_args"}
        save_checkpoint(tmp_path / "old.pt", old)
        assert torch.equal(build_generator_from_checkpoint(load_checkpoint(tmp_path / "old.pt"))(x), want)
    # ... and exports like a new one.
    out = run_cli("export", tmp_path / "old.pt", "--name", "old", check=True)
    assert "persona 'old' installed" in out.stdout


def test_the_widths_default_to_what_this_hardware_trains_best(small_dataset, tmp_path):
    from trainers.step import default_ndf, default_ngf

    cfg = {k: v for k, v in TINY.items() if k not in ("ngf", "ndf")}
    r = train_persona("wide", dataset=small_dataset, workdir=tmp_path / "run", progress=False,
                      config=TrainConfig(**cfg, epochs=1, max_steps=1))
    ckpt = load_checkpoint(r.checkpoint)
    # fp32 on a CPU: the narrower networks (more steps in the same time).
    assert ckpt["config"]["ndf"] == 16 and ckpt["model_args"]["D"]["ndf"] == 16
    assert ckpt["config"]["ngf"] == 8 and ckpt["model_args"]["G"]["ngf"] == 8
    assert default_ndf(torch.device("cpu"), torch.bfloat16) == 32 and default_ndf(torch.device("cuda"), None) == 32
    assert default_ngf(torch.device("cpu"), torch.bfloat16) == 16 and default_ngf(torch.device("cuda"), None) == 16
    # A resumed run keeps its checkpoint's widths, so its checkpoint still fits.
    again = train_persona("wide", dataset=small_dataset, workdir=tmp_path / "run", progress=False, resume=True,
                          force=True, config=TrainConfig(**cfg, epochs=1, max_steps=2))
    assert again.steps == 2


def test_a_resumed_run_keeps_its_checkpoints_widths(small_dataset, tmp_path):
    """Begun where the defaults are wider (a bf16 CPU or a GPU: ngf 16, ndf 32), it goes
    on here (fp32: 8 and 16 by default) with its own widths, not a config error."""
    cfg = {k: v for k, v in TINY.items() if k not in ("ngf", "ndf")}
    train_persona("moved", dataset=small_dataset, workdir=tmp_path / "run", progress=False,
                  config=TrainConfig(**cfg, ngf=16, ndf=32, epochs=1, max_steps=1))
    again = train_persona("moved", dataset=small_dataset, workdir=tmp_path / "run", progress=False, resume=True,
                          force=True, config=TrainConfig(**cfg, epochs=1, max_steps=2))
    ckpt = load_checkpoint(again.checkpoint)
    assert again.steps == 2 and (ckpt["config"]["ngf"], ckpt["config"]["ndf"]) == (16, 32)
    # Widths given on the command line are still compared.
    with pytest.raises(UserError, match=r"ngf=16 \(now 8\)"):
        train_persona("moved", dataset=small_dataset, workdir=tmp_path / "run", progress=False, resume=True,
                      force=True, config=TrainConfig(**cfg, ngf=8, epochs=1, max_steps=3))


@pytest.mark.parametrize("field,value,message", [
    ("ngf", 0, "invalid --ngf 0: must be at least 1"),
    ("ndf", 0, "invalid --ndf 0: must be at least 1"),
    ("student", "maybe", "invalid --student 'maybe'; choose one of: auto, yes, no"),
    ("student_minutes", 0.0, "invalid --student-minutes 0.0: must be more than 0"),
    ("norm", "group", "invalid --norm 'group'; choose one of: batch, instance"),
    ("gan_mode", "wgan", "invalid --gan-mode 'wgan'; choose one of: vanilla, lsgan"),
    ("precision", "int8", "invalid --precision 'int8'; choose one of: auto, fp32, bf16, fp16"),
    ("size", 100, "invalid --size 100; choose one of: 64, 128, 256, 512"),
    ("device", "tpu", "unknown device 'tpu'; choose one of: auto, cpu, cuda, mps"),
    ("lr", -1.0, "invalid --lr -1.0: must be more than 0"),
    ("minutes", 0.0, "invalid --minutes 0.0: must be more than 0"),
    ("batch_size", 0, "invalid --batch-size 0: must be at least 1"),
    ("save_every", -1, "invalid --save-every -1: must be at least 0"),
    ("decay_share", 1.5, "invalid --decay-share 1.5: must be from 0 to 1"),
    ("decay_share", float("nan"), "invalid --decay-share nan: must be from 0 to 1"),
])
def test_config_checks_itself(field, value, message):
    with pytest.raises(UserError) as e:
        TrainConfig(**{field: value})
    assert str(e.value) == message
    with pytest.raises(UserError, match="give --epochs or --minutes"):
        TrainConfig(epochs=None)


def test_cli_gives_the_config_error(small_dataset, tmp_path):
    proc = run_cli("train", "--dataset", small_dataset, "--name", "x", "--norm", "group", "--workdir", tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "f2f-cam: error: invalid --norm 'group'; choose one of: batch, instance"


def test_export_to_an_archive_writes_one_file(small_dataset, tmp_path):
    r = train_persona("arch", dataset=small_dataset, workdir=tmp_path / "run", progress=False,
                      config=TrainConfig(**TINY, epochs=1, max_steps=1))
    out = tmp_path / "out"
    out.mkdir()
    run_cli("export", r.checkpoint, "--name", "shared", "-o", out / "shared.f2f", check=True)
    assert [p.name for p in out.iterdir()] == ["shared.f2f"]  # no temp folder or partial file left
    store = PersonaStore()
    p = store.import_archive(out / "shared.f2f")
    assert p.name == "shared" and json.loads((p.path / "persona.json").read_text())["training"]["steps"] == 1


def test_export_checks_once_and_writes_one_folder(small_dataset, tmp_path, monkeypatch):
    from f2f_cam import persona as pf
    from trainers.export import export_checkpoint

    r = train_persona("once", dataset=small_dataset, workdir=tmp_path / "run", progress=False,
                      config=TrainConfig(**TINY, epochs=1, max_steps=1))
    calls = {"parse_meta": 0, "load_generator_file": 0, "atomic_dir": 0}

    def counted(name):
        real = getattr(pf, name)

        def spy(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(pf, name, spy)

    for name in calls:
        counted(name)
    p = export_checkpoint(r.checkpoint, "once", force=True)
    assert calls == {"parse_meta": 1, "load_generator_file": 1, "atomic_dir": 1}
    assert p.path == PersonaStore().root / "once" and p.training["steps"] == 1
