"""Blinding: nothing in a blinded build agrees with the real arm beyond chance; unblinding only
on purpose, into its own owner-only file; user SQL cannot write or reach other files."""

import json
import re
import stat

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.blinding import RandomisationListRefused, validate_randomisation_list
from pipelines.cli import app
from tests.blinding_scan import arm_words, association_findings, scan_warehouse, true_arms


@pytest.fixture(scope="module")
def real_list(trial):
    _, built = trial
    return built.landing / "restricted" / "randomisation_list.parquet"


def test_blinded_build_ignores_the_real_list_and_masks_arms(trial, real_list):
    _, built = trial
    assert real_list.exists()  # the real list sits in the landing zone...
    files = [r[0] for r in built.rows("select file_name from audit.delivery where family = 'randomisation'")]
    assert files == ["dummy/dummy_randomisation.parquet"]  # ...and was never read
    arms = true_arms(real_list)
    masked = dict(built.rows("select usubjid, armcd from core.subject where randomised"))
    assert set(masked.values()) == {"A", "B"}
    # a masked code agrees with the true arm no better than chance (binomial sd for n=220 is 7.4)
    agreement = sum((masked[u] == "A") == (arms[u] == "IL2") for u in masked)
    assert abs(agreement - len(masked) / 2) < 4 * (len(masked) ** 0.5) / 2
    # balanced within strata like a real permuted-block list
    for stratum, a, b in built.rows(
        "select stratum, count(*) filter (where armcd = 'A'), count(*) filter (where armcd = 'B') "
        "from core.subject where randomised group by stratum"
    ):
        assert abs(a - b) <= 2, stratum


def test_treatment_revealing_values_are_withheld(trial):
    _, built = trial
    assert built.scalar("select count(*) from core.treg where paramcd in ('TREGPCT', 'TREGCNT')") == 0
    assert built.scalar("select count(*) from raw.treg where treg_pct_cd4 is not null or treg_count is not null") == 0
    assert built.scalar("select count(*) from core.transcript_summary where paramcd = 'TRSIG'") == 0
    assert built.scalar("select count(aval) from core.transcript_gene where gene_symbol in ('FOXP3', 'IL2RA', 'CTLA4', 'IKZF2')") == 0
    assert built.scalar("select count(*) from core.treg where paramcd = 'CD4CNT'") > 0


def test_no_table_or_column_of_the_blinded_warehouse_reveals_the_arm(trial, real_list):
    _, built = trial
    findings = scan_warehouse(built.warehouse, true_arms(real_list))
    assert findings == []


def test_the_scanner_finds_the_arm_in_an_unblinded_warehouse(unblinded_trial, real_list):
    _, built = unblinded_trial
    findings = scan_warehouse(built.warehouse, true_arms(real_list))
    assert any(f.startswith("core.subject.armcd") for f in findings)
    assert any("core.treg.aval[TREGPCT]" in f for f in findings)
    assert any("analysis.adbm.R2BASE[TREGPCT]" in f for f in findings)


@pytest.mark.parametrize("table", ["adsl", "adbm", "core.treg", "core.transcript_summary"])
def test_exports_of_the_blinded_warehouse_reveal_nothing(trial, real_list, tmp_path, table):
    _, built = trial
    out = tmp_path / f"{table}.parquet"
    result = CliRunner().invoke(app, ["export", table, "--out", str(out), "--warehouse", str(built.warehouse)])
    assert result.exit_code == 0, result.output
    rows = pl.read_parquet(out).to_dicts()
    assert rows and association_findings(rows, true_arms(real_list), table) == []


def test_dagster_metadata_of_a_blinded_build_reveals_nothing(trial, real_list):
    _, built = trial
    texts = []
    for record in built.instance.get_records_for_run(run_id=built.result.run_id, limit=100000).records:
        event = record.event_log_entry.dagster_event
        data = event.event_specific_data if event else None
        metadata = getattr(getattr(data, "materialization", None), "metadata", None) or getattr(data, "metadata", None) or {}
        texts += [json.dumps(str(value.value)) for value in metadata.values()]
        texts.append(record.event_log_entry.user_message or "")
    blob = " ".join(texts)
    arms = true_arms(real_list)
    for word in arm_words():
        # as a word: the arm code IL2 is a prefix of the gene symbol IL2RA, which previews show
        assert not re.search(rf"\b{re.escape(word)}\b", blob), word
    # previews show subjects with masked arms only, and no treatment-revealing value
    assert "Masked arm" in blob or "| A |" in blob
    for paramcd in ("TREGPCT", "TREGCNT", "TRSIG"):
        assert f"| {paramcd} |" not in blob
    assert "TREGPCT is withheld in blinded builds" in blob
    assert len(arms) == 220


def test_unblinded_build_carries_the_real_arms_exactly(unblinded_trial, real_list):
    _, built = unblinded_trial
    assert dict(built.rows("select usubjid, armcd from core.subject where randomised")) == true_arms(real_list)
    unblinding = built.dicts("select * from audit.unblinding")
    assert len(unblinding) == 1 and unblinding[0]["randomisation_file"] == str(real_list.resolve())
    assert unblinding[0]["unblinded_by"] and len(unblinding[0]["randomisation_sha256"]) == 64
    assert stat.S_IMODE(built.warehouse.stat().st_mode) == 0o600
    assert stat.S_IMODE(built.warehouse.parent.stat().st_mode) == 0o700


def test_a_malformed_list_is_refused_by_the_unblind_command(trial, real_list, tmp_path):
    _, built = trial
    bad = tmp_path / "bad_list.parquet"
    pq.write_table(pq.read_table(real_list).slice(1), bad)
    out = tmp_path / "unblinded" / "u.duckdb"
    result = CliRunner().invoke(app, ["unblind", "--randomisation", str(bad), "--landing", str(built.landing), "--out", str(out)])
    assert result.exit_code == 1
    assert "The randomisation list is refused" in result.output
    assert "randomised subject(s) missing from the list" in result.output
    assert not out.exists()


def _subjects(built) -> list[tuple[str, bool, str]]:
    return built.rows("select usubjid, randomised, stratum from core.subject")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda rows: rows[1:], "randomised subject(s) missing from the list"),
        (lambda rows: rows + rows[:1], "listed more than once"),
        (lambda rows: [(rows[0][0], "XX", rows[0][2])] + rows[1:], "arm code(s) XX not in the study definition"),
        (lambda rows: [(rows[0][0], rows[0][1], "GBR-BULBAR" if rows[0][2] != "GBR-BULBAR" else "FRA-LIMB")] + rows[1:],
         "stratum differs from the subjects file"),
        (lambda rows: rows + [("MIROCALS-FR99-0001", "IL2", "FRA-LIMB")], "not in the subjects file"),
    ],
    ids=["missing", "twice", "unknown-arm", "wrong-stratum", "stranger"],
)
def test_a_malformed_list_is_refused_with_a_clear_message(trial, real_list, damage, message):
    _, built = trial
    listed = [(r["usubjid"], r["armcd"], r["stratum"]) for r in pq.read_table(real_list).to_pylist()]
    validate_randomisation_list(listed, _subjects(built))  # the real list passes
    with pytest.raises(RandomisationListRefused, match="The randomisation list is refused") as refused:
        validate_randomisation_list(damage(listed), _subjects(built))
    assert message in str(refused.value)


def test_unblind_refuses_to_write_the_blinded_file(trial, real_list, monkeypatch):
    _, built = trial
    monkeypatch.setenv("MIROCALS_WAREHOUSE", str(built.warehouse))
    result = CliRunner().invoke(app, ["unblind", "--randomisation", str(real_list), "--landing", str(built.landing),
                                      "--out", str(built.warehouse)])
    assert result.exit_code == 2
    assert "must not be the blinded warehouse" in result.output


@pytest.mark.parametrize(
    "query",
    ["drop table core.subject", "attach '/tmp/other.duckdb' as other", "copy core.subject to '/tmp/out.csv'",
     "select * from read_parquet('/etc/hostname')", "set enable_external_access = true"],
)
def test_sql_cannot_write_or_reach_other_files(trial, query):
    _, built = trial
    result = CliRunner().invoke(app, ["sql", query, "--warehouse", str(built.warehouse)])
    assert result.exit_code == 1
    assert "Refused or failed" in result.output
    assert built.scalar("select count(*) from core.subject") == 304
