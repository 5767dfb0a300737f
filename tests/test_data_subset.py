"""EmbeddedDigits(num_train=N): a limited-data train split that is a prefix of the full one."""

from __future__ import annotations

import pytest
import torch

from gan_lightning.data import EmbeddedDigits
from gan_lightning.errors import ConfigError


def test_num_train_keeps_the_first_train_digits_and_leaves_the_held_out_split_alone():
    full, few = EmbeddedDigits(seed=0), EmbeddedDigits(seed=0, num_train=450)
    full_train, few_train = full.build("train"), few.build("train")
    assert len(full_train) == 4500 and len(few_train) == 450
    assert torch.equal(few_train.data, full_train.data[:450])
    assert torch.equal(few_train.labels, full_train.labels[:450])
    assert torch.equal(few.build("val").data, full.build("val").data)
    assert len(few_train.labels.unique()) == 10  # the split is shuffled, so every class is in the prefix


@pytest.mark.parametrize("num_train", [0, 4501])
def test_num_train_outside_the_train_split_is_refused(num_train):
    with pytest.raises(ConfigError, match="num_train must be in 1..4500"):
        EmbeddedDigits(num_train=num_train)
