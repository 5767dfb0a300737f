"""The update loop hands its values to Lightning once per logged G step (docs/overhead.md): every value
still reaches the logger, at the steps it writes, with that step's value."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch
from conftest import DIGITS_TINY, ROOT, tiny_args

from gan_lightning.cli import GANCLI

KEYS = ["loss/D/main", "loss/G/main", "scores/real", "scores/fake", "loss/D/gradientpenalty"]


class KeepStepValues(L.Callback):
    """What the module kept at the end of every G step, by G step number."""

    def __init__(self) -> None:
        self.by_step: dict[int, dict[str, float]] = {}

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.by_step[trainer.global_step] = {
            k: float(v) for k, v in pl_module.step_values.items() if k in KEYS
        }


@pytest.mark.slow
@pytest.mark.parametrize("order", ["d_first", "simultaneous"])
def test_every_value_reaches_the_logger_at_its_steps_with_that_steps_value(tmp_path, order):
    args = [
        *DIGITS_TINY,
        *tiny_args(tmp_path, max_steps=7),
        "--config",
        str(ROOT / "configs/regularizer/gp1.yaml"),
    ]
    args += ["--trainer.log_every_n_steps", "3", "--model.order", order]
    args += [
        "--trainer.logger",
        "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir",
        str(tmp_path),
    ]
    keep = KeepStepValues()
    cli = GANCLI(args=args, run=False, trainer_defaults={"callbacks": [keep]})
    cli.trainer.fit(cli.model, cli.datamodule)
    with open(tmp_path / "lightning_logs/version_0/metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("loss/G/main")]
    # Lightning's CSV "step" is the number of G steps before the logged one: G steps 3 and 6 are written
    assert [int(r["step"]) for r in rows] == [2, 5]
    for row in rows:
        kept = keep.by_step[int(row["step"]) + 1]
        assert sorted(kept) == sorted(KEYS)
        for key in KEYS:
            assert float(row[key]) == pytest.approx(kept[key], rel=1e-6), key
    assert keep.by_step[3] != keep.by_step[2]  # the values are the step's own, not a stale copy


def test_record_keeps_the_last_value_of_a_step_detached():
    from gan_lightning.module import GANModule
    from gan_lightning.nets import MLPDiscriminator, MLPGenerator

    module = GANModule(MLPGenerator, MLPDiscriminator, data_shape=(2,))
    x = torch.ones((), requires_grad=True)
    module.record("loss/D/main", x * 2)
    module.record("loss/D/main", x * 3)  # a second D step in the same G step
    assert module.step_values["loss/D/main"].item() == 3.0
    assert not module.step_values["loss/D/main"].requires_grad
