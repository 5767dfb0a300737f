"""The benchmark scripts still run end to end (tiny budgets) and write their tables."""

import subprocess
import sys

import pytest
from conftest import ROOT


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
        "--docs",
        str(tmp_path),
        "--out",
        str(tmp_path / "runs"),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    table = (tmp_path / "mode_coverage.md").read_text()
    assert "| hinge |" in table and "| wgan |" in table and "## grid (25 modes)" in table
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
