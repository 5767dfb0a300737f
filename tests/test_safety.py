"""Safety: checkpoints never run code, writes are atomic across filesystems, a full disk and every bad
input give one line and change no file, concurrent runs never share a directory, warm starts."""

from __future__ import annotations

import io
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DIGITS_TINY, ROOT, one_error_line, run_cli, run_cli_subprocess, tiny_args
from PIL import Image

from gan_lightning.checkpoints import CheckpointError, read_checkpoint
from gan_lightning.data.images import load_image
from gan_lightning.errors import DataError
from gan_lightning.io import atomic_write


class OpensAFile:
    """A pickled payload: unpickling it calls ``open(marker, "w")``, which creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under root; files with their size and mtime (a folder's mtime moves when a failed run's
    folder is created and removed in it, which changes no file)."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None for p in root.rglob("*")
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny run of 3 generator steps: its directory (checkpoints/last.ckpt, config.yaml)."""
    root = tmp_path_factory.mktemp("trained")
    run_cli(["fit", *DIGITS_TINY, *tiny_args(root, max_steps=3)])
    return root / "lightning_logs" / "version_0"


def _mount_tmpfs(path: Path, size: str, options: str = "") -> bool:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )


@pytest.fixture
def small_fs(tmp_path):
    """A 6 MB tmpfs: another filesystem than $TMPDIR, and one that fills up."""
    mnt = tmp_path / "mnt"
    if os.geteuid() != 0 or not _mount_tmpfs(mnt, "6m"):
        pytest.skip("cannot mount a tmpfs here (needs root): no second filesystem to test on")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# --- 1. a checkpoint never runs code ------------------------------------------------------------------
@pytest.mark.parametrize("where", ["extra_key", "hyper_parameters"])
def test_a_pickled_payload_is_refused_and_never_runs(trained, tmp_path, where):
    ckpt = torch.load(trained / "checkpoints/last.ckpt", weights_only=True)
    marker = tmp_path / "payload-ran"
    if where == "extra_key":
        ckpt["extra"] = OpensAFile(marker)
    else:
        ckpt["hyper_parameters"]["note"] = OpensAFile(marker)
    torch.save(ckpt, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refused to load .*evil.ckpt.*could run code"):
        read_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["sample", "evaluate", "fit", "validate"])
def test_every_command_refuses_a_crafted_checkpoint_in_one_line(trained, tmp_path, command):
    ckpt = torch.load(trained / "checkpoints/last.ckpt", weights_only=True)
    marker = tmp_path / "payload-ran"
    ckpt["extra"] = OpensAFile(marker)
    ckpt["hyper_parameters"]["note"] = OpensAFile(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(ckpt, evil)
    if command in ("fit", "validate"):
        args = [command, *DIGITS_TINY, *tiny_args(tmp_path / "run", max_steps=5), "--ckpt_path", str(evil)]
    elif command == "evaluate":
        args = [command, "--ckpt_path", str(evil), "--run_config", str(trained / "config.yaml")]
        args += ["--out", str(tmp_path / "m.json")]
    else:
        args = [command, "--ckpt_path", str(evil), "--out", str(tmp_path / "samples")]
    line = one_error_line(run_cli_subprocess(args))
    assert "refused to load" in line and "evil.ckpt" in line
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.ckpt"]  # nothing else was created


def test_own_checkpoints_load_with_weights_only_and_no_allow_listed_types(trained):
    ckpt = read_checkpoint(trained / "checkpoints/last.ckpt")
    assert ckpt["global_step"] == 3 and "noise_rng_state" in ckpt


def damaged_copies(good: bytes, content: str) -> list[bytes]:
    """Damaged versions of the checkpoint bytes ``good``, the same on every run (seeded)."""
    rng = random.Random(0)
    if content == "empty":
        return [b""]
    if content == "truncated":
        return [good[: len(good) // 2], good[: len(good) // 3], good[:100]]
    if content == "random":  # bare, or behind a legacy-pickle or a zip magic: 1 in 20 once raised IndexError
        return [
            prefix + rng.randbytes(n)
            for prefix in (b"", b"\x80\x02", b"PK\x03\x04")
            for n in (1, 7, 64, 4096)
            for _ in range(15)
        ]
    assert (
        content == "bit_flipped"
    )  # one bit inside each stored tensor's bytes: loads fine unless CRCs are read
    copies = []
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        for info in archive.infolist():
            if "/data/" not in info.filename or info.file_size == 0:
                continue
            name_len, extra_len = struct.unpack(
                "<HH", good[info.header_offset + 26 : info.header_offset + 30]
            )
            start = info.header_offset + 30 + name_len + extra_len
            damaged = bytearray(good)
            damaged[start + rng.randrange(info.compress_size)] ^= 1 << rng.randrange(8)
            copies.append(bytes(damaged))
    assert len(copies) >= 4
    return copies


@pytest.mark.parametrize("content", ["missing", "empty", "truncated", "random", "bit_flipped"])
def test_damaged_checkpoint_files_are_named_in_one_error(trained, tmp_path, content):
    path = tmp_path / "bad.ckpt"
    copies = (
        [None]
        if content == "missing"
        else damaged_copies((trained / "checkpoints/last.ckpt").read_bytes(), content)
    )
    for data in copies:
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(CheckpointError, match="bad.ckpt") as err:
            read_checkpoint(path)
        if content == "bit_flipped":
            assert "CRC-32" in str(err.value)


# --- 2 & 3. atomic writes across filesystems, and a full disk ----------------------------------------
def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def _wait_until_stopped(pid, timeout=10.0):
    """Wait until every thread of ``pid`` is in the stopped state ('T' in /proc/<pid>/task/*/stat)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                states.append(task.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread that ended meanwhile
        if all(s in "tTZX" for s in states):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop within {timeout} s")


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_on_another_filesystem_never_leaves_a_partial_last(small_fs, tmp_path):
    root = small_fs / "run"
    args = [*DIGITS_TINY, *tiny_args(root, max_steps=400), "--checkpoint.every_n_train_steps", "1"]
    args += ["--samples.every_n_steps", "0"]
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT / "tests"), PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gan_lightning", "fit", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ckpts, caught = root / "lightning_logs/version_0/checkpoints", False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpts.is_dir() and (ckpts / "last.ckpt").exists():
                tmps = [e for e in os.scandir(ckpts) if e.name.endswith(".tmp")]
                if tmps:  # a write is in flight: freeze the writer there, then kill it
                    os.kill(proc.pid, signal.SIGSTOP)
                    _wait_until_stopped(proc.pid)  # SIGSTOP is asynchronous: a thread may still rename
                    caught = any(os.path.exists(e.path) for e in tmps)
                    if caught:
                        break
                    os.kill(proc.pid, signal.SIGCONT)
    finally:
        proc.kill()
        proc.wait()
    if not caught:
        pytest.skip("no checkpoint write was caught in flight within 2 minutes")
    assert any(p.name.endswith(".tmp") for p in ckpts.iterdir())  # the kill landed mid-write
    step = read_checkpoint(ckpts / "last.ckpt")["global_step"]  # complete, previous or new
    assert step >= 1
    res = run_cli_subprocess(
        [
            "fit",
            *DIGITS_TINY,
            *tiny_args(root, max_steps=step + 1),
            "--ckpt_path",
            str(ckpts / "last.ckpt"),
        ],
        env={"TMPDIR": str(tmp_path)},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    resumed = root / "lightning_logs/version_1/checkpoints/last.ckpt"
    assert resumed.is_file()
    assert read_checkpoint(resumed)["global_step"] == step + 1
    assert not [p for p in ckpts.iterdir() if p.name.endswith(".tmp")]  # cleaned on the next start
    assert oct(resumed.stat().st_mode & 0o777) == oct(0o666 & ~0o022)  # usual permissions, not mkstemp's
    # nothing was ever written to $TMPDIR (torch 2.6, the lowest declared, leaves a folder with the
    # module it makes for torch.distributed.nn's RemoteModule on import: not ours)
    assert not [p for p in tmp_path.glob("tmp*") if not (p / "_remote_module_non_scriptable.py").exists()]


@pytest.mark.slow
def test_a_full_disk_gives_one_line_and_keeps_the_earlier_checkpoints(small_fs):
    root = small_fs / "run"
    res = run_cli_subprocess(
        [
            "fit",
            *DIGITS_TINY,
            *tiny_args(root, max_steps=50),
            "--checkpoint.every_n_train_steps",
            "1",
            "--checkpoint.save_top_k",
            "-1",
            "--samples.every_n_steps",
            "0",
        ]
    )
    line = one_error_line(res)
    assert "no space left" in line and str(small_fs) in line
    ckpts = sorted((root / "lightning_logs/version_0/checkpoints").glob("*.ckpt"))
    assert len(ckpts) >= 2
    for path in ckpts:
        read_checkpoint(path)  # every file under a final name is complete
    assert not list(small_fs.rglob("*.tmp"))


# --- 4. two runs, one root ----------------------------------------------------------------------------
@pytest.mark.slow
def test_two_concurrent_fits_on_one_root_get_their_own_directories(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"), PYTHONWARNINGS="ignore")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gan_lightning", "fit", *DIGITS_TINY, *tiny_args(tmp_path, max_steps=n)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (3, 4)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:]
    versions = sorted((tmp_path / "lightning_logs").iterdir())
    assert [v.name for v in versions] == ["version_0", "version_1"]
    seen = set()
    for v in versions:
        max_steps = int(
            next(ln for ln in (v / "config.yaml").read_text().splitlines() if "max_steps" in ln).split(":")[1]
        )
        assert read_checkpoint(v / "checkpoints/last.ckpt")["global_step"] == max_steps
        seen.add(max_steps)
    assert seen == {3, 4}


@pytest.mark.parametrize("logger", [None, "tensorboard"])
def test_a_slurm_job_logs_to_its_job_id_and_claims_nothing(tmp_path, monkeypatch, logger):
    """A requeued job must find its own directory again: version_<job id>, as Lightning's default."""
    from jsonargparse import Namespace

    from gan_lightning import rundir
    from gan_lightning.cli import _claim_run_dir

    monkeypatch.setenv("SLURM_JOB_ID", "4321")
    monkeypatch.setenv("SLURM_JOB_NAME", "gan")
    cfg = Namespace(default_root_dir=str(tmp_path), logger=None)
    if logger:
        cfg.logger = Namespace(
            class_path="lightning.pytorch.loggers.TensorBoardLogger",
            init_args=Namespace(save_dir=str(tmp_path), name="", version=None),
        )
    _claim_run_dir(cfg)
    assert cfg.logger.init_args.version == 4321
    assert not (tmp_path / "lightning_logs").exists()  # nothing claimed, nothing to release
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # interactive: a fresh claimed version, as Lightning
    cfg = Namespace(default_root_dir=str(tmp_path), logger=None)
    _claim_run_dir(cfg)
    assert cfg.logger.init_args.version == 0 and (tmp_path / "lightning_logs/version_0").is_dir()
    rundir.reset()


# --- 5. image modes -----------------------------------------------------------------------------------
def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    a16 = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode in ("I;16", "I")  # "I" below Pillow 10.3 (16-bit data)
    got = np.asarray(load_image(str(tmp_path / "g16.png"), "L"))
    np.testing.assert_array_equal(got, np.rint(a16 / 257.0).astype(np.uint8))
    assert (got == 255).mean() < 0.01  # PIL's own conversion saturated 97 % of such pixels

    Image.fromarray(a16.astype(np.int32)).save(tmp_path / "i.tiff")
    assert Image.open(tmp_path / "i.tiff").mode == "I"
    np.testing.assert_array_equal(np.asarray(load_image(str(tmp_path / "i.tiff"), "L")), got)

    f = (a16 / 65535.0).astype(np.float32)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tiff")
    rgb = np.asarray(load_image(str(tmp_path / "f.tiff"), "RGB"))
    np.testing.assert_array_equal(rgb[..., 1], np.rint(f.astype(np.float64) * 255).astype(np.uint8))


def test_out_of_range_float_and_wide_integer_images_are_refused(tmp_path):
    Image.fromarray(np.full((8, 8), 3.5, np.float32), mode="F").save(tmp_path / "f.tiff")
    with pytest.raises(DataError, match=r"f.tiff.*outside \[0, 1\]"):
        load_image(str(tmp_path / "f.tiff"), "L")
    Image.fromarray(np.full((8, 8), 70000, np.int32)).save(tmp_path / "i.tiff")
    with pytest.raises(DataError, match="i.tiff.*16-bit range"):
        load_image(str(tmp_path / "i.tiff"), "L")


def test_transparent_la_and_palette_images_composite_onto_white(tmp_path):
    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 0], la[:2, :, 1] = 10, 255  # top half opaque dark, bottom half transparent
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    got = np.asarray(load_image(str(tmp_path / "la.png"), "L"))
    assert (got[:2] == 10).all() and (got[2:] == 255).all()
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png")
    rgb = np.asarray(load_image(str(tmp_path / "p.png"), "RGB"))
    assert tuple(rgb[0, 0]) == (200, 0, 0) and (rgb.reshape(-1, 3)[1:] == 255).all()


# --- 6, 8, 9. bad input: one line, exit 2, no new or changed file --------------------------------------
def _readonly(tmp_path: Path) -> Path:
    ro = tmp_path / "ro"
    if os.geteuid() != 0 or not _mount_tmpfs(ro, "1m", "ro"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    return ro


BAD_FIT = {
    "negative learning rate": (
        ["--model.g_optimizer", "torch.optim.Adam", "--model.g_optimizer.init_args.lr", "-1"],
        "model.g_optimizer: Invalid learning rate: -1",
    ),
    "abbreviated flag": (["--trainer.max_step", "10"], "--trainer.max_step"),
    "missing checkpoint": (
        ["--ckpt_path", "/nonexistent/last.ckpt"],
        "/nonexistent/last.ckpt does not exist",
    ),
    "missing warm start": (
        ["--init_from", "/nonexistent/last.ckpt"],
        "/nonexistent/last.ckpt does not exist",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_FIT), ids=str)
def test_bad_fit_input_gives_one_line_and_creates_no_run_directory(tmp_path, case):
    args, message = BAD_FIT[case]
    root = tmp_path / "root"
    line = one_error_line(run_cli_subprocess(["fit", *DIGITS_TINY, *tiny_args(root), *args]))
    assert message in line, line
    assert not root.exists() or not list(root.rglob("*.*")), list(root.rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("content", ["empty", "truncated", "random", "bit_flipped"])
def test_fit_and_sample_with_a_damaged_checkpoint_give_one_line(trained, tmp_path, content):
    good = (trained / "checkpoints/last.ckpt").read_bytes()
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(damaged_copies(good, content)[-1])
    before = snapshot(tmp_path)
    fit = run_cli_subprocess(
        ["fit", *DIGITS_TINY, *tiny_args(tmp_path / "run", max_steps=5), "--ckpt_path", str(bad)]
    )
    assert "bad.ckpt" in one_error_line(fit)
    sample = run_cli_subprocess(["sample", "--ckpt_path", str(bad), "--out", str(tmp_path / "s")])
    assert "bad.ckpt" in one_error_line(sample)
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_sample_and_evaluate_refuse_outputs_they_cannot_write_before_working(trained, tmp_path):
    existing = tmp_path / "a_file"
    existing.write_text("keep me")
    ckpt = str(trained / "checkpoints/last.ckpt")
    line = one_error_line(run_cli_subprocess(["sample", "--ckpt_path", ckpt, "--out", str(existing)]))
    assert "is an existing file" in line and existing.read_text() == "keep me"
    ro = _readonly(tmp_path)
    try:
        line = one_error_line(run_cli_subprocess(["sample", "--ckpt_path", ckpt, "--out", str(ro / "s")]))
        assert "not a writable directory" in line
        t0 = time.monotonic()
        res = run_cli_subprocess(
            ["evaluate", "--ckpt_path", ckpt, "--out", str(ro / "m.json"), "--metrics.num_fake", "200"]
        )
        assert "not a writable directory" in one_error_line(res)
        assert time.monotonic() - t0 < 60  # it did not evaluate first (a generous bound, not a benchmark)
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


@pytest.mark.slow
def test_a_run_that_fails_its_checks_leaves_no_directory_but_a_diverged_one_keeps_its_own(tmp_path):
    (tmp_path / "root/lightning_logs/version_0").mkdir(parents=True)
    (tmp_path / "root/lightning_logs/version_0/keep.txt").write_text("another run's file")
    before = snapshot(tmp_path)
    res = run_cli_subprocess(
        [
            "fit",
            *DIGITS_TINY,
            *tiny_args(tmp_path / "root"),
            "--config",
            "configs/data/image_folder.yaml",
            "--data.init_args.root",
            "/nonexistent/imgs",
        ]
    )
    assert "/nonexistent/imgs" in one_error_line(res)
    assert snapshot(tmp_path) == before  # no version_1, the other run untouched


# --- 7. warm start --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_init_from_starts_a_new_run_from_the_checkpoints_weights_with_a_new_config(trained, tmp_path):
    ckpt = trained / "checkpoints/last.ckpt"
    out = tmp_path / "initial.pt"
    res = run_cli_subprocess(
        [
            "fit",
            *DIGITS_TINY,
            *tiny_args(tmp_path / "run", max_steps=1),
            "--init_from",
            str(ckpt),
            "--model.d_optimizer",
            "torch.optim.Adam",
            "--model.d_optimizer.init_args.lr",
            "1e-5",
            "--trainer.callbacks+=support.SaveInitialState",
            f"--trainer.callbacks.path={out}",
        ]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    initial = torch.load(out, weights_only=True)
    saved = read_checkpoint(ckpt)["state_dict"]
    nets = [k for k in saved if k.startswith(("generator.", "discriminator.", "generator_ema."))]
    assert nets and all(torch.equal(initial[k], saved[k]) for k in nets)
    new = read_checkpoint(tmp_path / "run/lightning_logs/version_0/checkpoints/last.ckpt")
    assert new["global_step"] == 1  # a new run: its own step count and optimizer state
    assert new["optimizer_states"][1]["param_groups"][0]["lr"] == 1e-5


def test_a_first_release_checkpoint_resumes_bitwise_like_its_current_twin(trained, tmp_path):
    """Format 1 (the first landed release): DCGAN D's final linear was ``body.6`` and there were no
    ``fixed_labels``. Renamed back by position, it resumes into exactly the run the same checkpoint in
    today's format resumes into."""
    ckpt = read_checkpoint(trained / "checkpoints/last.ckpt")
    state = ckpt["state_dict"]
    # body: conv, lrelu, conv, bn, lrelu, then (format 1) Flatten 5 and Linear 6
    assert max(int(k.split(".")[2]) for k in state if k.startswith("discriminator.body.")) == 3
    for leaf in ("weight", "bias"):
        state[f"discriminator.body.6.{leaf}"] = state.pop(f"discriminator.head.linear.{leaf}")
    del state["fixed_labels"], ckpt["gan_lightning_format"]
    old = tmp_path / "format1.ckpt"
    torch.save(ckpt, old)
    ends = []
    for name, source in (("now", trained / "checkpoints/last.ckpt"), ("old", old)):
        run_cli(["fit", *DIGITS_TINY, *tiny_args(tmp_path / name, max_steps=5), "--ckpt_path", str(source)])
        ends.append(read_checkpoint(tmp_path / name / "lightning_logs/version_0/checkpoints/last.ckpt"))
    assert ends[1]["global_step"] == 5 and ends[1]["gan_lightning_format"] == 2
    assert ends[0]["state_dict"].keys() == ends[1]["state_dict"].keys()
    assert all(torch.equal(v, ends[1]["state_dict"][k]) for k, v in ends[0]["state_dict"].items())
    res = run_cli_subprocess(["sample", "--ckpt_path", str(old), "--out", str(tmp_path / "s")])
    assert res.returncode == 0, res.stderr[-2000:]


# --- 10. a log users can trust ------------------------------------------------------------------------
@pytest.mark.slow
def test_resume_prints_no_false_dataloader_warning_and_fit_ends_with_a_summary_line(trained, tmp_path):
    ckpt = trained / "checkpoints/step=0000003.ckpt"
    res = run_cli_subprocess(
        ["fit", *DIGITS_TINY, *tiny_args(tmp_path, max_steps=5), "--ckpt_path", str(ckpt)],
        env={"PYTHONWARNINGS": "default"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "not resumable" not in res.stderr + res.stdout
    summary = [ln for ln in (res.stderr + res.stdout).splitlines() if ln.startswith("done:")]
    assert len(summary) == 1 and "version_0" in summary[0] and "last.ckpt" in summary[0], summary
