"""`make ui` starts the Dagster webserver and daemon: every asset and check is listed, a build
launched through the UI's GraphQL API is queued, run by the daemon and succeeds, the
landing-zone sensor takes in a new delivery by itself, exactly once, and the Data Docs pages its
metadata links to open over HTTP."""

import os
import re
import signal
from contextlib import contextmanager
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from pipelines.assets.automation import SETTLE_SECONDS
from pipelines.definitions import BUILD_JOB, defs
from pipelines.ingest.delivery import file_sha256, recorded_digest
from pipelines.warehouse import read_digest_key
from tests.landing import treg, write_delivery, write_reference

PROJECT = Path(__file__).resolve().parent.parent
SENSOR_INTERVAL_SECONDS = 3

ASSETS_QUERY = """
{
  assetNodes {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_ui(tmp_path: Path, landing: Path, warehouse: Path, docs_port: int):
    """`make ui` on free ports with its own DAGSTER_HOME; yields the UI's port."""
    port = _free_port()
    log = (tmp_path / "ui.log").open("w")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "ui", f"UI_PORT={port}", f"DOCS_PORT={docs_port}",
         f"DAGSTER_HOME={tmp_path / 'dagster_home'}",
         f"MIROCALS_LANDING={landing}", f"MIROCALS_WAREHOUSE={warehouse}"],
        cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home"),
             "MIROCALS_SENSOR_INTERVAL_SECONDS": str(SENSOR_INTERVAL_SECONDS)},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, (tmp_path / "ui.log").read_text()
            assert time.monotonic() < deadline, "the Dagster UI did not start in 120 s"
            time.sleep(1)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _graphql(port: int, query: str) -> dict:
    response = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=30)
    response.raise_for_status()
    return response.json()["data"]


SENSOR_RUNS = """
{
  runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: "landing_zone_sensor"}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""


def _sensor_runs(port: int) -> list[dict]:
    runs = _graphql(port, SENSOR_RUNS)["runsOrError"]["results"]
    return [{"status": r["status"], **{t["key"]: t["value"] for t in r["tags"]}} for r in runs]


def _wait_for_sensor_runs(port: int, count: int, timeout: float = 240) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        runs = _sensor_runs(port)
        if len(runs) >= count and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
            return runs
        assert time.monotonic() < deadline, f"sensor runs after {timeout} s: {runs}"
        time.sleep(3)


def _deliveries(warehouse: Path) -> list[tuple]:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute("select file_name, file_sha256, status from audit.delivery order by delivery_id").fetchall()
    finally:
        con.close()


LATEST_RAW_METADATA = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        metadataEntries { label ... on UrlMetadataEntry { url } ... on MarkdownMetadataEntry { mdStr } }
      }
    }
  }
}
"""


def _raw_metadata(port: int, family: str) -> dict[str, str]:
    """The newest materialisation of ``raw/<family>``: its URL and Markdown entries by label."""
    response = requests.post(f"http://127.0.0.1:{port}/graphql", timeout=30, json={
        "query": LATEST_RAW_METADATA, "variables": {"path": ["raw", family]}})
    response.raise_for_status()
    [latest] = response.json()["data"]["assetOrError"]["assetMaterializations"]
    return {e["label"]: e.get("url") or e.get("mdStr") for e in latest["metadataEntries"] if e.get("url") or e.get("mdStr")}


def _run_build_from_the_ui(port: int) -> None:
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution(BUILD_JOB)
    deadline = time.monotonic() + 240
    status = client.get_run_status(run_id)
    while status not in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
        assert time.monotonic() < deadline, f"run {run_id} still {status} after 240 s"
        time.sleep(2)
        status = client.get_run_status(run_id)
    assert status == DagsterRunStatus.SUCCESS


@pytest.mark.slow
def test_ui_lists_assets_and_checks_sensor_ingests_once_and_a_ui_build_succeeds(tmp_path):
    landing = tmp_path / "landing"
    write_reference(landing)
    warehouse = tmp_path / "warehouse" / "mirocals.duckdb"
    docs_port = _free_port()
    with running_ui(tmp_path, landing, warehouse, docs_port) as port:
        # every asset and every check is listed
        nodes = _graphql(port, ASSETS_QUERY)["assetNodes"]
        assert {"/".join(n["assetKey"]["path"]) for n in nodes} == {
            spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()
        }
        listed_checks = {
            ("/".join(n["assetKey"]["path"]), c["name"]) for n in nodes for c in n["assetChecksOrError"].get("checks", [])
        }
        expected_checks = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys}
        assert expected_checks and listed_checks == expected_checks

        # the reference files already waiting are picked up without a click
        first = _wait_for_sensor_runs(port, 2)
        assert {r["mirocals/family"] for r in first} == {"subjects", "sample_manifest"}
        assert all(r["status"] == "SUCCESS" for r in first)

        # a new delivery is taken in by the sensor, once, keyed by the file, its digest (the warehouse
        # keys it: blinded) and its change time
        new = write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002"), treg("S003", pct=11.0), treg("S005")])
        sha = recorded_digest(file_sha256(new), read_digest_key(warehouse))
        assert sha != file_sha256(new)
        runs = _wait_for_sensor_runs(port, 3)
        mine = [r for r in runs if r.get("mirocals/digest") == sha]
        assert len(mine) == 1 and mine[0]["status"] == "SUCCESS"
        assert mine[0]["dagster/run_key"] == f"labs/treg/treg_batch01.parquet@{sha}@{new.stat().st_ctime_ns}#0"
        assert [d for d in _deliveries(warehouse) if d[0] == "labs/treg/treg_batch01.parquet"] == [
            ("labs/treg/treg_batch01.parquet", sha, "accepted")
        ]

        # the Data Docs index and the delivery's validation page are linked over HTTP, and open
        metadata = _raw_metadata(port, "treg")
        docs = f"http://127.0.0.1:{docs_port}/"
        assert metadata["data_docs"] == f"{docs}index.html"
        [page] = re.findall(r"\[labs/treg/treg_batch01.parquet\]\((\S+)\)", metadata["validation_pages"])
        assert page.startswith(f"{docs}validations/treg/") and page.endswith(".html")
        opened = requests.get(page, timeout=10)
        assert opened.status_code == 200 and "treg" in opened.text
        assert "treg" in requests.get(metadata["data_docs"], timeout=10).text

        # the same bytes under another name: one run records it as a duplicate (for a snapshot
        # family the same thing can be an earlier export sent again, which counts)
        resent = landing / "labs" / "treg" / "treg_batch01_resent.parquet"
        resent.write_bytes(new.read_bytes())
        _wait_for_sensor_runs(port, 4)
        assert [d for d in _deliveries(warehouse) if d[0] == "labs/treg/treg_batch01_resent.parquet"] == [
            ("labs/treg/treg_batch01_resent.parquet", sha, "duplicate")
        ]
        started = time.monotonic()

        # a build started from the UI is queued, run by the daemon, succeeds and publishes
        _run_build_from_the_ui(port)
        import duckdb

        con = duckdb.connect(str(warehouse), read_only=True)
        try:
            # blinded build: CD4 counts load, treatment-revealing Treg values are withheld
            assert con.execute("select paramcd, count(*) from core.treg group by all").fetchall() == [("CD4CNT", 3)]
            assert con.execute("select bool_and(balanced) from audit.reconciliation").fetchone()[0] is True
        finally:
            con.close()

        time.sleep(max(0.0, SETTLE_SECONDS + 3 * SENSOR_INTERVAL_SECONDS - (time.monotonic() - started)))
        # nothing new since: the sensor starts no further run
        runs = _sensor_runs(port)
        assert len([r for r in runs if r.get("mirocals/digest") == sha]) == 2
        assert len(runs) == 4
