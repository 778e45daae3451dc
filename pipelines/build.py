"""Materialise the asset graph in-process, with the definitions the UI uses: the whole graph,
or what the landing-zone sensor runs for a new file of one family."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.utils import make_new_run_id

from pipelines.assets.automation import family_selection
from pipelines.definitions import BUILD_JOB, build_definitions
from pipelines.locking import BuildLock, BuildLocked
from pipelines.runs import fail_abandoned_runs, in_process_tags
from pipelines.warehouse import lock_file, query_sql, read_connection

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    success: bool
    run_id: str
    steps: int
    failed_checks: list[str]
    errors: list[str]
    check_details: dict[str, list[str]] = field(default_factory=dict)  # failed check -> the files it names


# Metadata entries of a failed check that name files and why (pipelines/assets/deliveries.py).
FILE_DETAILS = ("refused", "files_not_taken_in")


def step_count(landing: Path, warehouse: Path) -> int:
    """How many assets a full build materialises."""
    defs = build_definitions(str(landing), str(warehouse))
    return len(list(defs.resolve_all_asset_specs()))


def build_warehouse(
    landing: Path,
    warehouse: Path,
    instance: dg.DagsterInstance | None = None,
    on_step: ProgressCallback | None = None,
    log_level: str = "WARNING",
    randomisation_file: Path | None = None,
    family: str | None = None,
) -> BuildResult:
    """Run the build job; ``on_step`` is called with each asset key as it materialises.

    ``family`` runs what the landing-zone sensor runs for a new file of that family (its raw
    asset and every table, :func:`pipelines.assets.automation.family_selection`) instead of the
    whole graph.

    Raises :class:`pipelines.locking.BuildLocked` at once if another build is running.
    """
    instance = instance or dg.DagsterInstance.ephemeral()
    with BuildLock(lock_file(warehouse.resolve())):
        # fail fast with a clear message; the run itself holds the lock from here on. No build
        # runs now: one the instance holds as started was killed (it would hold the run queue)
        fail_abandoned_runs(instance, BUILD_JOB)
    defs = build_definitions(str(landing), str(warehouse), str(randomisation_file) if randomisation_file else None)
    job = defs.resolve_job_def(BUILD_JOB)
    selection = family_selection(list(defs.assets), family) if family else None
    run_id = make_new_run_id()
    done = threading.Event()

    def watch() -> None:
        seen = 0
        while not done.wait(0.25):
            seen = _report_new(instance, run_id, seen, on_step)
        _report_new(instance, run_id, seen, on_step)

    watcher = threading.Thread(target=watch, daemon=True) if on_step else None
    if watcher:
        watcher.start()
    try:
        result = job.execute_in_process(
            instance=instance, run_id=run_id, raise_on_error=False, tags=in_process_tags(), asset_selection=selection,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
    finally:
        done.set()
        if watcher:
            watcher.join()
    if not result.success:
        _raise_if_locked_out(result)
    failed = [
        event.event_specific_data
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION and not event.event_specific_data.passed
    ]
    failed_checks = [f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}" for evaluation in failed]
    # the files a failed contract check names, with the reason: refused, or not taken in this time
    check_details = {
        f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}": [
            line.removeprefix("- ").replace("**", "") for entry in FILE_DETAILS if entry in evaluation.metadata
            for line in str(evaluation.metadata[entry].value).splitlines() if line.strip() and line != "none"
        ]
        for evaluation in failed
    }
    steps = len([e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION])
    errors = [
        f"{event.step_key}: {_root_cause(event.step_failure_data.error)}"
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data.error
    ]
    return BuildResult(success=result.success, run_id=run_id, steps=steps, failed_checks=failed_checks, errors=errors,
                       check_details=check_details)


def _raise_if_locked_out(result: dg.ExecuteInProcessResult) -> None:
    """Raise :class:`BuildLocked` if the run stopped because another build took the warehouse
    between the check above and the run's own lock (two builds started within a moment): it
    would otherwise read as a build that failed for no reason it could tell."""
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            if error.cls_name == BuildLocked.__name__:
                raise BuildLocked(error.message.strip().split(": ", 1)[-1])
            error = error.cause


def _root_cause(error) -> str:
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def _report_new(instance: dg.DagsterInstance, run_id: str, seen: int, on_step: ProgressCallback) -> int:
    records = instance.get_records_for_run(
        run_id=run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    for record in records[seen:]:
        on_step(record.event_log_entry.dagster_event.asset_key.to_user_string())
    return len(records)


def summarise(warehouse: Path) -> list[tuple]:
    """Per family: deliveries, rows delivered, loaded and held back, refused and duplicate files,
    balanced (``warehouse/queries/reconciliation_by_family.sql``)."""
    with read_connection(warehouse) as con:
        return con.execute(query_sql("reconciliation_by_family")).fetchall()
