"""The benchmark scripts still run end to end (tiny budgets) and write their tables."""

import argparse
import importlib
import os
import subprocess
import sys

import pytest
from conftest import ROOT, one_error_line


def _benchmark(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_mode_coverage_applies_toy_overrides_except_to_paper_rows():
    bench = _benchmark("mode_coverage")
    assert bench.configs("ring", "dragan") == [
        "toy/ring.yaml",
        "loss/dragan.yaml",
        "toy/overrides/dragan.yaml",
    ]
    assert bench.configs("grid", "wgan_gp@paper") == ["toy/grid.yaml", "loss/wgan_gp.yaml"]
    assert bench.configs("ring", "lsgan") == ["toy/ring.yaml", "loss/lsgan.yaml"]  # no override: none applied
    for family in bench.FAMILIES:  # every entry names a real loss fragment
        assert (ROOT / "configs" / bench.configs("ring", family)[1]).is_file()
    for override in (ROOT / "configs/toy/overrides").glob("*.yaml"):  # every override has its paper row
        assert override.stem in bench.FAMILIES and f"{override.stem}@paper" in bench.FAMILIES


def test_a_side_study_of_stacked_mnist_leaves_the_doc_alone():
    """A longer budget or a fine-tune in its own --out holds a few rows: it rewrote docs/stacked_mnist.md
    with only those (it did, once), unless --docs is named or the study is the doc's own."""
    bench = _benchmark("stacked_mnist")
    default = ROOT / "runs/bench_stacked"

    def args(out, doc_only=False, write_doc=False):
        return argparse.Namespace(out=out, doc_only=doc_only, write_doc=write_doc)

    assert not bench.writes_doc(args(ROOT / "runs/g64_20k_lrdecay5k"), default)
    assert bench.writes_doc(args(default), default)
    assert bench.writes_doc(args(ROOT / "runs/x", doc_only=True), default)
    assert bench.writes_doc(args(ROOT / "runs/x", write_doc=True), default)


@pytest.mark.slow
def test_mode_coverage_benchmark_writes_its_table(tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks/mode_coverage.py"),
        "--steps",
        "5",
        "--seeds",
        "2",
        "--families",
        "hinge",
        "wgan",
        "dragan",
        "dragan@paper",
        "--docs",
        str(tmp_path),
        "--out",
        str(tmp_path / "runs"),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    table = (tmp_path / "mode_coverage.md").read_text()
    assert "| hinge |" in table and "| wgan |" in table and "## grid (25 modes)" in table
    # every setting is printed: the toy override for the DRAGAN row, the paper default for its @paper row
    assert "| dragan | `loss/dragan.yaml` + `toy/overrides/dragan.yaml` |" in table
    assert "DRAGANPenalty(weight=0.1, k=1.0, c=0.5, every=1)" in table
    assert "| dragan@paper | `loss/dragan.yaml` |" in table and "DRAGANPenalty(weight=10.0," in table
    assert "WeightClipping(clip=0.01)" in table and "RMSprop(lr=5e-05)" in table
    assert (tmp_path / "mode_coverage_ring.png").stat().st_size > 0


@pytest.mark.slow
def test_throughput_benchmark_writes_all_orders(tmp_path):
    out = tmp_path / "throughput.md"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks/throughput.py"),
        "--steps",
        "3",
        "--warmup",
        "1",
        "--repeats",
        "1",
        "--width",
        "8",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    text = out.read_text()
    assert all(f"| {o} |" in text for o in ("d_first", "g_first", "simultaneous", "fused"))


@pytest.mark.slow
def test_evaluation_benchmarks_write_their_tables(tmp_path):
    def run(script, *args):
        cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout

    run("eval_cost.py", "--num_fake", "300", "--inception_fake", "0", "--out", str(tmp_path / "cost.md"))
    assert "| digit classifier | 4500 | 300 |" in (tmp_path / "cost.md").read_text()
    run(
        "quickstart_metrics.py",
        "--steps",
        "4",
        "--every",
        "2",
        "--docs",
        str(tmp_path),
        "--out",
        str(tmp_path / "q"),
    )
    assert (tmp_path / "quickstart_metrics.png").stat().st_size > 0
    assert "| 4 |" in (tmp_path / "quickstart_metrics.md").read_text()
    run(
        "stacked_mnist.py",
        "--steps",
        "2",
        "--seeds",
        "1",
        "--num_fake",
        "500",
        "--docs",
        str(tmp_path),
        "--out",
        str(tmp_path / "s"),
        "--keep_checkpoints",
    )
    assert "| 0 |" in (tmp_path / "stacked_mnist.md").read_text()
    ckpt = tmp_path / "s/plain/d32/seed0/checkpoints/last.ckpt"  # rejection sampling by its D, calibrated
    drs = run(
        "stacked_drs.py",
        str(ckpt),
        "--pool",
        "400",
        "--num",
        "100",
        "--calibrate",
        "2",
        "--percentiles",
        "50",
    )
    assert "| no rejection | 1.000 | 100 |" in drs and "| DRS, gamma at F's 50th percentile |" in drs
    longer = [
        "--variants",
        "plain",
        "--d_widths",
        "32",
        "--longer",
        str(tmp_path / "s"),
        str(tmp_path / "s4"),
    ]
    run(
        *["stacked_mnist.py", "--steps", "4", "--seeds", "1", "--num_fake", "500", "--docs", str(tmp_path)],
        *["--out", str(tmp_path / "s4"), "--extend", str(tmp_path / "s"), "--keep_checkpoints", *longer],
    )
    doc = (tmp_path / "stacked_mnist.md").read_text()
    assert "| 4 | plain | 32 | 0 |" in doc  # the extended run, in the longer budgets
    assert "| plain, seed 0, 2 G steps |" in doc and "| plain, seed 0, 4 G steps |" in doc  # channel table
    run(  # a new run from the 2-step checkpoint's weights, with the learning rates decaying to 0
        *["stacked_mnist.py", "--steps", "3", "--seeds", "1", "--num_fake", "500", "--docs", str(tmp_path)],
        *["--out", str(tmp_path / "ft"), "--extend", str(tmp_path / "s"), "--finetune", "lr_decay"],
        *["--variants", "plain", "--d_widths", "32", "--longer", str(tmp_path / "ft")],
    )
    config = (tmp_path / "ft/plain+lr_decay/d32/seed0/config.yaml").read_text()
    assert "LinearLR" in config and "total_iters: 3" in config
    assert "| 5 | plain+lr_decay | 32 | 0 |" in (tmp_path / "stacked_mnist.md").read_text()  # 2 + 3 G steps


def test_stacked_drs_on_a_missing_or_damaged_checkpoint_is_one_error_line_and_exit_2(tmp_path):
    """benchmarks/stacked_drs.py takes a user's checkpoint path: a bad one is named in one line."""
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"not a checkpoint")
    for path, says in ((tmp_path / "missing.ckpt", "does not exist"), (damaged, str(damaged))):
        cmd = [sys.executable, str(ROOT / "benchmarks/stacked_drs.py"), str(path)]
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert says in one_error_line(res)
    assert damaged.read_bytes() == b"not a checkpoint"


def test_gpu_benchmark_without_cuda_is_one_error_line_and_exit_2(tmp_path):
    """benchmarks/gpu.py measures CUDA training only; with no GPU visible it says so and writes nothing."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(ROOT / "benchmarks/gpu.py"), "--out", str(tmp_path / "gpu.md")]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert "torch.cuda.is_available() is False" in one_error_line(res)
    assert not (tmp_path / "gpu.md").exists()
