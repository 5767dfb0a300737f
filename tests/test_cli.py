"""The command line, end to end: configs, fit, sample, resume, validate/test and the error messages."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DIGITS_TINY, ROOT, one_error_line, run_cli, run_cli_subprocess, tiny_args

CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml"))
FULL = [p for p in CONFIGS if p.parent.name in ("configs", "toy")]
EXPERIMENTS = [p for p in CONFIGS if p.parent.name == "experiment"]
FRAGMENTS = [p for p in CONFIGS if p not in FULL and p not in EXPERIMENTS]


def documented_chain(experiment: Path) -> list[str]:
    """The flags an experiment's header comment tells users to run it with: its ``--config`` chain
    (``this`` being the experiment) and any flags written after it."""
    lines = experiment.read_text().splitlines()
    header = " ".join(line.lstrip("# ") for line in lines if line.startswith("#"))
    match = re.search(r"--config \S+(?: --[\w.]+ \S+)*", header)
    assert match, f"{experiment.name}: the header names no --config chain to run it with"
    tokens = match.group(0).split()
    flags, values = tokens[::2], [v.rstrip(".,;") for v in tokens[1::2]]
    values = [
        str(experiment if v == "this" else ROOT / v) if f == "--config" else v for f, v in zip(flags, values)
    ]
    return [x for pair in zip(flags, values) for x in pair]


def _ckpts(root: Path) -> list[Path]:
    return sorted(root.rglob("*.ckpt"))


@pytest.mark.parametrize("config", FULL, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_full_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_fragment_composes_with_the_quickstart(fragment, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(
            [
                "fit",
                "--config",
                str(ROOT / "configs/quickstart.yaml"),
                "--config",
                str(fragment),
                "--print_config",
            ]
        )
    assert exit_.value.code in (0, None)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_trains_with_the_chain_its_header_documents(experiment, tmp_path):
    """An experiment is a fragment on top of a base: the command in its header comment must run as written
    (a step of training, a checkpoint, a sample grid), so a renamed base or a clashing key shows here."""
    chain = documented_chain(experiment)
    assert str(experiment) in chain and len(chain) >= 4  # a base, then the experiment itself
    small = tiny_args(
        tmp_path, max_steps=3, **{"--trainer.limit_val_batches": "0", "--data.init_args.batch_size": "16"}
    )
    run_cli(["fit", *chain, *small])
    assert _ckpts(tmp_path), f"{experiment.name}: no checkpoint written"


@pytest.mark.slow
def test_quickstart_runs_end_to_end_and_sample_writes_files(tmp_path):
    run = run_cli_subprocess(["fit", *DIGITS_TINY, *tiny_args(tmp_path / "run", max_steps=4)])
    assert run.returncode == 0, run.stderr[-3000:]
    version = tmp_path / "run" / "lightning_logs" / "version_0"
    assert (version / "config.yaml").is_file()
    assert sorted(p.name for p in (version / "samples").iterdir()) == ["step_0000003.png", "step_0000004.png"]
    # checkpoints are named by generator step; last.ckpt also covers the step after the last periodic save
    assert sorted(p.name for p in (version / "checkpoints").iterdir()) == ["last.ckpt", "step=0000003.ckpt"]
    ckpt = torch.load(version / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["global_step"] == 4

    out = tmp_path / "samples"
    res = run_cli_subprocess(
        [
            "sample",
            "--ckpt_path",
            str(version / "checkpoints/last.ckpt"),
            "--num_samples",
            "10",
            "--out",
            str(out),
            "--seed",
            "3",
        ]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    x = np.load(out / "samples.npy")
    assert x.shape == (10, 1, 28, 28) and x.dtype == np.float32
    assert x.min() >= -1 and x.max() <= 1
    assert (out / "grid.png").stat().st_size > 0


def _fit_tiny(root: Path, max_steps: int, extra: list[str] = (), cfg: list[str] = DIGITS_TINY) -> Path:
    run_cli(["fit", *cfg, *tiny_args(root, max_steps=max_steps), *extra])
    return root / "lightning_logs"


def test_sample_uses_the_ema_generator_and_is_seeded(tmp_path):
    from gan_lightning.sample import generate, load_module, sample

    logs = _fit_tiny(tmp_path / "run", 3)
    ckpt = logs / "version_0" / "checkpoints" / "last.ckpt"
    module = load_module(ckpt)
    assert module.generator_ema is not None and module.sampling_generator is module.generator_ema.module
    a, b = generate(module, 5, seed=1), generate(module, 5, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, generate(module, 5, seed=2))
    z = torch.randn(5, module.latent_dim, generator=torch.Generator().manual_seed(1))
    module.generator_ema.module.eval()
    assert torch.allclose(a, module.generator_ema.module(z), atol=1e-6)
    assert not torch.allclose(a, module.generator.eval()(z), atol=1e-4)
    out = sample(str(ckpt), num_samples=3, out=str(tmp_path / "s"))
    assert np.load(out / "samples.npy").shape == (3, 1, 28, 28)


def test_sample_on_2d_data_writes_points(tmp_path):
    cfg = ["--config", str(ROOT / "configs/toy/ring.yaml"), "--data.init_args.num_samples", "2000"]
    logs = _fit_tiny(tmp_path / "run", 3, cfg=cfg)
    from gan_lightning.sample import sample

    out = sample(str(logs / "version_0/checkpoints/last.ckpt"), num_samples=7, out=str(tmp_path / "s"))
    assert np.load(out / "samples.npy").shape == (7, 2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra", [[], ["--config", str(ROOT / "configs/regularizer/gp1.yaml")]], ids=["plain", "gp"]
)
def test_resumed_run_continues_the_same_run(tmp_path, extra):
    """Stop at G step 3, resume to 6: same weights, optimizer states and EMA as one run of 6 steps (also
    with a random penalty, whose interpolation draws come from the checkpointed noise RNG)."""
    full = _fit_tiny(tmp_path / "full", 6, extra)
    half = _fit_tiny(tmp_path / "half", 3, extra)
    ckpt = ["--ckpt_path", str(half / "version_0/checkpoints/last.ckpt")]
    resumed = _fit_tiny(tmp_path / "half", 6, [*extra, *ckpt])
    a = torch.load(full / "version_0/checkpoints/last.ckpt", weights_only=False)
    b = torch.load(resumed / "version_1/checkpoints/last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 6
    assert int(b["state_dict"]["d_steps_done"]) == 6
    for k, v in a["state_dict"].items():
        assert torch.allclose(v.float(), b["state_dict"][k].float(), atol=1e-6), k
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"]):
        for s_a, s_b in zip(opt_a["state"].values(), opt_b["state"].values()):
            assert torch.allclose(s_a["exp_avg"], s_b["exp_avg"], atol=1e-6)


def test_seeded_runs_are_identical(tmp_path):
    a = _fit_tiny(tmp_path / "a", 3) / "version_0/checkpoints/last.ckpt"
    b = _fit_tiny(tmp_path / "b", 3) / "version_0/checkpoints/last.ckpt"
    sa = torch.load(a, weights_only=False)["state_dict"]
    sb = torch.load(b, weights_only=False)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_validate_and_test_subcommands_run_on_a_checkpoint(tmp_path):
    logs = _fit_tiny(tmp_path / "run", 3)
    ckpt = str(logs / "version_0/checkpoints/last.ckpt")
    for sub in ("validate", "test"):
        run_cli([sub, *DIGITS_TINY, *tiny_args(tmp_path / sub), "--ckpt_path", ckpt])
    metrics = list((tmp_path / "test").rglob("events.out.tfevents*"))
    assert metrics


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--model.generator.init_args.widht", "3"],
            "error: model.generator: Option 'widht' is not accepted",
        ),
        (["--trainer.max_stepz", "3"], "error: unrecognized arguments: --trainer.max_stepz"),
        (["--data.init_args.batch_size", "abc"], "error: data.batch_size: Expected a <class 'int'>"),
        (["--data.init_args.image_size", "30"], "error: EmbeddedDigits.image_size must be 28 or 32"),
        (
            [
                "--config",
                "configs/data/image_folder.yaml",
                "--data.init_args.root",
                "/nonexistent/imgs",
                "--data.init_args.image_size",
                "30",
            ],
            "error: DCGAN cannot produce 30x30",
        ),
        (
            ["--config", "configs/data/image_folder.yaml", "--data.init_args.root", "/nonexistent/imgs"],
            "/nonexistent/imgs",
        ),
        (
            ["--config", "configs/data/cifar10.yaml", "--data.init_args.root", "/nonexistent/data"],
            "/nonexistent/data",
        ),
    ],
)
def test_bad_input_gets_one_clear_line_and_no_traceback(tmp_path, args, message):
    res = run_cli_subprocess(["fit", *DIGITS_TINY, *tiny_args(tmp_path), *args])
    assert message in one_error_line(res)


def test_missing_checkpoint_for_sample_is_a_clear_error(tmp_path):
    res = run_cli_subprocess(["sample", "--ckpt_path", str(tmp_path / "nope.ckpt")])
    assert res.returncode == 2 and "error: checkpoint" in res.stderr and "Traceback" not in res.stderr


def test_a_diverged_run_reports_it_and_keeps_its_checkpoints(tmp_path):
    res = run_cli_subprocess(
        [
            "fit",
            *DIGITS_TINY,
            *tiny_args(tmp_path / "run", max_steps=6),
            "--model.loss",
            "support.NaNAfterCalls",
            "--model.loss.init_args.calls",
            "4",
        ]
    )
    assert "D loss became nan at generator step 4" in one_error_line(res)
    ckpts = tmp_path / "run/lightning_logs/version_0/checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "step=0000003.ckpt"]
    last = torch.load(ckpts / "last.ckpt", weights_only=False)
    assert last["global_step"] == 3  # the good state, not the diverged one
    assert all(torch.isfinite(v.float()).all() for v in last["state_dict"].values())


def test_resuming_with_a_changed_model_config_is_refused(tmp_path):
    logs = _fit_tiny(tmp_path / "run", 3)
    last = logs / "version_0/checkpoints/last.ckpt"
    res = run_cli_subprocess(
        [
            "fit",
            *DIGITS_TINY,
            *tiny_args(tmp_path / "run", max_steps=6),
            "--ckpt_path",
            str(last),
            "--config",
            "configs/loss/hinge.yaml",
        ]
    )
    assert res.returncode == 2
    assert "different model config: model.loss.class_path" in res.stderr and "Traceback" not in res.stderr
    assert len(list((logs).iterdir())) == 1  # no new run directory was started


def test_wandb_logger_runs_offline_without_an_api_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    _fit_tiny(
        tmp_path / "run",
        3,
        [
            "--config",
            str(ROOT / "configs/logger/wandb.yaml"),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path / "wb"),
        ],
    )
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
