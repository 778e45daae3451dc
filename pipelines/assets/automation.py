"""Automation: a sensor that takes in each new or changed file, and a nightly refresh."""

from __future__ import annotations

import json
import time
from dataclasses import astuple
from pathlib import Path

import dagster as dg
import duckdb

from pipelines.ingest.delivery import FileStat, discover_files, file_sha256
from pipelines.locking import BuildLock, BuildLocked
from pipelines.runs import fail_abandoned_runs
from pipelines.study import load_contracts
from pipelines.warehouse import (
    DigestKeyMissing,
    create_digest_key,
    has_table,
    held_by_another_writer,
    key_check,
    lock_file,
    query_sql,
    read_connection,
    recorded_digest,
    recorded_digest_key,
)

# A file must be left alone this long before it is taken in (a transfer may still be writing it).
SETTLE_SECONDS = 5
# A file whose runs failed this many times (another build held the warehouse, say) is left to the
# nightly build.
MAX_ATTEMPTS = 3
ARRIVAL_TAG = "mirocals/arrival"
NIGHTLY_CRON = "0 2 * * *"
# The randomisation list is never picked up from the landing zone (see pipelines/blinding.py).
WATCHED_FAMILIES = [c for c in load_contracts().families.values() if c.family != "randomisation"]


def landing_files(
    landing: Path, seen: dict[str, list], now: float, digest_key: bytes | None = None
) -> tuple[list[tuple[str, str, str, int]], dict[str, list]]:
    """Settled files as (family, relative path, digest, change time in ns), and the cursor that
    keeps each file's record with its digest: a file is hashed again only when its record (size,
    mtime, ctime, inode, device, and which key the digest was made with) changed, so a rewrite
    that keeps size and mtime is still seen."""
    key_id = key_check(digest_key)[:12] if digest_key is not None else "plain"
    found, cursor = [], {}
    for contract in WATCHED_FAMILIES:
        for path in discover_files(landing, contract):
            relative = path.relative_to(landing).as_posix()
            try:
                stat = FileStat.of(path)
                if now - max(stat.mtime_ns, stat.ctime_ns) / 1e9 < SETTLE_SECONDS:
                    continue
                record = [*astuple(stat), key_id]
                previous = seen.get(relative)
                sha = previous[-1] if previous and previous[:-1] == record else recorded_digest(file_sha256(path), digest_key)
            except OSError:
                continue  # unreadable (permissions) or gone: looked at again at the next tick
            cursor[relative] = [*record, sha]
            found.append((contract.family, relative, sha, stat.ctime_ns))
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


def family_selection(assets: list[dg.AssetsDefinition], family: str) -> list[dg.AssetKey]:
    """What a run for a new file of ``family`` materialises: its raw asset, the raw assets that
    derive from it (the blinded dummy randomisation from the subjects) and every table; the
    other families' raw assets are left alone, their landing folders not looked at."""
    built = [key for a in assets for key in a.keys if key.path[0] != "raw"]
    return sorted(set(built) | set(downstream_keys(assets, dg.AssetKey(["raw", family]))),
                  key=lambda k: k.to_user_string())


def taken_in(warehouse: Path) -> dict[str, set[str]]:
    """By file name, the bytes the published warehouse need not take in again: its newest
    delivery's and its newest accepted delivery's digest (as ``current_bytes`` in a build)."""
    if not warehouse.exists():
        return {}
    with read_connection(warehouse) as con:
        rows = con.execute(query_sql("taken_in_bytes")).fetchall()
    return {name: {newest, loaded} - {None} for name, newest, loaded in rows}


def digest_key(warehouse: Path) -> bytes:
    """The published warehouse's digest key; made here only when the warehouse records none (a
    new one would make every file look new). Raises DigestKeyMissing when it records one and the
    key file is missing or another (it must come back from the backup)."""
    recorded = None
    if warehouse.exists():
        with read_connection(warehouse) as con:
            if has_table(con, "audit", "digest_key"):
                recorded = con.execute("select key_check from audit.digest_key").fetchall()
    return recorded_digest_key(warehouse, recorded[0][0]) if recorded else create_digest_key(warehouse)


def build_delivery_sensor(
    job, landing: Path, warehouse: Path, assets: list[dg.AssetsDefinition], interval_seconds: int
) -> dg.SensorDefinition:
    # A new file's run takes in its own family (and raw assets that derive from it, such as the
    # blinded dummy randomisation from the subjects) and rebuilds every table; the other
    # families' landing folders are not touched.
    selections = {c.family: family_selection(assets, c.family) for c in WATCHED_FAMILIES}

    @dg.sensor(
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Watches the landing zone. Each settled file whose bytes are not its newest delivery in the "
            "published warehouse becomes a run, keyed by the file, its digest and its change time; a "
            "failed run is requested again (up to 3 times). While a build holds the warehouse, new "
            "files wait. The run ingests the file's family and rebuilds everything downstream."
        ),
    )
    def landing_zone_sensor(context: dg.SensorEvaluationContext):
        # While a build holds the warehouse (a command-line build, or this sensor's previous run),
        # a run would fail on its lock and count towards MAX_ATTEMPTS: the files wait instead.
        try:
            with BuildLock(lock_file(warehouse.resolve()), probe=True):
                # no build is running: a command-line build the instance holds as started was
                # killed, and would hold the run queue (one run at a time) for ever
                for run_id in fail_abandoned_runs(context.instance, job.name):
                    context.log.warning(f"run {run_id}: its process is gone; marked failed")
        except BuildLocked as locked:
            return dg.SkipReason(f"New files wait for the build that holds the warehouse. {locked}")
        seen = json.loads(context.cursor) if context.cursor else {}
        try:
            # the blinded warehouse's digest key, made here if no build has made it yet: a plain
            # hash would show in the run's tags (see pipelines/warehouse.py settle_digest_key)
            key = digest_key(warehouse)
            found, cursor = landing_files(landing, seen, time.time(), key)
            known = taken_in(warehouse) if found else {}
        except DigestKeyMissing as missing:
            return dg.SkipReason(f"New files wait: {missing}")
        except duckdb.IOException as error:
            if not held_by_another_writer(error):
                raise
            # a session opened read-write (the DuckDB shell, R's default) lets no other process in
            return dg.SkipReason(
                f"New files wait: the published warehouse {warehouse} is held open read-write by another "
                f"process ({str(error).splitlines()[0]}); analysts open it read-only.")
        for family, relative, sha, changed_ns in found:
            if sha in known.get(relative, ()):
                continue
            # one arrival: these bytes at this path, written at this time (a file changed back to
            # earlier bytes is a new arrival); a failed run is requested again, up to MAX_ATTEMPTS
            arrival = f"{relative}@{sha}@{changed_ns}"
            failed = len(context.instance.get_run_records(
                filters=dg.RunsFilter(tags={ARRIVAL_TAG: arrival},
                                      statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED])))
            if failed >= MAX_ATTEMPTS:
                context.log.warning(f"{relative}: {failed} runs failed; left to the nightly build")
                continue
            yield dg.RunRequest(
                run_key=f"{arrival}#{failed}",
                asset_selection=selections[family],
                tags={"mirocals/family": family, "mirocals/file": relative, "mirocals/digest": sha, ARRIVAL_TAG: arrival},
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
