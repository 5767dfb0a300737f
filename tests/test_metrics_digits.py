"""The offline digit classifier: its accuracy, its determinism, DigitFeatures' shapes and input handling,
and the (Stacked-)MNIST mode counts it gives through class_coverage."""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from gan_lightning.data.base import to_unit_range
from gan_lightning.data.digits import load_embedded_digits, split_indices
from gan_lightning.errors import ConfigError
from gan_lightning.metrics.digits import DigitFeatures, main, train_digit_classifier
from gan_lightning.metrics.features import class_coverage


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One full training run, into an empty tmp cache, the way a first metrics run triggers it."""
    cache = tmp_path_factory.mktemp("cache")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv("GAN_LIGHTNING_CACHE", str(cache))
        digits = DigitFeatures()
    path = cache / "digit_classifier.pt"
    return SimpleNamespace(cache=cache, path=path, message=out.getvalue(), digits=digits)


@pytest.fixture(scope="session")
def stacked(trained):
    return DigitFeatures(str(trained.path), channels=3)


@pytest.fixture(scope="session")
def held_out():
    """The 500 digits the classifier never trained on, as (float images in [-1, 1], labels)."""
    images, labels = load_embedded_digits()
    idx = split_indices(5000, 500, seed=0)["val"]
    return to_unit_range(images[idx]), labels[idx]


def pick(labels: torch.Tensor, triples: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(N, 3) indices of digits to stack for the given digit triples (N, 3): entry (n, c) is a random
    digit whose label is triples[n, c]. ``x[pick(...), 0]`` are the (N, 3, H, W) Stacked-MNIST images."""
    idx = torch.empty_like(triples)
    for d in range(10):
        rows = triples == d
        pool = (labels == d).nonzero().flatten()
        idx[rows] = pool[torch.randint(len(pool), (int(rows.sum()),), generator=g)]
    return idx


def as_triples(labels: torch.Tensor) -> torch.Tensor:
    return torch.stack([labels // 100, labels // 10 % 10, labels % 10], 1)


def predicted(extractor: DigitFeatures, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([extractor(b)[1].argmax(1) for b in x.split(2000)])


# --- the classifier ---------------------------------------------------------------------------------
def test_missing_weights_are_trained_once_into_the_cache_with_a_one_line_notice(trained, monkeypatch):
    assert trained.path.is_file()
    assert trained.message.count("\n") == 1 and str(trained.path) in trained.message
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(trained.cache))
    stamp = trained.path.stat().st_mtime_ns
    again = DigitFeatures()  # found this time: loaded, not retrained
    assert trained.path.stat().st_mtime_ns == stamp and again.name == trained.digits.name
    sha = hashlib.sha1(trained.path.read_bytes()).hexdigest()
    assert again.name.startswith("digit-classifier-") and sha.startswith(
        again.name.removeprefix("digit-classifier-")
    )


def test_classifier_reaches_97_percent_on_the_held_out_digits(trained, held_out):
    x, y = held_out
    accuracy = (predicted(trained.digits, x) == y).double().mean().item()
    assert accuracy >= 0.97
    assert abs(accuracy - trained.digits.val_accuracy) <= 1 / 500  # the recorded figure is this one


def test_training_is_deterministic_and_leaves_the_global_rng_alone(tmp_path):
    rng = torch.random.get_rng_state()
    runs = [
        train_digit_classifier(tmp_path / f"{i}.pt", epochs=1, seed=s, num_train=256)
        for i, s in enumerate([0, 0, 1])
    ]
    assert torch.equal(torch.random.get_rng_state(), rng)
    a, b, c = (torch.load(p, weights_only=True)["state_dict"] for p in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temporary file


def test_script_prints_the_accuracy_and_where_the_weights_went(tmp_path, capsys):
    main(["--out", str(tmp_path / "w.pt"), "--epochs", "1"])
    out = capsys.readouterr().out
    assert "val accuracy" in out and str(tmp_path / "w.pt") in out and (tmp_path / "w.pt").is_file()


# --- DigitFeatures ----------------------------------------------------------------------------------
def test_missing_weights_without_training_are_a_config_error_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(tmp_path))
    with pytest.raises(
        ConfigError, match="digit_classifier.pt not found.*python -m gan_lightning.metrics.digits"
    ):
        DigitFeatures(train_if_missing=False)
    with pytest.raises(ConfigError, match="elsewhere.pt not found"):  # an explicit path is never trained
        DigitFeatures(str(tmp_path / "elsewhere.pt"))
    assert not list(tmp_path.iterdir())


def test_a_file_that_is_not_the_classifier_is_a_config_error(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a DigitClassifier file"):
        DigitFeatures(str(tmp_path / "other.pt"))


@pytest.mark.parametrize("damage", ["truncated", "bit_flipped"])
def test_a_damaged_classifier_file_is_one_config_error(trained, tmp_path, damage):
    good = bytearray(trained.path.read_bytes())
    bad = good[: len(good) // 2] if damage == "truncated" else good
    if damage == "bit_flipped":
        bad[len(bad) // 2] ^= 4
    (tmp_path / "digits.pt").write_bytes(bytes(bad))
    with pytest.raises(ConfigError, match="python -m gan_lightning.metrics.digits") as err:
        DigitFeatures(str(tmp_path / "digits.pt"))
    assert "digits.pt" in str(err.value) and "DigitClassifier file" in str(err.value)


def test_channel_count_is_validated(trained):
    with pytest.raises(ConfigError, match="1 .* or 3"):
        DigitFeatures(str(trained.path), channels=2)
    with pytest.raises(ConfigError, match="set channels: 3"):
        trained.digits(torch.zeros(2, 3, 28, 28))


def test_shapes_for_digits_and_stacked_digits_and_logits_are_log_probabilities(trained, stacked):
    x = torch.rand(5, 3, 28, 28) * 2 - 1
    for extractor, images, d, k in [(trained.digits, x[:, :1], 128, 10), (stacked, x, 384, 1000)]:
        features, logits = extractor(images)
        assert (extractor.num_features, extractor.num_classes) == (d, k)
        assert features.shape == (5, d) and logits.shape == (5, k)
        assert torch.allclose(logits.logsumexp(1), torch.zeros(5), atol=1e-5)
    assert stacked.name != trained.digits.name  # different features, so a different cache key
    assert stacked.key_prefix == "digit_"


def test_a_32px_input_is_cropped_to_exactly_the_28px_result(trained, stacked, held_out):
    x = held_out[0][:64]
    x3 = torch.cat([x, x.flip(0), x.roll(1, 0)], 1)
    for extractor, images in [(trained.digits, x), (stacked, x3)]:
        padded = F.pad(images, (2, 2, 2, 2), value=-1.0)  # EmbeddedDigits(image_size=32)'s background
        for a, b in zip(extractor(padded), extractor(images)):
            assert torch.equal(a, b)


def test_other_sizes_are_resized_and_still_classified(trained, held_out):
    x, y = held_out
    big = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    agree = (predicted(trained.digits, big) == predicted(trained.digits, x)).double().mean().item()
    assert agree >= 0.95


def test_triple_argmax_is_the_per_channel_argmaxes_and_features_concatenate(trained, stacked, held_out):
    x, y = held_out
    g = torch.Generator().manual_seed(0)
    images = x[pick(y, torch.randint(10, (300, 3), generator=g), g), 0]
    features, logits = stacked(images)
    per_channel = [trained.digits(images[:, c : c + 1]) for c in range(3)]
    digits = [logits_c.argmax(1) for _, logits_c in per_channel]
    assert torch.equal(logits.argmax(1), 100 * digits[0] + 10 * digits[1] + digits[2])
    assert torch.allclose(features, torch.cat([f for f, _ in per_channel], 1), atol=1e-5)


# --- mode counts --------------------------------------------------------------------------------------
def test_coverage_recovers_exactly_the_k_triples_present(trained, stacked, held_out):
    x, y = held_out
    right = predicted(trained.digits, x) == y  # digits the classifier gets right: the count is then exact
    g = torch.Generator().manual_seed(1)
    k = 37
    chosen = torch.randperm(1000, generator=g)[:k]
    triples = as_triples(chosen).repeat_interleave(10, 0)
    labels = predicted(stacked, x[right][pick(y[right], triples, g), 0])
    coverage = class_coverage(labels, 1000)
    assert coverage["modes"] == k and set(labels.tolist()) == set(chosen.tolist())
    assert coverage["mode_kl"] == pytest.approx(math.log(1000 / k))  # 10 samples each: uniform over k


def test_uniform_triples_cover_all_1000_modes_with_kl_at_the_sampling_noise(trained, held_out):
    """26,000 samples of uniformly drawn triples (the PacGAN protocol) from all held-out digits.

    P(a given triple is missing) = (1 - 1/1000)^26000 ~ e^-26, so all 1000 are present. For n samples
    from a uniform K-class law, 2n KL(p_hat || uniform) is about chi-square with K - 1 degrees of
    freedom: KL ~ (K - 1) / 2n = 0.019 nats, standard deviation sqrt(2 (K - 1)) / 2n = 0.0009.
    Classifier errors (~1-2% per digit) move a few % of the samples to other triples, which may only
    add noise of the same order: the predicted KL must stay within twice the expected value.

    The samples hold only the 500 held-out digits, so each is classified once and the triples are
    composed from those labels, as the 3-channel extractor does (shown by the test above).
    """
    x, y = held_out
    g = torch.Generator().manual_seed(2)
    n, k = 26_000, 1000
    true = torch.randint(k, (n,), generator=g)
    idx = pick(y, as_triples(true), g)
    expected, std = (k - 1) / (2 * n), math.sqrt(2 * (k - 1)) / (2 * n)
    truth = class_coverage(true, k)
    assert truth["modes"] == k and abs(truth["mode_kl"] - expected) < 5 * std
    digit = predicted(trained.digits, x)[idx]  # (n, 3) predicted digits
    found = class_coverage(100 * digit[:, 0] + 10 * digit[:, 1] + digit[:, 2], k)
    assert found["modes"] == k and found["mode_kl"] < 2 * expected
