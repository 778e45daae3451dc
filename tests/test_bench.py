"""The benchmark runs end to end at a tiny scale and reports every figure (bench/run.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

NUMBERS = (
    "scale", "genes", "generation_s", "floor_s", "full_build_s", "incremental_s", "peak_rss_mb",
    "incremental_peak_rss_mb", "ratio_full_to_floor", "incremental_to_full", "unchanged_build_s", "unchanged_peak_rss_mb",
)
QUERIES = ("adbm_param_visit_by_arm", "adgene_gene_by_visit", "adgene_change_gene_by_visit", "reconciliation")


@pytest.mark.slow
def test_bench_reports_every_figure(tmp_path):
    python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
    results = tmp_path / "results.json"
    out = tmp_path / "out"
    completed = subprocess.run(
        [str(python), str(ROOT / "bench" / "run.py"), "--scale", "0.05", "--genes", "50",
         "--out", str(out), "--results", str(results), "--pileup", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    data = json.loads(results.read_text(encoding="utf-8"))
    for key in NUMBERS:
        assert isinstance(data[key], (int, float)) and data[key] > 0, (key, data.get(key))
    assert all(isinstance(data["publish_s"][build], float) for build in ("full", "incremental", "unchanged"))
    assert set(data["query_ms"]) == set(QUERIES)
    assert all(isinstance(ms, (int, float)) and ms > 0 for ms in data["query_ms"].values()), data["query_ms"]
    machine = data["machine"]
    assert machine["platform"] and machine["cpu_count"] > 0 and machine["total_memory_mb"] > 0
    assert data["date"]
    assert {t.split(".")[0] for t in data["targets"]} == {
        "ratio_full_to_floor", "incremental_to_full", "peak_rss_mb", "incremental_peak_rss_mb", "query_ms",
        "pileup_rss_growth_pct",
    }
    assert {d["family"] for d in data["incremental_deliveries"]} == {
        "treg", "neurofilament", "transcript_gene", "transcript_summary"
    }
    # The incremental build and two more, each taking in one more delivery per lab family.
    pileup = data["pileup"]
    assert [r["round"] for r in pileup] == [0, 1, 2]
    assert [b["deliveries"] - a["deliveries"] for a, b in zip(pileup, pileup[1:])] == [4, 4]
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] > 0 for r in pileup), pileup
    assert isinstance(data["pileup_rss_growth_pct"], float) and isinstance(data["pileup_seconds_slope"], float)
    # Then one delivery per lab family, each in its own run as the sensor runs it: that family's
    # raw asset and every table, taking in one delivery each.
    families = ["treg", "neurofilament", "transcript_gene", "transcript_summary"]
    assert list(data["single_delivery_s"]) == families
    assert all(seconds > 0 for seconds in data["single_delivery_s"].values()), data["single_delivery_s"]
    assert data["single_delivery_raw_steps"] == {family: [f"raw__{family}"] for family in families}
    assert set(data["single_delivery_steps"].values()) == {len(data["full_build_steps"]) - 6}, data["single_delivery_steps"]
    held = [pileup[-1]["deliveries"], *data["single_delivery_deliveries_held"].values()]
    assert [b - a for a, b in zip(held, held[1:])] == [1, 1, 1, 1], held
    # Generated data is removed unless --keep.
    assert not any(out.iterdir())


def test_pileup_rounds_never_send_earlier_bytes_again(tmp_path):
    # once the rounds had gone through every batch and slice, a round sent earlier bytes again: a
    # duplicate, cheaper to take in, which pulled down the growth the pile-up reports
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import run as bench
    finally:
        sys.path.remove(str(ROOT / "bench"))
    from pipelines.synth import generate_landing_zone

    landing = tmp_path / "landing"
    generate_landing_zone(landing, scale=0.05, genes=20)
    digests: dict[str, set[bytes]] = {}
    rounds = 40
    for round_ in range(rounds):
        for written in bench.write_redeliveries(landing, round_):
            digests.setdefault(written["family"], set()).add((landing / written["file"]).read_bytes())
    assert {family: len(seen) for family, seen in digests.items()} == {family: rounds for family in bench.LAB_FAMILIES}
