"""`make ui` starts the Dagster webserver and daemon; every asset and check is listed, and a
build launched through the UI's GraphQL API is queued, run by the daemon and succeeds."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from pipelines.definitions import BUILD_JOB, defs
from tests.landing import treg, write_delivery, write_reference

PROJECT = Path(__file__).resolve().parent.parent

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


@pytest.fixture
def ui(tmp_path):
    landing = tmp_path / "landing"
    write_reference(landing)
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002"), treg("S003", pct=11.0), treg("S005")])
    warehouse = tmp_path / "warehouse" / "mirocals.duckdb"
    port = _free_port()
    log = (tmp_path / "ui.log").open("w")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "ui", f"UI_PORT={port}", f"DAGSTER_HOME={tmp_path / 'dagster_home'}",
         f"MIROCALS_LANDING={landing}", f"MIROCALS_WAREHOUSE={warehouse}"],
        cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")},
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
        yield port, warehouse
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


@pytest.mark.slow
def test_ui_lists_every_asset_and_check_and_runs_a_build(ui):
    port, warehouse = ui
    nodes = _graphql(port, ASSETS_QUERY)["assetNodes"]
    listed_assets = {"/".join(n["assetKey"]["path"]) for n in nodes}
    expected_assets = {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
    assert listed_assets == expected_assets

    listed_checks = {
        ("/".join(n["assetKey"]["path"]), c["name"]) for n in nodes for c in n["assetChecksOrError"].get("checks", [])
    }
    expected_checks = {
        (key.asset_key.to_user_string(), key.name) for key in defs.resolve_asset_graph().asset_check_keys
    }
    assert expected_checks and listed_checks == expected_checks

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution(BUILD_JOB)
    deadline = time.monotonic() + 240
    status = client.get_run_status(run_id)
    while status not in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
        assert time.monotonic() < deadline, f"run {run_id} still {status} after 240 s"
        time.sleep(2)
        status = client.get_run_status(run_id)
    assert status == DagsterRunStatus.SUCCESS

    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert con.execute("select count(*) from core.treg").fetchone()[0] == 9
        assert con.execute("select bool_and(balanced) from audit.reconciliation").fetchone()[0] is True
    finally:
        con.close()
