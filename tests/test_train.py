"""Training: dataset builder, pix2pix loop, resume, DDP, export, the train command."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from f2f_cam import sketch
from trainers import train as tr
from trainers.config import TrainConfig
from trainers.data import PairedDataset
from trainers.dataset import build_dataset, load_dataset
from trainers.evaluate import validate
from trainers.networks import define_G

from conftest import run_cli
from tests_helpers import one_line_error

HERE = Path(__file__).resolve().parent
TINY = dict(size=64, ngf=8, ndf=8, batch_size=4, save_every=0, device="cpu")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, talking_head):
    out = tmp_path_factory.mktemp("ds") / "tiny"
    build_dataset(talking_head[0], out, frames=30, size=64, val_fraction=0.2, seed=0, progress=False)
    return out


def test_dataset_pairs_index_and_determinism(tiny_dataset, talking_head, tmp_path):
    meta = load_dataset(tiny_dataset)
    assert meta["frames_kept"] == 30 and meta["train"] == 24 and meta["val"] == 6
    assert {p["split"] for p in meta["pairs"]} == {"train", "val"}
    assert np.array(meta["canonical_landmarks"]).shape == (478, 2)
    # Format 2: each pair also has its expression scores and pose (for the expression model).
    first = meta["pairs"][0]
    assert meta["format"] == 2 and np.shape(first["blendshapes"]) == (52,) and np.shape(first["pose"]) == (4, 4)
    # A is exactly the runtime's sketch of the stored landmarks.
    import cv2

    a = cv2.cvtColor(cv2.imread(str(tiny_dataset / "A" / first["file"])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(a, sketch.render(np.array(first["landmarks"]), 64))
    # Same seed: same split; frames sampled over the whole clip, not its start.
    again = build_dataset(talking_head[0], tmp_path / "again", frames=10, size=64, seed=0, progress=False)
    twice = build_dataset(talking_head[0], tmp_path / "twice", frames=10, size=64, seed=0, progress=False)
    assert [p["split"] for p in again["pairs"]] == [p["split"] for p in twice["pairs"]]
    frames = [p["frame"] for p in again["pairs"]]
    assert frames[0] == 0 and frames[-1] == 29 and len(frames) == 10


def _untrained_val_l1(meta) -> float:
    torch.manual_seed(0)
    G = define_G("unet", size=64, ngf=8)
    val = PairedDataset(meta, "val")
    return validate(G, val, torch.device("cpu"), None, torch.contiguous_format)["val_l1"]


def test_short_training_beats_the_untrained_generator(tiny_dataset, tmp_path):
    meta = load_dataset(tiny_dataset)
    before = _untrained_val_l1(meta)
    result = tr.train(TrainConfig(**TINY, epochs=20), meta, tmp_path / "run", progress=False)
    assert result["stopped"] == "done" and result["epochs"] == 20 and result["steps"] == 120
    # Measured here: untrained ~0.26; after 20 tiny epochs (120 steps) ~0.11-0.13, after
    # 25 ~0.105 with batch or instance norm. The bound leaves room for noise.
    assert result["val_l1"] < 0.6 * before, (before, result["val_l1"])
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step") and len(rows) == 21
    assert (tmp_path / "run" / "metrics.png").stat().st_size > 1000
    assert (tmp_path / "run" / "samples" / "epoch_020.png").is_file()


def test_the_time_budget_schedule_decays_the_lr_to_zero_over_its_last_share():
    cfg = TrainConfig(**TINY, epochs=None, minutes=10, decay_share=0.5)
    assert [tr.budget_factor(cfg, s) for s in (0, 300, 450, 600, 900)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    assert tr.budget_factor(TrainConfig(**TINY, minutes=10), 590) == 1.0  # no decay asked for
    assert tr.budget_factor(TrainConfig(**TINY, epochs=3, decay_share=0.5), 1e9) == 1.0  # no budget


def test_a_budget_run_ends_with_a_small_lr(tiny_dataset, tmp_path):
    meta = load_dataset(tiny_dataset)
    cfg = TrainConfig(**TINY, epochs=None, minutes=0.1, decay_share=1.0)
    result = tr.train(cfg, meta, tmp_path / "run", progress=False)
    assert result["stopped"] == "time budget"
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    # Stopped at the end of the budget: the last steps ran with a decayed lr (the last
    # update can be an epoch end, a validation and a checkpoint before the stop).
    lrs = [g["lr"] for key in ("opt_G", "opt_D") for g in ckpt[key]["param_groups"]]
    assert all(0 <= lr < 0.5 * cfg.lr for lr in lrs), lrs
    # Each finished epoch's logged lr is the one its last step used: falling.
    metrics = tmp_path / "run" / "metrics.csv"
    if metrics.is_file():
        rows = [r.split(",") for r in metrics.read_text().splitlines()]
        logged = [float(r[rows[0].index("lr")]) for r in rows[1:]]
        assert all(b <= a for a, b in zip(logged, logged[1:])) and all(x < cfg.lr for x in logged), logged


def test_generator_and_discriminator_learn_at_their_own_rates(tiny_dataset, tmp_path):
    meta = load_dataset(tiny_dataset)
    cfg = TrainConfig(**TINY, epochs=4, decay_epochs=2, lr=1e-3, lr_d=2e-4)
    tr.train(cfg, meta, tmp_path / "run", progress=False)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    lr_g, lr_d = (ckpt[k]["param_groups"][0]["lr"] for k in ("opt_G", "opt_D"))
    # The last epoch ran at 2/3 of each rate (the decay's first of two epochs), in the same ratio.
    assert lr_g == pytest.approx(1e-3 * 2 / 3) and lr_d == pytest.approx(2e-4 * 2 / 3)
    defaults = TrainConfig(**TINY, epochs=1)
    assert (defaults.lr, defaults.lr_d) == (1e-3, 2e-4)
    with pytest.raises(Exception, match="lr-d"):
        TrainConfig(**TINY, epochs=1, lr_d=0.0)


def test_interrupted_and_resumed_equals_uninterrupted(tiny_dataset, tmp_path):
    meta = load_dataset(tiny_dataset)
    cfg = TrainConfig(**TINY, epochs=2)
    tr.train(cfg, meta, tmp_path / "straight", progress=False)
    stopped = tr.train(TrainConfig(**{**TINY, "epochs": 2, "max_steps": 4}), meta, tmp_path / "broken",
                       progress=False)
    assert stopped["stopped"] == "max steps" and stopped["steps"] == 4  # mid-epoch 1 (6 steps an epoch)
    resumed = tr.train(cfg, meta, tmp_path / "broken", resume=True, progress=False)
    assert resumed["steps"] == 12
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "broken" / "checkpoints" / "last.pt", weights_only=True)
    for k in a["G"]:
        assert torch.equal(a["G"][k], b["G"][k]), k
    for k in a["D"]:
        assert torch.equal(a["D"][k], b["D"][k]), k


def _ddp_worker(tiny_dataset, run_dir: Path, processes: int, batch: int, steps: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--standalone"] \
        if processes > 1 else [sys.executable]
    proc = subprocess.run([*launch, str(HERE / "ddp_worker.py"), str(tiny_dataset), str(run_dir), str(batch),
                           str(steps)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def test_two_process_ddp_matches_one_process(tiny_dataset, tmp_path):
    # Three steps on 2 processes: the ranks stay bit-identical, and training moves the weights.
    a = _ddp_worker(tiny_dataset, tmp_path / "ddp3", 2, 2, 3)
    assert a["world_size"] == 2 and a["step"] == 3
    assert len(set(a["rank_G_sha1"])) == 1  # both ranks hold bit-identical generators
    fresh = define_G("unet", size=64, ngf=8, n_dropout=0, norm="instance", resize_up=2).state_dict()  # train's default
    moved = max((a["G"][k].float() - fresh[k].float()).abs().max().item() for k in a["G"] if "weight" in k)
    assert moved > 1e-4  # training really changed the weights

    # Same global batch (2 x 2 vs 1 x 4): equal up to float summation order. Compared
    # after one step: later Adam steps (m / sqrt(v), with instance norm over the U-Net's
    # 2x2 maps) magnify summation order chaotically, to 4e-4 (two steps' worth) on some
    # generated clips by step 3, with PyTorch's for-loop Adam and its fused one alike.
    # Measured after one step of lr 2e-4: mean |diff| 2e-11 to 5e-11, max 5e-7 to 1.1e-5
    # (weights whose gradient is ~eps); with the face discriminator (its crop's bilinear
    # backward sums more terms) mean 4.6e-10, max 1.0e-4; with today's default losses (that
    # and the per-image parts L1) mean 6.2e-11, max 5.1e-6. A wrong split of the global
    # batch moves most weights by up to lr, and a loss normalised per process (the parts L1
    # pooled over each process's mask area) gave mean 9e-7: the mean says which.
    two = _ddp_worker(tiny_dataset, tmp_path / "ddp1", 2, 2, 1)
    one = _ddp_worker(tiny_dataset, tmp_path / "one1", 1, 4, 1)
    assert two["step"] == one["step"] == 1 and len(set(two["rank_G_sha1"])) == 1
    d = torch.cat([(two["G"][k].float() - one["G"][k].float()).abs().flatten() for k in two["G"]])
    assert d.mean() < 1e-8 and d.max() < 5e-4, (d.mean(), d.max())


def test_train_command_installs_a_persona_that_video_uses(talking_head, tmp_path):
    proc = run_cli("train", talking_head[0], "--name", "astro", "--size", "64", "--ngf", "8", "--ndf", "8",
                   "--epochs", "1", "--frames", "20", "--workdir", tmp_path / "run", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "persona 'astro' installed at" in proc.stdout and "f2f-cam video" in proc.stdout
    shown = json.loads(run_cli("personas", "show", "astro", "--json", check=True).stdout)
    t = shown["training"]
    assert t["frames"] == 20 and t["epochs"] == 1 and t["steps"] > 0 and "val_psnr" in t and "video_sha256" in t
    out = tmp_path / "out.mp4"
    proc = run_cli("video", talking_head[0], "-o", out, "--persona", "astro", "--quiet")
    assert proc.returncode == 0 and "persona astro" in proc.stdout
    # Same name again: refused, the installed persona untouched.
    before = (Path(shown["path"]) / "generator.pt").stat().st_mtime_ns
    again = run_cli("train", talking_head[0], "--name", "astro", "--epochs", "1", "--quiet")
    assert again.returncode == 1 and "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert (Path(shown["path"]) / "generator.pt").stat().st_mtime_ns == before
    # export to a file, then import it under the same name with --force
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    run_cli("export", ckpt, "--name", "astro", "-o", tmp_path / "astro.f2f", check=True)
    assert run_cli("personas", "import", tmp_path / "astro.f2f", "--force").returncode == 0


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tiny_dataset, tmp_path):
    exe = Path(sys.executable).with_name("f2f-cam")
    cmd = [str(exe), "train", "--dataset", str(tiny_dataset), "--name", "sigint", "--size", "64", "--ngf", "8",
           "--ndf", "8", "--epochs", "1000", "--workdir", str(tmp_path / "run"), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline:  # the first epoch's checkpoint
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Resume with:" in err and "--resume" in err and "Traceback" not in err
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] > 0
    resumed = run_cli(*cmd[1:], "--resume", "--max-steps", str(state["step"] + 2))
    assert resumed.returncode == 0, resumed.stderr
    assert "stopped: max steps" in resumed.stdout



def test_bad_videos(faceless_video, tmp_path):
    notvideo = tmp_path / "x.mp4"
    notvideo.write_text("nope")
    one_line_error(run_cli("dataset", faceless_video, "-o", tmp_path / "ds", "--quiet"), "no face found")
    one_line_error(run_cli("dataset", notvideo, "-o", tmp_path / "ds", "--quiet"), "not a video file")
    one_line_error(run_cli("dataset", tmp_path / "missing.mp4", "-o", tmp_path / "ds"), "no such file")
    one_line_error(run_cli("train", faceless_video, "--name", "x", "--workdir", tmp_path / "w", "--quiet"),
                   "no face found")
    assert not (tmp_path / "ds").exists() and not any((tmp_path / "w").glob("dataset*"))


def test_too_few_frames_for_the_split(talking_head, tmp_path):
    one_line_error(run_cli("dataset", talking_head[0], "-o", tmp_path / "ds", "--frames", "4", "--quiet"),
                   "too few for a train/val split")
    assert not (tmp_path / "ds").exists()


def test_dataset_with_mismatched_pairs(tiny_dataset, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_dataset, broken)
    next((broken / "B").glob("*.png")).unlink()
    one_line_error(run_cli("train", "--dataset", broken, "--name", "x", "--size", "64", "--quiet"),
                   "mismatched pairs")


def test_a_dataset_of_an_older_format_is_refused(tiny_dataset, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_dataset, old)
    meta = json.loads((old / "dataset.json").read_text())
    meta["format"] = 1
    for p in meta["pairs"]:
        del p["blendshapes"], p["pose"]
    (old / "dataset.json").write_text(json.dumps(meta))
    one_line_error(run_cli("train", "--dataset", old, "--name", "x", "--size", "64", "--quiet"),
                   "has format 1", "rebuild it with `f2f-cam dataset")


def test_checkpoint_from_another_config_and_corrupt_checkpoints(tiny_dataset, tmp_path):
    meta = load_dataset(tiny_dataset)
    tr.train(TrainConfig(**{**TINY, "max_steps": 2}, epochs=1), meta, tmp_path / "run", progress=False)
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    saved = ckpt.read_bytes()
    one_line_error(run_cli("train", "--dataset", tiny_dataset, "--name", "x", "--size", "64", "--ngf", "16",
                           "--workdir", tmp_path / "run", "--resume", "--quiet"), "another config: ngf=8")
    assert ckpt.read_bytes() == saved  # nothing overwritten
    cut = tmp_path / "cut.pt"
    cut.write_bytes(saved[: len(saved) // 2])
    one_line_error(run_cli("export", cut, "--name", "x"), "corrupt or truncated")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(1000))
    one_line_error(run_cli("export", garbage, "--name", "x"), "corrupt or truncated")
    # A pickle that is not weights-only (could run code) is refused, not executed.
    evil = tmp_path / "evil.pt"
    torch.save({"version": 1, "G": {}, "obj": Path("/")}, evil)
    one_line_error(run_cli("export", evil, "--name", "x"), "corrupt or truncated")
    assert json.loads(run_cli("personas", "list", "--json").stdout) == []


def test_bad_options(tiny_dataset, tmp_path):
    one_line_error(run_cli("train", "--dataset", tiny_dataset, "--name", "x", "--size", "128", "--quiet",
                           "--workdir", tmp_path / "w"), "dataset was built at 64")
    one_line_error(run_cli("train", "--dataset", tiny_dataset, "--name", "Bad Name"), "invalid persona name")
    one_line_error(run_cli("train", "--name", "x"), "give a VIDEO or --dataset")
    one_line_error(run_cli("train", "--dataset", tiny_dataset, "--name", "x", "--size", "64", "--sync-bn",
                           "--device", "cpu", "--workdir", tmp_path / "w2", "--quiet"), "--sync-bn needs CUDA")
    one_line_error(run_cli("bench", "--train", "--size", "100"), "built for 64, 128, 256, 512")
    one_line_error(run_cli("bench", "--train", "--ngf", "0"), "--ngf")
    one_line_error(run_cli("bench", "--train", "--batch-size", "0"), "--batch-size")


def test_dataset_never_replaces_a_file_or_a_foreign_folder(talking_head, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    one_line_error(run_cli("dataset", talking_head[0], "-o", tmp_path / "notes", "--frames", "10", "--quiet"),
                   "not an f2f-cam dataset")
    one_line_error(run_cli("dataset", talking_head[0], "-o", tmp_path / "file", "--frames", "10", "--quiet"),
                   "is a file")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine" and (tmp_path / "file").read_text() == "mine"
    one_line_error(run_cli("train", talking_head[0], "--name", "x", "--epochs", "0"), "--epochs")
