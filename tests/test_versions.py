"""The private members of Lightning, jsonargparse and torch-fidelity that gan_lightning still uses, one test
each: an upgrade that removes or renames one fails here, by name, before it reaches a user. Each is
pinned below the next minor release in pyproject.toml; raise a pin only with this file passing.

Also here: the public replacements of members once used (the hpc checkpoint name, GStepCheckpoint's own
triggers) behave as the privates did, and the lowest CI job can pin every declared dependency.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import warnings
from datetime import timedelta
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import DIGITS_TINY, ROOT, tiny_args
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

# --- lightning: ModelCheckpoint's saving (GStepCheckpoint) -----------------------------------------------


def test_model_checkpoint_save_topk_checkpoint_takes_the_trainer_and_the_candidates():
    params = list(inspect.signature(ModelCheckpoint._save_topk_checkpoint).parameters)
    assert params == ["self", "trainer", "monitor_candidates"]


def test_model_checkpoint_save_last_checkpoint_takes_the_trainer_and_the_candidates():
    params = list(inspect.signature(ModelCheckpoint._save_last_checkpoint).parameters)
    assert params == ["self", "trainer", "monitor_candidates"]


def test_model_checkpoint_records_the_step_of_its_last_save_in_last_global_step_saved(tmp_path):
    trainer, ckpt = _fit(tmp_path, steps=3, every_n_train_steps=2)
    assert ckpt._last_global_step_saved == 3  # the save at step 2, then last.ckpt at the end (step 3)
    assert trainer.global_step == 3


class _Tiny(L.LightningModule):
    """One optimizer step per batch in manual optimization: global_step counts batches, as G steps do."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        loss = self.net(batch[0]).pow(2).mean()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.log("train_loss", loss)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.net(batch[0]).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(64, 2)), batch_size=4)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)


def _fit(tmp_path: Path, steps: int, val_every: int | None = None, **checkpoint: object):
    from gan_lightning.callbacks import GStepCheckpoint

    ckpt = GStepCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", save_last=True, **checkpoint)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        callbacks=[ckpt],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1 if val_every else 0,
        val_check_interval=val_every,
        default_root_dir=tmp_path,
    )
    with _no_pre_optimization_warning():
        trainer.fit(_Tiny())
    return trainer, ckpt


@contextlib.contextmanager
def _no_pre_optimization_warning():
    """Lightning's manual-optimization branch warns "no pre-optimization state" on every save:
    GStepCheckpoint replaces that branch, so the warning must never appear."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield
    messages = [str(w.message) for w in seen]
    assert not [m for m in messages if "pre-optimization" in m], messages


def _names(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "ckpt").iterdir())


def test_gstep_checkpoint_saves_every_n_steps_and_last_at_the_end(tmp_path):
    _fit(tmp_path, steps=5, every_n_train_steps=2)
    assert _names(tmp_path) == ["last.ckpt", "step=4.ckpt"]  # save_top_k=1 keeps the newest
    assert torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)["global_step"] == 5


def test_gstep_checkpoint_applies_train_time_interval_in_manual_optimization(tmp_path):
    """Lightning #21699: ModelCheckpoint's manual branch ignores the interval; ours saves on it."""
    _, ckpt = _fit(tmp_path, steps=3, train_time_interval=timedelta(seconds=0))
    assert _names(tmp_path) == ["last.ckpt", "step=3.ckpt"]
    assert ckpt.train_time_interval == timedelta(seconds=0) and ckpt.every_n_train_steps == 0


def test_gstep_checkpoint_waits_for_validation_when_it_monitors_a_validation_value(tmp_path):
    _, ckpt = _fit(tmp_path, steps=4, val_every=4, every_n_train_steps=2, monitor="val_loss", save_top_k=2)
    # due at steps 2 and 4 with no val_loss yet: deferred to the validation at step 4, which saves once
    assert [Path(p).name for p in ckpt.best_k_models] == ["step=4.ckpt"]
    assert _names(tmp_path) == ["last.ckpt", "step=4.ckpt"]


def test_gstep_checkpoint_keeps_model_checkpoints_cli_arguments():
    """The two arguments GStepCheckpoint keeps itself, and every other one, stay ModelCheckpoint's."""
    from gan_lightning.cli import GANCLI

    args = ["--checkpoint.every_n_train_steps", "null", "--checkpoint.train_time_interval", "0:00:30"]
    cli = GANCLI(args=[*DIGITS_TINY, *args], run=False)
    ckpt = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "GStepCheckpoint")
    assert ckpt.train_time_interval == timedelta(seconds=30) and ckpt.every_n_train_steps == 0
    ours = {"every_n_train_steps", "train_time_interval"}
    theirs = set(inspect.signature(ModelCheckpoint.__init__).parameters) - {"self"}
    assert ours <= theirs
    assert theirs <= set(cli.config.checkpoint.keys())


# --- lightning: the hpc checkpoint name (SLURMRequeue) -------------------------------------------------


@pytest.mark.parametrize("present", [[], ["hpc_ckpt_1.ckpt"], ["hpc_ckpt_1.ckpt", "hpc_ckpt_3.ckpt"]])
def test_hpc_save_path_names_the_file_as_lightnings_own_requeue_does(tmp_path, present):
    from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector

    from gan_lightning.callbacks import hpc_save_path

    for name in present:
        (tmp_path / name).write_bytes(b"")
    assert hpc_save_path(tmp_path) == _CheckpointConnector.hpc_save_path(tmp_path)
    assert hpc_save_path(tmp_path / "missing") == str(tmp_path / "missing" / "hpc_ckpt_1.ckpt")


def test_a_restart_resumes_from_the_highest_hpc_checkpoint_hpc_save_path_numbered(tmp_path):
    """The other half of the contract: with no ckpt_path under SLURM, Lightning loads the highest N."""
    from gan_lightning.callbacks import hpc_save_path

    for _ in range(2):
        Path(hpc_save_path(tmp_path)).write_bytes(b"")
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, accelerator="cpu")
    assert trainer._checkpoint_connector._hpc_resume_path == str(tmp_path / "hpc_ckpt_2.ckpt")


# --- jsonargparse: its error text (cli._one_line) ------------------------------------------------------


def _parse_error(*args: str) -> BaseException:
    from gan_lightning.cli import GANCLI

    with pytest.raises((Exception, SystemExit)) as info:  # noqa: B017 (jsonargparse raises several types)
        GANCLI(args=[*DIGITS_TINY, *args], run=False)
    return info.value


def test_jsonargparse_names_the_nested_key_and_the_reason_of_a_bad_value():
    from gan_lightning.cli import _NOISE, _one_line

    err = _parse_error("--data.init_args.batch_size", "abc")
    assert _one_line(err) == "data.batch_size: Expected a <class 'int'>"
    # every line _NOISE drops is still jsonargparse's wording (a reworded one would become the reason)
    lines = [ln.strip().lstrip("- ") for ln in str(err).splitlines()]
    for prefix in (
        "Does not validate",
        "Subtypes:",
        "Errors:",
        "Given value",
        "Problem with given class_path",
    ):
        assert any(_NOISE.match(ln) and ln.startswith(prefix) for ln in lines), (prefix, str(err))


def test_jsonargparse_names_an_unknown_option_of_a_nested_class():
    from gan_lightning.cli import _one_line

    err = _parse_error("--model.generator.init_args.widht", "3")
    assert _one_line(err) == "model.generator: Option 'widht' is not accepted"


def test_an_error_raised_in_a_class_init_reaches_the_user_as_its_own_line():
    """jsonargparse re-raises it as a ValueError over the union's subtypes (chained to it in some
    versions, only in its text in others): either way the user gets our message, and a ValueError that
    jsonargparse did not raise keeps its traceback."""
    from gan_lightning.cli import _class_init_error

    err = _parse_error("--data.init_args.image_size", "30")
    assert isinstance(err, ValueError)
    assert _class_init_error(err).startswith("EmbeddedDigits.image_size must be 28 or 32, got 30")
    assert _class_init_error(ValueError("a bug")) is None


# --- torch-fidelity: InceptionV3's internals (metrics.inception) ---------------------------------------


def test_torch_fidelity_inception_has_the_layers_our_forward_runs_by_name(tmp_path):
    from gan_lightning.metrics.inception import _LAYERS, save_random_weights
    from gan_lightning.metrics.inception_weights import fidelity_net

    net = fidelity_net(save_random_weights(tmp_path / "random.pth"))
    missing = [name for name in (*_LAYERS, "fc") if not isinstance(getattr(net, name, None), nn.Module)]
    assert not missing, f"torch-fidelity's FeatureExtractorInceptionV3 lost {missing}"


def test_torch_fidelity_still_loads_its_weights_through_load_state_dict_from_url():
    """save_random_weights patches this module attribute to build the network with no download."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    assert callable(tf_inception.load_state_dict_from_url)


def test_torch_fidelity_has_the_tf1_resize():
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    out = interpolate_bilinear_2d_like_tensorflow1x(
        torch.rand(1, 3, 8, 8), size=(299, 299), align_corners=False
    )
    assert out.shape == (1, 3, 299, 299)


# --- pyproject.toml: the bounds the lowest CI job pins --------------------------------------------------


def test_every_dependency_has_a_lower_bound_and_each_used_private_an_upper_one():
    sys.path.insert(0, str(ROOT / "ci"))
    try:
        from lowest_constraints import lower_bounds
    finally:
        sys.path.remove(str(ROOT / "ci"))
    pins = lower_bounds()
    assert {"torch", "lightning", "jsonargparse", "torch-fidelity", "torchmetrics"} <= set(pins)
    text = (ROOT / "pyproject.toml").read_text()
    for name in ("lightning", "jsonargparse", "torch-fidelity"):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f'"{name}'))
        assert ",<" in line, f"{name} is used through private members: give it an upper bound ({line})"


# --- lightning: ModelCheckpoint.state_key, read for every hook call (KeyedCheckpoint caches it) ---------


def test_keyed_checkpoint_saves_under_model_checkpoints_own_key_computed_once(tmp_path):
    """The cached key is the string ModelCheckpoint would compute, so checkpoints keep their callback
    keys (and resume across versions); once set up it is one object, not rebuilt on each read."""
    _, ckpt = _fit(tmp_path, steps=2, every_n_train_steps=2)
    saved = torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)["callbacks"]
    assert ckpt.state_key == ModelCheckpoint.state_key.fget(ckpt)
    assert ckpt.state_key in saved
    assert ckpt.state_key is ckpt.state_key  # cached: ModelCheckpoint's property builds a new string


def test_best_checkpoint_key_follows_the_monitor_it_picks_in_setup():
    from gan_lightning.cli import GANCLI

    cli = GANCLI(args=[*DIGITS_TINY, "--metrics.metrics", "[fid]"], run=False)
    best = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "BestCheckpoint")
    before = best.state_key  # no monitor yet: recomputed on each read until setup
    best.setup(cli.trainer, cli.model, "fit")
    assert best.monitor is not None and best.monitor in best.state_key and best.state_key != before
    assert best.state_key == ModelCheckpoint.state_key.fget(best)


def test_lightning_defaults_to_the_pass_through_profiler_that_gancli_replaces():
    """GANCLI swaps the default profiler for NullProfiler only when it is Lightning's PassThroughProfiler;
    a profiler the user asks for (--trainer.profiler simple) is kept."""
    from lightning.pytorch.profilers import PassThroughProfiler, SimpleProfiler

    from gan_lightning.cli import GANCLI, NullProfiler

    assert type(L.Trainer(logger=False).profiler) is PassThroughProfiler
    assert type(GANCLI(args=DIGITS_TINY, run=False).trainer.profiler) is NullProfiler
    chosen = GANCLI(args=[*DIGITS_TINY, "--trainer.profiler", "simple"], run=False).trainer.profiler
    assert type(chosen) is SimpleProfiler
    with NullProfiler().profile("step") as name:
        assert name == "step"


# --- lightning: the module's _current_fx_name, set around every hook call (GANModule's fast setattr) -----


def test_lightning_sets_current_fx_name_around_hooks_and_ganmodule_skips_modules_registry(
    tmp_path, monkeypatch
):
    """Lightning still names the running hook in ``_current_fx_name`` (a rename would leave GANModule's
    fast path dead, silently: this fails instead), and GANModule stores it without going through
    nn.Module's ``__setattr__``, in the instance dict where that would have put it."""
    from gan_lightning.cli import GANCLI

    seen, through_module = [], [0]

    class Probe(L.Callback):
        def on_before_backward(self, trainer, pl_module, loss):
            seen.append(pl_module._current_fx_name)

    module_setattr = nn.Module.__setattr__

    def counting(self, name, value):
        through_module[0] += name == "_current_fx_name"
        module_setattr(self, name, value)

    off = {"--samples.every_n_steps": "0", "--checkpoint.every_n_train_steps": "0"}
    toy = ["--config", str(ROOT / "configs/toy/grid.yaml")]  # first: a later --config resets max_steps
    cli = GANCLI(args=[*toy, *tiny_args(tmp_path, max_steps=2, **off)], run=False)
    cli.trainer.callbacks.append(Probe())
    monkeypatch.setattr(nn.Module, "__setattr__", counting)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert seen and set(seen) == {"on_before_backward"}
    assert through_module[0] == 0
    assert "_current_fx_name" in vars(cli.model)
    cli.model.probe_attr = nn.Linear(1, 1)  # every other name still registers as nn.Module's does
    assert "probe_attr" in cli.model._modules
