"""The landing-zone sensor, evaluated tick by tick against a real Dagster instance: which files
become runs, when a run is asked for again, and which changes it sees. (The sensor running under
the daemon is in test_dagster_ui.py.)"""

from __future__ import annotations

import os

import dagster as dg
import pytest

from pipelines.assets import automation
from pipelines.definitions import build_definitions
from pipelines.ingest.delivery import recorded_digest
from pipelines.locking import BuildLock
from pipelines.warehouse import lock_file, read_digest_key
from tests.conftest import run_build
from tests.landing import treg, write_delivery, write_reference

MANIFEST = "reference/sample_manifest/manifest_export_20190101.parquet"
TREG = "labs/treg/treg_batch01.parquet"


@pytest.fixture
def landing(tmp_path, monkeypatch):
    monkeypatch.setattr(automation, "SETTLE_SECONDS", 0)  # every file counts as settled at once
    landing = tmp_path / "landing"
    write_reference(landing)
    return landing


def _tick(landing, warehouse, instance, cursor=None) -> tuple[dict[str, dg.RunRequest], str]:
    sensor = build_definitions(str(landing), str(warehouse)).resolve_sensor_def("landing_zone_sensor")
    data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))
    return {r.tags["mirocals/file"]: r for r in data.run_requests}, data.cursor


def _fail_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> None:
    """A real run in the instance that fails as a build does when another build holds the warehouse."""

    @dg.op
    def take_in():
        raise RuntimeError("Another build is writing this warehouse")

    @dg.job
    def build_warehouse():
        take_in()

    assert not build_warehouse.execute_in_process(instance=instance, tags=tags, raise_on_error=False).success


def test_a_failed_run_is_requested_again_up_to_three_times(landing, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    warehouse = tmp_path / "warehouse" / "mirocals.duckdb"
    requests, cursor = _tick(landing, warehouse, instance)
    assert set(requests) == {MANIFEST, "reference/subjects/subjects_export_20190101.parquet"}
    keys = []
    for _ in range(automation.MAX_ATTEMPTS):
        request = requests[MANIFEST]
        keys.append(request.run_key)
        _fail_run(instance, request.tags)
        requests, cursor = _tick(landing, warehouse, instance, cursor)
    assert len(set(keys)) == automation.MAX_ATTEMPTS and keys[0].endswith("#0") and keys[-1].endswith("#2")
    # after three failures the file is left to the nightly build; the other file is still asked for
    assert set(requests) == {"reference/subjects/subjects_export_20190101.parquet"}


def test_new_files_wait_while_a_build_holds_the_warehouse_instead_of_failing_their_runs(landing, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    warehouse = tmp_path / "warehouse" / "mirocals.duckdb"
    sensor = build_definitions(str(landing), str(warehouse)).resolve_sensor_def("landing_zone_sensor")
    with BuildLock(lock_file(warehouse.resolve())):  # a long command-line build
        for _ in range(automation.MAX_ATTEMPTS + 1):
            data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
            assert data.run_requests == []
            assert "New files wait for the build that holds the warehouse" in data.skip_message
    requests, _ = _tick(landing, warehouse, instance)
    assert MANIFEST in requests  # asked for as soon as the build is over, not left to the nightly build


def test_a_rewrite_that_keeps_size_and_mtime_is_seen(landing):
    found, cursor = automation.landing_files(landing, {}, 1e12)
    before = {relative: sha for _, relative, sha, _ in found}
    path = landing / MANIFEST
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # same length
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    found, _ = automation.landing_files(landing, cursor, 1e12)
    after = {relative: sha for _, relative, sha, _ in found}
    assert after[MANIFEST] != before[MANIFEST]
    assert {k: v for k, v in after.items() if k != MANIFEST} == {k: v for k, v in before.items() if k != MANIFEST}


@pytest.fixture
def treg_taken_in(landing, tmp_path):
    """A Treg batch taken in by a build: (warehouse, the batch's path, its bytes)."""
    warehouse = tmp_path / "warehouse" / "mirocals.duckdb"
    path = write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002", cd4=800.0)])
    run_build(landing, warehouse)
    return warehouse, path, path.read_bytes()


def test_files_taken_in_are_not_asked_for_but_a_file_changed_back_is(landing, treg_taken_in):
    instance = dg.DagsterInstance.ephemeral()
    warehouse, path, original = treg_taken_in
    requests, cursor = _tick(landing, warehouse, instance)
    assert requests == {}

    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002", cd4=850.0)])
    requests, cursor = _tick(landing, warehouse, instance, cursor)
    assert set(requests) == {TREG}
    run_build(landing, warehouse)

    path.write_bytes(original)  # the lab undoes its correction: bytes the file had before
    requests, _ = _tick(landing, warehouse, instance, cursor)
    assert set(requests) == {TREG}
    assert requests[TREG].tags["mirocals/digest"] == recorded_digest(automation.file_sha256(path), read_digest_key(warehouse))


def test_a_file_put_back_as_it_was_loaded_after_a_refused_replacement_starts_no_run(landing, treg_taken_in):
    instance = dg.DagsterInstance.ephemeral()
    warehouse, path, original = treg_taken_in
    path.write_bytes(original[:1000])  # caught mid-transfer: refused as unreadable
    run_build(landing, warehouse)
    path.write_bytes(original)
    assert _tick(landing, warehouse, instance)[0] == {}


def test_a_first_tick_before_any_build_shows_no_plain_hash_and_later_ticks_agree_with_the_build(landing, tmp_path):
    # run tags and the cursor are seen in the UI by blinded users: the digests there are keyed
    # from the start, with the key the first build then uses
    instance = dg.DagsterInstance.ephemeral()
    warehouse = tmp_path / "warehouse" / "mirocals.duckdb"
    requests, cursor = _tick(landing, warehouse, instance)
    path = landing / MANIFEST
    plain = automation.file_sha256(path)
    assert requests[MANIFEST].tags["mirocals/digest"] == recorded_digest(plain, read_digest_key(warehouse)) != plain
    assert plain not in cursor and plain not in requests[MANIFEST].run_key
    run_build(landing, warehouse)
    requests, _ = _tick(landing, warehouse, instance, cursor)
    assert requests == {}  # everything taken in: nothing asked for again
