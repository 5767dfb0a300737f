"""FID/KID/IS against independent computations, the real-feature cache, the InceptionV3 weights, the
metrics callback in training, the best-FID checkpoint and the `evaluate` subcommand."""

import csv
import json
import math
import random
import urllib.error

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import DIGITS_TINY, ROOT, run_cli, run_cli_subprocess, tiny_args
from support import RandomFeatures

from gan_lightning.data import EmbeddedDigits, to_uint8
from gan_lightning.errors import ConfigError
from gan_lightning.evaluation import GANMetrics
from gan_lightning.metrics import InceptionV3, class_coverage
from gan_lightning.metrics import inception as inception_mod
from gan_lightning.metrics.cache import cache_key
from gan_lightning.metrics.inception import save_random_weights
from gan_lightning.metrics.scores import FeatureScores
from gan_lightning.sample import load_module


def _features(n, d, shift, seed):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / math.sqrt(d)
    return (torch.randn(n, d, generator=g) @ mix + shift).double()


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_matches_an_independent_scipy_frechet_distance():
    real, fake = _features(400, 8, 0.0, 0), _features(300, 8, 0.3, 1)
    scores = FeatureScores(8, 4, ["fid"])
    scores.update_real(real)
    scores.update_fake(fake, torch.zeros(300, 4))
    fid = scores.compute()["fid"]
    expected = _scipy_fid(real.numpy(), fake.numpy())
    assert fid == pytest.approx(expected, rel=1e-4)
    assert expected > 0.1  # the sets differ: a zero would prove nothing


def test_fid_of_identical_sets_is_zero():
    real = _features(300, 8, 0.0, 0)
    scores = FeatureScores(8, 4, ["fid"])
    scores.update_real(real)
    scores.update_fake(real.clone(), torch.zeros(300, 4))
    assert abs(scores.compute()["fid"]) < 1e-6


def _unbiased_poly_mmd(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731  KID's kernel: (x.y/d + 1)^3
    m = len(x)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def test_kid_with_one_full_subset_equals_the_unbiased_polynomial_mmd():
    real, fake = _features(200, 8, 0.0, 0), _features(200, 8, 0.5, 1)
    scores = FeatureScores(8, 4, ["kid"], kid_subsets=1, kid_subset_size=200)
    scores.update_real(real)
    scores.update_fake(fake, torch.zeros(200, 4))
    assert scores.compute()["kid"] == pytest.approx(_unbiased_poly_mmd(real.numpy(), fake.numpy()), rel=1e-6)


def test_inception_score_is_one_for_a_constant_classifier_and_k_for_a_confident_balanced_one():
    k, n = 10, 500
    scores = FeatureScores(4, k, ["is"], is_splits=1)
    scores.update_fake(torch.zeros(n, 4), torch.randn(1, k).expand(n, k))  # p(y|x) the same for every x
    assert scores.compute()["is"] == pytest.approx(1.0, abs=1e-6)
    scores.reset_fake()
    labels = torch.arange(n) % k  # each class equally often, each prediction certain
    scores.update_fake(torch.zeros(n, 4), 100.0 * torch.nn.functional.one_hot(labels, k).double())
    assert scores.compute()["is"] == pytest.approx(k, rel=1e-6)


def test_mode_counter_recovers_a_known_number_of_modes():
    labels = torch.tensor([0, 2, 5, 7, 9, 3, 1] * 100)  # 7 of 10 classes, evenly
    out = class_coverage(labels, 10)
    assert out["modes"] == 7
    assert out["mode_kl"] == pytest.approx(math.log(10) - math.log(7))
    scores = FeatureScores(4, 10, ["modes"])
    scores.update_fake(torch.zeros(700, 4), torch.nn.functional.one_hot(labels, 10).float())
    assert scores.compute()["modes"] == 7


def test_kid_subsets_larger_than_the_samples_are_a_clear_error():
    scores = FeatureScores(8, 4, ["kid"], kid_subset_size=1000)
    scores.update_real(_features(100, 8, 0.0, 0))
    scores.update_fake(_features(100, 8, 0.0, 1), torch.zeros(100, 4))
    with pytest.raises(ConfigError, match="kid_subset_size=1000"):
        scores.compute()


def test_unknown_metric_name_is_refused():
    with pytest.raises(ConfigError, match="unknown metric"):
        GANMetrics(metrics=["fid", "precision"])


# --- the real-feature cache -----------------------------------------------------------------------


@pytest.fixture
def digits_and_module(tmp_path):
    logs = _fit(tmp_path / "run", steps=2)
    module = load_module(logs / "checkpoints/last.ckpt")
    dm = EmbeddedDigits(image_size=28)
    return dm, module


def test_second_evaluation_and_a_new_run_read_real_features_from_the_cache(
    digits_and_module, monkeypatch, tmp_path
):
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(tmp_path / "cache"))
    dm, module = digits_and_module
    fake_batches = 2  # num_fake 200 in batches of 100

    first = GANMetrics(RandomFeatures(), num_fake=200, num_real=1000, batch_size=100, kid_subset_size=100)
    a = first.evaluate(module, dm)
    assert first.extractor.calls == 1000 // 100 + fake_batches  # real features extracted once
    first.evaluate(module, dm)
    assert first.extractor.calls == 1000 // 100 + 2 * fake_batches  # same run: reals kept in memory

    second = GANMetrics(RandomFeatures(), num_fake=200, num_real=1000, batch_size=100, kid_subset_size=100)
    b = second.evaluate(module, EmbeddedDigits(image_size=28))  # a new run on the same data
    assert second.extractor.calls == fake_batches  # the cache hit: no real image went through
    assert b == pytest.approx(a)
    assert len(list((tmp_path / "cache/real_features").iterdir())) == 1
    assert (a["rand_num_fake"], a["rand_num_real"]) == (200, 1000)  # FID's sample counts travel with it


def test_a_damaged_cache_file_is_recomputed_with_a_warning(digits_and_module, monkeypatch, tmp_path):
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(tmp_path / "cache"))
    dm, module = digits_and_module
    a = GANMetrics(RandomFeatures(), num_fake=200, num_real=1000, batch_size=100, kid_subset_size=100)
    first = a.evaluate(module, dm)
    (cached,) = (tmp_path / "cache/real_features").iterdir()
    good = cached.read_bytes()
    for damaged in (
        good[: len(good) // 2],
        b"\x80\x02" + bytes(range(40)),
        good.replace(b"features", b"featurez"),
    ):
        cached.write_bytes(damaged)
        b = GANMetrics(RandomFeatures(), num_fake=200, num_real=1000, batch_size=100, kid_subset_size=100)
        with pytest.warns(UserWarning, match=f"feature cache {cached}.*recomputing it"):
            again = b.evaluate(module, EmbeddedDigits(image_size=28))
        assert b.extractor.calls == 1000 // 100 + 2  # the reals went through the extractor again
        assert again == pytest.approx(first) and cached.read_bytes() == good  # rewritten, same content


def test_cache_key_names_dataset_split_size_count_extractor_and_content():
    extractor = RandomFeatures()
    dm = EmbeddedDigits(image_size=28)
    key = cache_key("EmbeddedDigits", "train", dm.build("train"), extractor, 4500)
    assert key.startswith("EmbeddedDigits-train-1x28x28-n4500-random-features-v1-")
    other = {
        cache_key("EmbeddedDigits", "val", dm.build("val"), extractor, 4500),
        cache_key("EmbeddedDigits", "train", EmbeddedDigits(image_size=32).build("train"), extractor, 4500),
        cache_key(
            "EmbeddedDigits", "train", EmbeddedDigits(image_size=28, seed=1).build("train"), extractor, 4500
        ),
        cache_key("EmbeddedDigits", "train", dm.build("train"), extractor, 1000),
    }
    assert key not in other and len(other) == 4


# --- InceptionV3 weights --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """A weights file with torch-fidelity's layout and random values (the real file needs a download)."""
    return save_random_weights(tmp_path_factory.mktemp("inception") / "weights.pth")


def test_inception_loads_a_local_weights_file_and_gives_pool_features_and_logits(random_inception_weights):
    net = InceptionV3(weights_path=str(random_inception_weights))
    features, logits = net(torch.rand(2, 1, 28, 28) * 2 - 1)
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)
    assert net.name.startswith("inception-v3-")  # keyed by a hash of the weights


@pytest.mark.parametrize("damage", ["truncated", "bit_flipped", "random"])
def test_a_damaged_inception_weights_file_is_one_config_error(random_inception_weights, tmp_path, damage):
    good = random_inception_weights.read_bytes()
    bad = bytearray(good)
    if damage == "truncated":
        bad = bad[: len(bad) // 2]
    elif damage == "bit_flipped":
        bad[len(bad) // 2] ^= 4  # inside the largest tensors: torch.load alone would not notice
    else:
        bad = b"\x80\x02" + random.Random(0).randbytes(4096)
    path = tmp_path / "inception.pth"
    path.write_bytes(bytes(bad))
    with pytest.raises(ConfigError, match="InceptionV3 weights") as err:
        InceptionV3(weights_path=str(path))
    assert "inception.pth" in str(err.value)
    assert ("CRC-32" in str(err.value)) == (damage == "bit_flipped")


def test_inception_input_is_the_uint8_image_of_the_samples(random_inception_weights, monkeypatch):
    net = InceptionV3(weights_path=str(random_inception_weights))
    seen = {}

    def spy(x, resize):
        seen["x"], seen["resize"] = x, resize
        return torch.zeros(len(x), 3, 299, 299)

    monkeypatch.setattr(inception_mod, "resize_299", spy)
    images = torch.tensor([-1.0, -0.5, 0.0, 1.0, 1.5]).view(1, 1, 1, 5)
    features, _ = net(images)
    assert features.shape == (1, 2048) and seen["resize"] == "tf1"
    assert seen["x"].dtype == torch.uint8 and seen["x"].shape == (1, 3, 1, 5)
    assert seen["x"][0, :, 0].tolist() == [[0, 64, 128, 255, 255]] * 3  # (x+1)*127.5, rounded, clamped
    assert torch.equal(seen["x"][:, :1], to_uint8(images))


def test_missing_inception_weights_offline_say_which_file_goes_where(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(inception_mod, "package_file", lambda: None)  # nor the [fid] package
    with pytest.raises(ConfigError) as err:
        InceptionV3()
    message = str(err.value)
    assert inception_mod.WEIGHTS_URL in message
    assert "python -m gan_lightning.metrics.inception install" in message
    assert str(tmp_path / "hub/checkpoints/weights-inception-2015-12-05-6726825d.pth") in message
    assert "weights_path" in message
    with pytest.raises(ConfigError, match="/nonexistent/w.pth does not exist"):
        InceptionV3(weights_path="/nonexistent/w.pth")


def test_missing_inception_weights_are_one_line_at_the_cli(tmp_path):
    res = run_cli_subprocess(
        [
            "fit",
            *DIGITS_TINY,
            *tiny_args(tmp_path),
            "--metrics.extractor",
            "gan_lightning.metrics.InceptionV3",
            "--metrics.extractor.weights_path",
            str(tmp_path / "missing.pth"),
        ]
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert f"{tmp_path / 'missing.pth'} does not exist" in res.stderr
    assert "Traceback" not in res.stderr


# --- in training, best checkpoint, evaluate ------------------------------------------------------

VAL_ARGS = [
    "--trainer.val_check_interval",
    "2",
    "--trainer.check_val_every_n_epoch",
    "null",
    "--trainer.logger",
    "lightning.pytorch.loggers.CSVLogger",
]
METRIC_ARGS = [
    "--metrics.extractor",
    "support.RandomFeatures",
    "--metrics.num_fake",
    "200",
    "--metrics.num_real",
    "500",
    "--metrics.batch_size",
    "100",
    "--metrics.kid_subset_size",
    "100",
]


def _fit(root, extra=(), steps=6, base=DIGITS_TINY):
    """A tiny run, digits by default (CSV logs under root/lightning_logs/version_0, validation every
    2 G steps)."""
    args = [
        *base,
        *tiny_args(root, max_steps=steps),
        *VAL_ARGS,
        "--trainer.logger.save_dir",
        str(root),
    ]
    run_cli(["fit", *args, *extra])
    return root / "lightning_logs/version_0"


def _val_rows(log_dir, key="val/rand_fid"):
    with open(log_dir / "metrics.csv") as f:
        return [r for r in csv.DictReader(f) if r.get(key)]


def test_metrics_are_logged_at_each_validation_and_the_best_fid_checkpoint_is_kept(tmp_path):
    log_dir = _fit(tmp_path, METRIC_ARGS)
    rows = _val_rows(log_dir)
    assert len(rows) == 3  # G steps 2, 4, 6
    for key in ("val/rand_fid", "val/rand_kid", "val/rand_is", "val/rand_modes", "val/rand_mode_kl"):
        assert all(math.isfinite(float(r[key])) for r in rows)
    best_idx = min(range(3), key=lambda i: float(rows[i]["val/rand_fid"]))
    best = list((log_dir / "checkpoints").glob("best-*.ckpt"))
    assert [p.name for p in best] == [f"best-step={2 * (best_idx + 1):07d}.ckpt"]
    state = torch.load(best[0], weights_only=False)
    callback_state = next(v for k, v in state["callbacks"].items() if "val/rand_fid" in k)
    assert callback_state["best_model_score"].item() == pytest.approx(float(rows[best_idx]["val/rand_fid"]))


class OtherRandomFeatures(RandomFeatures):
    name = "random-features-other"
    key_prefix = "other_"


def test_an_extra_extractor_with_only_last_is_logged_once_at_the_end_beside_the_main_one(tmp_path):
    extra = (
        '[{"class_path": "gan_lightning.evaluation.GANMetrics", "init_args": {"extractor": '
        '{"class_path": "test_evaluation.OtherRandomFeatures"}, "num_fake": 100, "num_real": 300, '
        '"kid_subset_size": 50, "only_last": true}}]'
    )
    log_dir = _fit(tmp_path, [*METRIC_ARGS, "--metrics.extra", extra])
    rows = _val_rows(log_dir)
    assert [bool(r.get("val/other_fid")) for r in rows] == [False, False, True]  # G steps 2, 4, 6
    last = rows[-1]
    assert float(last["val/other_num_fake"]) == 100 and float(last["val/other_num_real"]) == 300
    assert float(last["val/rand_num_fake"]) == 200 and float(last["val/rand_num_real"]) == 500
    assert float(last["val/other_fid"]) != pytest.approx(float(last["val/rand_fid"]))
    assert [p.name for p in (log_dir / "checkpoints").glob("best-*.ckpt")]  # still follows val/rand_fid


def test_extra_evaluations_must_not_share_a_key_prefix():
    with pytest.raises(ConfigError, match="repeats a metric key prefix"):
        GANMetrics(RandomFeatures(), extra=[GANMetrics(RandomFeatures(seed=1))])


def test_metrics_do_not_change_the_training_run(tmp_path):
    with_metrics, without = _fit(tmp_path / "a", METRIC_ARGS), _fit(tmp_path / "b")
    a = torch.load(with_metrics / "checkpoints/last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(without / "checkpoints/last.ckpt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any("extractor" in k or "inception" in k for k in a)  # the extractor is not in checkpoints


def test_evaluate_writes_metrics_json_equal_to_the_in_training_value(tmp_path):
    log_dir = _fit(tmp_path / "run", METRIC_ARGS)
    out = tmp_path / "eval/metrics.json"
    res = run_cli_subprocess(
        ["evaluate", "--ckpt_path", str(log_dir / "checkpoints/last.ckpt"), "--out", str(out)]
    )
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["generator_step"] == 6 and report["extractor"] == "random-features-v1"
    assert report["metrics"]["rand_fid"] == pytest.approx(
        float(_val_rows(log_dir)[-1]["val/rand_fid"]), rel=1e-5
    )


def test_evaluate_without_a_run_config_asks_for_one(tmp_path):
    log_dir = _fit(tmp_path / "run", METRIC_ARGS)
    ckpt = tmp_path / "moved.ckpt"
    ckpt.write_bytes((log_dir / "checkpoints/last.ckpt").read_bytes())
    res = run_cli_subprocess(["evaluate", "--ckpt_path", str(ckpt)])
    assert res.returncode == 2
    assert "pass --run_config" in res.stderr and "Traceback" not in res.stderr


def test_2d_runs_log_mode_coverage_at_validation(tmp_path):
    ring = ["--config", str(ROOT / "configs/toy/ring.yaml"), "--data.init_args.num_samples", "2000"]
    rows = _val_rows(_fit(tmp_path, steps=4, base=ring), "val/modes")
    assert len(rows) == 2
    assert all(0 <= float(r["val/modes"]) <= 8 and 0 <= float(r["val/high_quality_pct"]) <= 100 for r in rows)


def test_stacked_mnist_config_logs_the_triples_covered(tmp_path):
    # the quickstart's shrinking overrides (width 8, 28x28, batch 16) on the Stacked MNIST config
    stacked = ["--config", str(ROOT / "configs/stacked_mnist.yaml"), *DIGITS_TINY[2:]]
    rows = _val_rows(_fit(tmp_path, ["--data.init_args.num_train", "2000"], 2, stacked), "val/digit_modes")
    assert len(rows) == 1
    assert 1 <= float(rows[0]["val/digit_modes"]) <= 200  # of 1000 triples, from 200 samples
    assert math.isfinite(float(rows[0]["val/digit_fid"])) and "val/digit_is" not in rows[0]


def test_precision_recall_match_hand_computed_manifolds():
    from gan_lightning.metrics.precision_recall import precision_recall

    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])  # k=1 radii: 1 each, manifold [-1, 4]
    fake = torch.tensor([[0.5], [10.0]])  # k=1 radii: 9.5 each
    out = precision_recall(real, fake, k=1)
    assert out["precision"] == 0.5  # 0.5 is inside, 10 is not
    assert out["recall"] == 1.0  # every real point is within 9.5 of 0.5
    fake = torch.tensor([[0.0], [0.2], [0.4]])  # k=1 radii 0.2, 0.2, 0.2: covers [-0.2, 0.6]
    out = precision_recall(real, fake, k=1)
    assert out["precision"] == 1.0 and out["recall"] == 0.25  # only the real 0 is covered


def test_precision_recall_through_the_scores_module():
    real, fake = _features(600, 8, 0.0, 0).split(300)  # two samples of one distribution
    scores = FeatureScores(8, 4, ["precision_recall"])
    scores.update_real(real)
    scores.update_fake(fake, torch.zeros(300, 4))
    same = scores.compute()
    scores.reset_fake()
    scores.update_fake(fake + 5.0, torch.zeros(300, 4))  # far from the data
    far = scores.compute()
    assert same["precision"] > 0.5 and same["recall"] > 0.5
    assert far["precision"] == 0.0 and far["recall"] == 0.0


def test_an_extractor_that_cannot_read_the_images_fails_before_training(tmp_path):
    res = run_cli_subprocess(
        [
            "fit",
            *DIGITS_TINY,
            *tiny_args(tmp_path),
            "--metrics.extractor.channels",
            "3",  # Stacked MNIST's extractor on 1-channel digits
        ]
    )
    assert res.returncode == 2
    assert "channels" in res.stderr.strip().splitlines()[-1] and "Traceback" not in res.stderr
    assert not list(tmp_path.rglob("*.ckpt"))
