"""Shared fixtures: build the real asset graph on a landing zone into a DuckDB file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.build import BuildResult, build_warehouse


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: with two workers taking whole modules in collection order, starting
    the long modules early keeps one worker from finishing them alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


class Built:
    """A built warehouse and a read-only way to query it."""

    def __init__(self, landing: Path, warehouse: Path, result: BuildResult):
        self.landing = landing
        self.warehouse = warehouse
        self.result = result

    def rows(self, query: str, params: list | None = None) -> list[tuple]:
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.execute(query, params or []).fetchall()
        finally:
            con.close()

    def scalar(self, query: str, params: list | None = None):
        return self.rows(query, params)[0][0]

    def dicts(self, query: str, params: list | None = None) -> list[dict]:
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            cursor = con.execute(query, params or [])
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
        finally:
            con.close()


def run_build(landing: Path, warehouse: Path, randomisation_file: Path | None = None) -> Built:
    instance = dg.DagsterInstance.ephemeral()
    result = build_warehouse(landing, warehouse, instance=instance, randomisation_file=randomisation_file)
    assert result.success, f"build failed: run {result.run_id}: {result.errors}"
    built = Built(landing, warehouse, result)
    built.instance = instance
    return built


@pytest.fixture
def build() -> Callable[[Path, Path], Built]:
    return run_build


TRIAL_GENES = 12


@pytest.fixture(scope="session")
def trial(tmp_path_factory):
    """A generated landing zone at the real trial's size (few genes), built once per session."""
    from pipelines.synth import generate_landing_zone

    landing = tmp_path_factory.mktemp("trial_landing")
    report = generate_landing_zone(landing, seed=7, scale=1.0, genes=TRIAL_GENES)
    built = run_build(landing, tmp_path_factory.mktemp("trial_warehouse") / "mirocals.duckdb")
    return report, built


@pytest.fixture(scope="session")
def unblinded_trial(trial, tmp_path_factory):
    """The same landing zone built unblinded with its real randomisation list."""
    report, blinded = trial
    randomisation = blinded.landing / "restricted" / "randomisation_list.parquet"
    built = run_build(blinded.landing, tmp_path_factory.mktemp("unblinded") / "mirocals_unblinded.duckdb", randomisation)
    return report, built
