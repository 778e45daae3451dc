"""Automation: a sensor that ingests each new file once, and a nightly refresh."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg

from pipelines.ingest.delivery import discover_files, file_sha256
from pipelines.study import load_contracts
from pipelines.warehouse import read_connection

# A file must be left alone this long before it is taken in (a transfer may still be writing it).
SETTLE_SECONDS = 5
NIGHTLY_CRON = "0 2 * * *"
# The randomisation list is never picked up from the landing zone (see pipelines/blinding.py).
WATCHED_FAMILIES = [c for c in load_contracts().families.values() if c.family != "randomisation"]


def new_files(landing: Path, seen: dict[str, list], now: float) -> tuple[list[tuple[str, str, str]], dict[str, list]]:
    """Settled files whose (size, mtime) changed since the last tick: (family, relative path, SHA-256)."""
    found, cursor = [], {}
    for contract in WATCHED_FAMILIES:
        for path in discover_files(landing, contract):
            stat = path.stat()
            relative = path.relative_to(landing).as_posix()
            if now - stat.st_mtime < SETTLE_SECONDS:
                continue
            previous = seen.get(relative)
            if previous and previous[:2] == [stat.st_size, stat.st_mtime_ns]:
                cursor[relative] = previous
                continue
            sha = file_sha256(path)
            cursor[relative] = [stat.st_size, stat.st_mtime_ns, sha]
            found.append((contract.family, relative, sha))
    return found, cursor


def downstream_keys(assets: list[dg.AssetsDefinition], start: dg.AssetKey) -> list[dg.AssetKey]:
    """``start`` and every asset that depends on it, directly or not."""
    deps = {key: {d.asset_key for d in a.specs_by_key[key].deps} for a in assets for key in a.keys}
    selected, changed = {start}, True
    while changed:
        changed = False
        for key, upstream in deps.items():
            if key not in selected and upstream & selected:
                selected.add(key)
                changed = True
    return sorted(selected, key=lambda k: k.to_user_string())


def delivered_files(warehouse: Path) -> set[tuple[str, str]]:
    """(file name, SHA-256) of every file the published warehouse has already taken in."""
    if not warehouse.exists():
        return set()
    with read_connection(warehouse) as con:
        return set(con.execute("select file_name, file_sha256 from audit.delivery").fetchall())


def build_delivery_sensor(
    job, landing: Path, warehouse: Path, assets: list[dg.AssetsDefinition], interval_seconds: int
) -> dg.SensorDefinition:
    # A new file's run takes in its own family (and raw assets that derive from it, such as the
    # blinded dummy randomisation from the subjects) and rebuilds every table; the other
    # families' landing folders are not touched.
    built = [key for a in assets for key in a.keys if key.path[0] != "raw"]
    selections = {
        c.family: sorted(
            set(built) | set(downstream_keys(assets, dg.AssetKey(["raw", c.family]))), key=lambda k: k.to_user_string()
        )
        for c in WATCHED_FAMILIES
    }

    @dg.sensor(
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Watches the landing zone. Each new file becomes a run keyed by its SHA-256, so the same "
            "bytes are taken in once; the run ingests the file's family and rebuilds everything downstream."
        ),
    )
    def landing_zone_sensor(context: dg.SensorEvaluationContext):
        seen = json.loads(context.cursor) if context.cursor else {}
        found, cursor = new_files(landing, seen, time.time())
        known = delivered_files(warehouse) if found else set()
        for family, relative, sha in found:
            if (relative, sha) in known:
                continue
            yield dg.RunRequest(
                run_key=sha,
                asset_selection=selections[family],
                tags={"mirocals/family": family, "mirocals/file": relative, "mirocals/sha256": sha},
            )
        context.update_cursor(json.dumps(cursor, sort_keys=True))

    return landing_zone_sensor


def build_nightly_schedule(job) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="nightly_refresh",
        job=job,
        cron_schedule=NIGHTLY_CRON,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every night: take in anything missed, rebuild the analysis layer and publish.",
    )
