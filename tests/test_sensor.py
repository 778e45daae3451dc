"""The landing-zone sensor, evaluated tick by tick against a real Dagster instance: which files
become runs, when a run is asked for again, and which changes it sees. (The sensor running under
the daemon is in test_dagster_ui.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from pipelines.assets import automation
from pipelines.definitions import build_definitions
from pipelines.ingest.delivery import recorded_digest
from pipelines.locking import BuildLock, BuildLocked
from pipelines.warehouse import digest_key_file, lock_file, read_digest_key
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


def test_a_killed_command_line_build_does_not_hold_the_run_queue(landing, tmp_path):
    """`mirocals build` runs in its own process, recorded in the UI's instance; killed (SIGKILL, a
    reboot), the instance would hold its run as started for ever, and the queue (one run at a
    time) would launch nothing after it. The next tick marks it failed; a live one is left alone."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    warehouse = tmp_path / "warehouse" / "mirocals.duckdb"
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002"), treg("S003")])
    build = subprocess.Popen(
        [str(Path(sys.executable).with_name("mirocals")), "build", "--landing", str(landing), "--warehouse", str(warehouse)],
        env={**os.environ, "DAGSTER_HOME": str(home)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        deadline = time.monotonic() + 120
        while not instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
            assert build.poll() is None and time.monotonic() < deadline, "the build never started its run"
            time.sleep(0.05)
        (running,) = instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        # alive: the tick leaves it alone (and the files wait for it)
        _tick(landing, warehouse, instance)
        assert instance.get_run_by_id(running.dagster_run.run_id).status == dg.DagsterRunStatus.STARTED
        build.send_signal(signal.SIGKILL)
        build.wait()
        assert instance.get_run_by_id(running.dagster_run.run_id).status == dg.DagsterRunStatus.STARTED
        requests, _ = _tick(landing, warehouse, instance)
        assert instance.get_run_by_id(running.dagster_run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert MANIFEST in requests


def test_new_files_wait_while_the_published_warehouse_is_held_read_write_or_its_key_is_lost(landing, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    warehouse = tmp_path / "warehouse" / "mirocals.duckdb"
    run_build(landing, warehouse)
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002"), treg("S003")])
    sensor = build_definitions(str(landing), str(warehouse)).resolve_sensor_def("landing_zone_sensor")
    # an analyst's DuckDB shell opened without -readonly, in another process
    analyst = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
                                "print('open', flush=True); sys.stdin.read()", str(warehouse)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert analyst.stdout.readline().strip() == "open"
        data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        assert data.run_requests == [] and "is held open read-write by another process" in data.skip_message
    finally:
        analyst.communicate("", timeout=30)
    key = read_digest_key(warehouse)
    digest_key_file(warehouse).unlink()
    data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert data.run_requests == [] and "Put the key back (it is in the backup of the warehouse folder)" in data.skip_message
    assert not digest_key_file(warehouse).exists()  # no other key made: every file would look new
    digest_key_file(warehouse).write_bytes(key)
    requests, _ = _tick(landing, warehouse, instance)
    assert set(requests) == {TREG}


def test_a_build_starting_while_the_sensor_looks_at_the_lock_is_not_refused(tmp_path):
    path = tmp_path / "wh" / ".work" / "build.lock"
    probing = threading.Event()

    def sensor_tick():
        with BuildLock(path, probe=True):  # the sensor: an instant, as long as its own queries take
            probing.set()
            time.sleep(0.3)

    tick = threading.Thread(target=sensor_tick)
    tick.start()
    probing.wait(5)
    with BuildLock(path):  # waits for the tick instead of stopping with "another build"
        assert path.read_text().startswith(f"PID {os.getpid()}, started ")
    tick.join()
    # a probe never writes itself in as the build holding the warehouse
    path.write_text("PID 1, started 2026-12-01 02:00:00 UTC")
    with BuildLock(path, probe=True):
        pass
    assert path.read_text() == "PID 1, started 2026-12-01 02:00:00 UTC"


def test_a_build_holding_the_lock_still_stops_the_next_one_naming_it(tmp_path):
    path = tmp_path / "wh" / ".work" / "build.lock"
    with BuildLock(path):
        started = time.monotonic()
        with pytest.raises(BuildLocked, match=rf"Another build is writing this warehouse \(PID {os.getpid()}, started "):
            BuildLock(path).acquire()
        assert time.monotonic() - started < 10
        with pytest.raises(BuildLocked):
            BuildLock(path, probe=True).acquire()
