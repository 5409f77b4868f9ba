"""The real-time student (issue 11): distilled at the end of training when the generator
is too slow here, carried in the persona (format 3), and run instead of the full
generator where that one cannot keep 30 fps."""

import json
import zipfile

import numpy as np
import pytest
import torch

from f2f_cam import persona as pf
from f2f_cam.errors import UserError
from f2f_cam.generator import Generator, Trial
from f2f_cam.persona import PersonaStore, read_persona
from f2f_cam.sketch import render
from trainers.config import TrainConfig
from trainers.dataset import build_dataset, load_dataset
from trainers.distill import distil, edge_l1
from trainers.networks import StudentGenerator, define_D, define_G
from trainers.recipe import train_persona

from test_recipe import TINY  # the same tiny networks as the recipe's tests


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, talking_head):
    out = tmp_path_factory.mktemp("student") / "ds"
    build_dataset(talking_head[0], out, frames=20, size=64, val_fraction=0.2, seed=0, progress=False)
    return out


@pytest.fixture(scope="module")
def student_persona(tmp_path_factory, dataset):
    """(folder, result): a tiny persona trained with ``--student yes`` (exported to a folder)."""
    import os

    from f2f_cam import paths

    home = tmp_path_factory.mktemp("student-home")
    old = os.environ.get("F2F_CAM_DATA_DIR")
    os.environ["F2F_CAM_DATA_DIR"] = str(home)
    try:
        assert paths.data_dir() == home
        r = train_persona("pupil", dataset=dataset, workdir=home / "run", progress=False,
                          config=TrainConfig(**TINY, epochs=1, student="yes", student_steps=3))
    finally:
        if old is None:
            os.environ.pop("F2F_CAM_DATA_DIR")
        else:
            os.environ["F2F_CAM_DATA_DIR"] = old
    return r.persona, r


def test_the_student_keeps_the_generators_contract():
    net = StudentGenerator(512, ngf=4).eval()
    x = torch.rand(2, 3, 512, 512) * 2 - 1
    y = net(x)
    assert y.shape == (2, 3, 512, 512) and y.abs().max() <= 1
    assert define_G("student", size=64, ngf=4).unet.down[0][0].in_channels == 12  # folded 2x2: 12 channels
    with pytest.raises(ValueError, match="cannot fold"):
        StudentGenerator(64, factor=3)


def test_the_edge_loss_on_known_images():
    step = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # a vertical edge
    flat = torch.zeros(1, 1, 2, 2)
    assert edge_l1(step, flat).item() == pytest.approx(1.0)  # every horizontal difference is 1, none vertical
    assert edge_l1(step.transpose(2, 3), flat).item() == pytest.approx(1.0)  # the same edge lying down
    assert edge_l1(step, step + 0.5).item() == 0  # blind to a brightness offset: L1 takes care of that
    assert edge_l1(step, step).item() == 0


def test_distilling_brings_the_student_towards_the_teacher(dataset):
    meta = load_dataset(dataset)
    torch.manual_seed(1)
    teacher = define_G("unet", size=64, ngf=8).eval()
    early, facts_early = distil(teacher, meta, minutes=5, max_steps=1, progress=False)
    later, facts = distil(teacher, meta, minutes=5, max_steps=60, progress=False)
    assert facts["steps"] == 60 and facts_early["steps"] == 1
    # Fitted to the teacher's outputs: much nearer them than after one step.
    assert facts["psnr_vs_generator"] > facts_early["psnr_vs_generator"] + 3
    assert set(facts) >= {"val_psnr", "generator_val_psnr", "ssim_vs_generator", "seconds", "ngf", "factor"}
    assert 0 < facts["sharpness_vs_generator"]
    stopped, f = distil(teacher, meta, minutes=5, max_steps=60, progress=False, should_stop=lambda: True)
    assert f["steps"] == 0  # Ctrl-C before the first step


def test_the_students_rate_goes_down_to_zero_over_the_last_share():
    from trainers.distill import decayed_lr

    assert [decayed_lr(2.0, done, 0.5) for done in (0.0, 0.5, 0.75, 1.0, 1.2)] == [2.0, 2.0, 1.0, 0.0, 0.0]
    assert decayed_lr(2.0, 0.9, 0.0) == 2.0  # no decay


def test_the_adversarial_student_trains_its_discriminator_too(dataset):
    meta = load_dataset(dataset)
    torch.manual_seed(1)
    teacher = define_G("unet", size=64, ngf=8).eval()
    D = define_D("patch", ndf=8, norm="instance")
    before = [p.detach().clone() for p in D.parameters()]
    student, facts = distil(teacher, meta, minutes=5, max_steps=2, progress=False, lambda_edge=1.0,
                            discriminator=D, lambda_gan=0.01)
    assert facts["steps"] == 2 and student(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    assert any(not torch.equal(a, b) for a, b in zip(before, D.parameters()))


def test_train_with_a_student_puts_it_in_the_persona(student_persona):
    folder, r = student_persona
    p = read_persona(folder)
    assert p.meta["format_version"] == 3 and p.student_path == folder / pf.STUDENT_FILE
    s = p.meta["student"]
    assert s["steps"] == 3 and s["architecture"] == "StudentGenerator" and s["generator_ms"] > 0
    assert s["student_ms"] > 0 and "psnr_vs_generator" in s
    assert p.as_student().load_generator()(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    assert p.as_student().student_path is None and p.as_student().generator_path.name == pf.STUDENT_FILE
    assert (r.run_dir / "checkpoints" / "student.pt").is_file()


def test_a_persona_without_a_student_stays_format_2(tmp_path, dataset, monkeypatch):
    monkeypatch.setenv("F2F_CAM_DATA_DIR", str(tmp_path))
    # "auto": the tiny generator is far faster than 30 fps needs, so no student.
    r = train_persona("plain", dataset=dataset, workdir=tmp_path / "run", progress=False,
                      config=TrainConfig(**TINY, epochs=1, max_steps=1))
    p = PersonaStore().get("plain")
    assert p.meta["format_version"] == 2 and p.student_path is None and "student" not in p.meta
    assert not (r.run_dir / "checkpoints" / "student.pt").exists()
    with pytest.raises(UserError, match="has no real-time student; .* --student yes"):
        p.as_student()


def test_the_runtime_hands_over_to_the_student_only_where_the_full_one_is_slow(student_persona, monkeypatch):
    p = read_persona(student_persona[0])
    sketch = render(p.neutral, p.image_size)
    student_out = Generator(p, compile="off", student="always")(sketch)
    full_out = Generator(p, compile="off", student="never")(sketch)
    assert not np.array_equal(student_out, full_out)  # two different networks

    monkeypatch.setattr(Generator, "REAL_TIME_MS", 0.0)  # nothing is fast enough: the student runs
    slow = Generator(p, compile="off")
    frames = Trial.WARMUP + Generator.SPEED_RUNS
    outs = [slow(sketch) for _ in range(frames)]
    assert all(np.array_equal(o, full_out) for o in outs)  # the full one while it is timed
    assert slow.use_student is True and slow.full_ms > 0 and slow.engine == "student, eager"
    assert np.array_equal(slow(sketch), student_out)
    again = Generator(p, compile="off")  # the next start here: the time is remembered, not measured again
    assert again.use_student is True and again.full_ms == slow.full_ms
    assert np.array_equal(again(sketch), student_out)

    monkeypatch.setattr(Generator, "REAL_TIME_MS", 1e9)  # fast enough: the full one stays
    fast = Generator(p, compile="off")
    fast.settle(sketch)
    assert fast.use_student is False and fast.student is None and fast.engine == "eager"
    assert np.array_equal(fast(sketch), full_out)
    assert Generator(p, compile="off", student="never").student is None


@pytest.mark.parametrize("factor", [2, 1])
def test_the_compiled_student_draws_what_the_eager_one_does(factor, tmp_path):
    """Compiled, a folded student's last unfold (channels into pixels) runs outside the
    library (``accel._unfold_apart``, ``accel.unfold``): the same frame, to a grey level."""
    from f2f_cam import accel
    from trainers.export import freeze_generator

    if accel.compiler_problem():
        pytest.skip(accel.compiler_problem())
    torch.manual_seed(factor)
    net = StudentGenerator(64, ngf=4, factor=factor).eval()
    with torch.no_grad():  # a trained-looking last layer: outputs across the whole range
        net.unet.final[1].weight.mul_(20)
    script = freeze_generator(net, 64)
    torch.jit.save(script, str(tmp_path / "student.pt"))
    run = accel.Compiled(accel.compile_package(tmp_path / "student.pt", 64, "fp32", tmp_path / "student.so"))
    rng = np.random.default_rng(0)
    for sketch in (np.zeros((64, 64, 3), np.uint8), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)):
        with torch.inference_mode():
            eager = script(torch.from_numpy(sketch).permute(2, 0, 1)[None].float() / 127.5 - 1)
        eager = ((eager.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
        got = run(torch.from_numpy(sketch)).numpy()
        assert got.shape == (64, 64, 3) and np.abs(got.astype(int) - eager).max() <= 1
        assert len(np.unique(got)) > 50  # not a flat frame that any order would match


def test_a_student_that_is_missing_or_unlisted_is_a_corrupt_persona(student_persona, tmp_path):
    files = pf.read_files(student_persona[0])
    assert pf.STUDENT_FILE in files
    where = "persona 'pupil'"
    missing = {k: v for k, v in files.items() if k != pf.STUDENT_FILE}
    with pytest.raises(UserError, match="student.pt is missing"):
        pf.check_files(missing, tmp_path / "p", where)
    meta = json.loads(files[pf.PERSONA_JSON])
    unlisted = dict(files, **{pf.PERSONA_JSON: json.dumps({k: v for k, v in meta.items() if k != "student"}).encode()})
    with pytest.raises(UserError, match="lists no student"):
        pf.check_files(unlisted, tmp_path / "p", where)
    old = dict(files, **{pf.PERSONA_JSON: json.dumps(dict(meta, format_version=2)).encode()})
    with pytest.raises(UserError, match="format version 3"):
        pf.check_files(old, tmp_path / "p", where)
    broken = dict(files, **{pf.STUDENT_FILE: b"PK\x03\x04 not a model"})
    with pytest.raises(UserError, match="real-time student"):
        pf.check_files(broken, tmp_path / "p", where)
    # A folder whose student.pt went missing reads as corrupt too.
    folder = pf.write_folder(files, tmp_path / "folder")
    (folder / pf.STUDENT_FILE).unlink()
    with pytest.raises(UserError, match="corrupt: student.pt is missing"):
        read_persona(folder)


def test_a_persona_with_a_student_travels_in_its_archive(student_persona, tmp_path, monkeypatch):
    monkeypatch.setenv("F2F_CAM_DATA_DIR", str(tmp_path / "home"))
    archive = pf.write_archive(student_persona[0], tmp_path / "pupil.f2f")
    assert pf.STUDENT_FILE in zipfile.ZipFile(archive).namelist()
    installed = PersonaStore().import_archive(archive)
    assert installed.student_path.is_file()


def test_auto_distils_where_the_generator_is_too_slow_and_ctrl_c_leaves_no_student(tmp_path, dataset, monkeypatch,
                                                                                    caplog):
    import os
    import signal

    from trainers import distill

    monkeypatch.setenv("F2F_CAM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(distill, "REAL_TIME_MS", 0.0)  # "too slow": auto distils
    r = train_persona("slow", dataset=dataset, workdir=tmp_path / "run", progress=False,
                      config=TrainConfig(**TINY, epochs=1, max_steps=1, student_steps=2))
    assert r.student is not None and r.student["steps"] == 2
    assert PersonaStore().get("slow").student_path is not None

    real = distill.distil

    def interrupted(*args, **kwargs):  # Ctrl-C as the student starts
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(distill, "distil", interrupted)
    r = train_persona("slow", dataset=dataset, workdir=tmp_path / "run2", progress=False, force=True,
                      config=TrainConfig(**TINY, epochs=1, max_steps=1, student_steps=50))
    assert r.student is None and r.persona is not None
    p = PersonaStore().get("slow")
    assert p.student_path is None and p.meta["format_version"] == 2  # the generator alone, whole
    assert "real-time student interrupted" in caplog.text


def test_bench_shows_the_first_starts_trials_once(student_persona, tmp_path, talking_head):
    """The first start on a machine times the full generator on its first frames (to pick
    it or the student); the next start remembers, and runs the chosen one from frame one."""
    from conftest import run_cli

    PersonaStore().import_archive(pf.write_archive(student_persona[0], tmp_path / "pupil.f2f"))
    runs = []
    for _ in range(2):
        proc = run_cli("bench", "--persona", "pupil", "--video", talking_head[0], "--frames", 20, "--no-compile",
                       "--json")
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout))
    first, again = runs
    assert first["first_start_trial_frames"] >= Trial.WARMUP + Generator.SPEED_RUNS
    assert again["first_start_trial_frames"] == 0
    assert first["full_generator_ms"] == again["full_generator_ms"] > 0  # measured once, then remembered
    assert first["generator"] == again["generator"] == "full"  # a tiny generator is fast enough here
