"""Blinding: nothing in a blinded build agrees with the real arm beyond chance; unblinding only
on purpose, into its own owner-only file; user SQL cannot write or reach other files."""

import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.blinding import RandomisationListRefused, make_dummy_randomisation, validate_randomisation_list
from pipelines.build import build_warehouse
from pipelines.definitions import BUILD_JOB, build_definitions
from pipelines.ingest.delivery import recorded_digest
from pipelines.warehouse import digest_key_file, work_file
from pipelines.cli import app
from tests.blinding_scan import arm_words, association_findings, scan_warehouse, true_arms
from tests.conftest import run_build
from tests.stored_text import columns_containing, warehouse_text
from tests.landing import IL2, PBO, RANDOMISED, RUNIN_ONLY, sample, subject, treg, write_delivery, write_reference


@pytest.fixture(scope="module")
def real_list(trial):
    _, built = trial
    return built.landing / "restricted" / "randomisation_list.parquet"


def test_blinded_build_ignores_the_real_list_and_masks_arms(trial, real_list):
    _, built = trial
    assert real_list.exists()  # the real list sits in the landing zone (owner-only)...
    assert stat.S_IMODE(real_list.stat().st_mode) == 0o600 and stat.S_IMODE(real_list.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(built.landing.stat().st_mode) == 0o700  # the labs' values as delivered, unblinded
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


def test_dummy_blocks_do_not_group_the_subjects_of_real_blocks(trial, real_list):
    _, built = trial
    real_block = {r["usubjid"]: r["block_id"] for r in pq.read_table(real_list).to_pylist()}
    dummy_blocks: dict[str, set] = {}
    for usubjid, block in built.rows("select usubjid, block_id from raw.randomisation"):
        dummy_blocks.setdefault(block, set()).add(usubjid)
    # a dummy block whose subjects all share one real block tells, once one arm leaks, the others'
    inside_one_real_block = [b for b, members in dummy_blocks.items()
                             if len(members) > 1 and len({real_block[u] for u in members}) == 1]
    assert len(dummy_blocks) > 40
    assert len(inside_one_real_block) <= len(dummy_blocks) / 10, inside_one_real_block


def test_a_subject_randomised_later_changes_no_earlier_dummy_arm():
    day = dt.date(2019, 1, 1)
    subjects = [(f"S{i:03d}", ("FRA-LIMB", "GBR-BULBAR")[i % 2], day + dt.timedelta(days=i)) for i in range(60)]

    def arms(listed):
        table = make_dummy_randomisation(listed)
        return dict(zip(table["usubjid"].to_pylist(), zip(table["armcd"].to_pylist(), table["block_id"].to_pylist())))

    before = arms(subjects)
    after = arms([*subjects, ("S999", "FRA-LIMB", day + dt.timedelta(days=365))])
    assert {u: after[u] for u in before} == before


def test_a_subject_removed_or_redated_changes_no_other_dummy_arm():
    # as in a real list, an allocation is never drawn again: the build passes the current list
    day = dt.date(2019, 1, 1)
    subjects = [(f"S{i:03d}", ("FRA-LIMB", "GBR-BULBAR")[i % 2], day + dt.timedelta(days=i)) for i in range(60)]
    first = make_dummy_randomisation(subjects)
    kept = {r["usubjid"]: (r["stratum"], r["block_id"], r["armcd"]) for r in first.to_pylist()}
    changed = [s for s in subjects if s[0] != "S000"]                      # the first subject removed
    changed[5] = (changed[5][0], changed[5][1], day + dt.timedelta(days=400))  # one re-dated
    changed.append(("S999", "FRA-LIMB", day + dt.timedelta(days=500)))        # one added
    second = {r["usubjid"]: (r["block_id"], r["armcd"]) for r in make_dummy_randomisation(changed, kept).to_pylist()}
    assert {u: second[u] for u in kept if u != "S000"} == {u: (b, a) for u, (_, b, a) in kept.items() if u != "S000"}
    # every block stays balanced or one short of it
    by_block: dict[str, list[str]] = {}
    for block, arm in second.values():
        by_block.setdefault(block, []).append(arm)
    assert all(abs(arms.count("A") - arms.count("B")) <= 1 for arms in by_block.values()), by_block


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


@pytest.mark.parametrize("command", [["export", "adsl", "--out", "{out}/adsl.parquet"],
                                     ["export", "gene-matrix", "--out", "{out}/genes.parquet"],
                                     ["report", "--out", "{out}/report"]])
def test_what_is_written_from_the_unblinded_warehouse_is_readable_by_its_owner_only(
        unblinded_trial, trial, tmp_path, command):
    # the same command on the blinded warehouse writes files as the umask says
    previous = os.umask(0o022)
    try:
        for label, (_, built) in (("unblinded", unblinded_trial), ("blinded", trial)):
            out = tmp_path / label
            out.mkdir()
            args = [part.format(out=out) for part in command] + ["--warehouse", str(built.warehouse)]
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, result.output
            written = sorted(path for path in out.rglob("*"))
            assert written, label
            modes = {path.relative_to(out).as_posix(): stat.S_IMODE(path.stat().st_mode) for path in written}
            if label == "unblinded":
                assert modes == {name: 0o700 if (out / name).is_dir() else 0o600 for name in modes}, modes
            else:
                assert modes == {name: 0o755 if (out / name).is_dir() else 0o644 for name in modes}, modes
    finally:
        os.umask(previous)


def test_a_malformed_list_is_refused_by_the_unblind_command(trial, real_list, tmp_path):
    _, built = trial
    bad = tmp_path / "bad_list.parquet"
    pq.write_table(pq.read_table(real_list).slice(1), bad)
    out = tmp_path / "unblinded" / "u.duckdb"
    result = CliRunner().invoke(app, ["unblind", "--randomisation", str(bad), "--landing", str(built.landing), "--out", str(out)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())  # the console wraps long lines
    assert "The randomisation list is refused" in output
    assert "randomised subject(s) missing from the list" in output
    assert "no warehouse was published" in output
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


def test_sql_finds_published_tables_without_their_schema_one_statement_at_a_time(trial):
    _, built = trial
    result = CliRunner().invoke(app, ["sql", "select count(*) as n from adbm", "--format", "json",
                                      "--warehouse", str(built.warehouse)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"n": built.scalar("select count(*) from analysis.adbm")}]
    result = CliRunner().invoke(app, ["sql", "select 1; select 2", "--warehouse", str(built.warehouse)])
    assert result.exit_code == 1 and "give one statement at a time (2 given)" in result.output


# ---------------------------------------------------------------------------------------------
# What a delivery can carry past the declared columns: nothing of it may reach a blinded build.
# ---------------------------------------------------------------------------------------------

ARM_WORDS = {IL2: "IL2-ARM-PLANTED", PBO: "PBO-ARM-PLANTED"}


@pytest.fixture(scope="module")
def side_channels(tmp_path_factory):
    landing = tmp_path_factory.mktemp("side_channels")
    write_reference(landing, [
        sample("S002", IL2, "BASELINE", "WHOLE_BLOOD", 1),
        sample("S005", PBO, "BASELINE", "WHOLE_BLOOD", -3),
        sample("R001", IL2, "BASELINE", "PAXGENE_RNA", 1),
    ])
    # the trial database's subjects export with the arm as an extra column
    write_delivery(landing, "subjects", "subjects_export_20190101.parquet", [
        subject(IL2, "FR01", treatment_arm=ARM_WORDS[IL2]),
        subject(PBO, "FR01", onset="BULBAR", sex="F", treatment_arm=ARM_WORDS[PBO]),
        subject(RUNIN_ONLY, "UK01", randomised=False),
    ])
    # an extra Treg subset (revealing, but not declared) and a file with %Treg written 8,41
    write_delivery(landing, "treg", "treg_batch01.parquet",
                   [treg("S002", pct=13.37, treg_pct_cd45ra_neg=31.73), treg("S005", pct=4.21, treg_pct_cd45ra_neg=7.19)],
                   treg_pct_cd45ra_neg=pa.float64())
    comma = write_delivery(landing, "treg", "treg_batch02.parquet", [treg("S002"), treg("S005")])
    table = pq.read_table(comma)
    table = table.set_column(table.column_names.index("treg_pct_cd4"), "treg_pct_cd4", pa.array(["13,37", "4,21"]))
    pq.write_table(table, comma)
    # revealing genes delivered by Ensembl id only, under an alias, with a versioned id (GENCODE
    # style), and by alias or symbol spelling alone next to an id that is not one
    write_delivery(landing, "transcript_gene", "tg_batch01.parquet", [
        {"sample_id": "R001", "gene_id": "ENSG00000049768", "gene_symbol": None, "expression": 4.4661},
        {"sample_id": "R001", "gene_id": "ENSG00000134460", "gene_symbol": "CD25", "expression": 5.0338},
        {"sample_id": "R001", "gene_id": "ENSG00000198851", "gene_symbol": "CD3E", "expression": 7.25},
    ])
    write_delivery(landing, "transcript_gene", "tg_batch02_reanalysis.parquet", [
        {"sample_id": "R001", "gene_id": "ENSG00000163599.14", "gene_symbol": "CD152", "expression": 5.4612},
        {"sample_id": "R001", "gene_id": "ENSG00000030419.2", "gene_symbol": None, "expression": 4.6033},
        {"sample_id": "R001", "gene_id": "IKZF2-like", "gene_symbol": " helios ", "expression": 6.1234},
        {"sample_id": "R001", "gene_id": "unknown", "gene_symbol": "Foxp-3", "expression": 3.9876},
        {"sample_id": "R001", "gene_id": "ENSG00000198851.3", "gene_symbol": "CD3E", "expression": 7.5},
        # a revealing symbol with a non-breaking space next to another gene's id; the id joined to
        # a symbol; an HGNC id; full-width letters; a non-breaking hyphen
        {"sample_id": "R001", "gene_id": "ENSG00000000003", "gene_symbol": "IL2RA\u00a0", "expression": 5.1111},
        {"sample_id": "R001", "gene_id": "ENSG00000134460_IL2RA", "gene_symbol": None, "expression": 5.2222},
        {"sample_id": "R001", "gene_id": "HGNC:6106", "gene_symbol": None, "expression": 5.3333},
        {"sample_id": "R001", "gene_id": "X1", "gene_symbol": "\uff26\uff2f\uff38\uff30\uff13", "expression": 5.4444},
        {"sample_id": "R001", "gene_id": "X2", "gene_symbol": "CTLA\u20114", "expression": 5.5555},
        # a look-alike letter (Cyrillic) and the full name, next to valid ids of other genes
        {"sample_id": "R001", "gene_id": "ENSG00000000005", "gene_symbol": "FOX\u0420 3", "expression": 5.6666},
        {"sample_id": "R001", "gene_id": "ENSG00000000419", "gene_symbol": "Interleukin-2 receptor subunit alpha",
         "expression": 5.7777},
        {"sample_id": "R001", "gene_id": "ENSG00000000457", "gene_symbol": "SCYL3", "expression": 6.25},
    ])
    return run_build(landing, tmp_path_factory.mktemp("side_channels_wh") / "mirocals.duckdb")


def test_columns_outside_the_contract_are_withheld_in_a_blinded_build(side_channels):
    subjects = side_channels.rows("select usubjid, extra_columns from raw.subjects where extra_columns is not null order by 1")
    assert [(u, json.loads(e)) for u, e in subjects] == [
        (IL2, {"treatment_arm": "withheld (blinded build)"}), (PBO, {"treatment_arm": "withheld (blinded build)"}),
        (RUNIN_ONLY, {"treatment_arm": "withheld (blinded build)"}),
    ]
    subsets = side_channels.rows("select distinct extra_columns from raw.treg where extra_columns is not null")
    assert [json.loads(e) for (e,) in subsets] == [{"treg_pct_cd45ra_neg": "withheld (blinded build)"}]
    warnings = side_channels.scalar("select warnings from audit.delivery where file_name like '%subjects_export%'")
    assert "values of columns outside the contract are withheld (blinded build)" in warnings


def test_a_refused_file_does_not_quote_revealing_values(side_channels):
    reason = side_channels.scalar("select reason from quarantine.rejected_files where file_name like '%treg_batch02%'")
    assert "column 'treg_pct_cd4'" in reason and "row 1, row 2" in reason, reason
    assert "13,37" not in reason and "4,21" not in reason


def test_revealing_genes_are_withheld_by_gene_id_as_well_as_symbol(side_channels):
    raw = dict(side_channels.rows("select gene_id, expression from raw.transcript_gene"))
    assert raw == {
        "ENSG00000049768": None, "ENSG00000134460": None, "ENSG00000198851": 7.25,
        # versioned ids, an id missing its symbol, aliases and symbol spellings: all withheld; so is
        # any row whose id is not an Ensembl gene id (held back, and which gene it is is unknown)
        "ENSG00000163599.14": None, "ENSG00000030419.2": None, "IKZF2-like": None, "unknown": None,
        "ENSG00000198851.3": None,
        "ENSG00000000003": None, "ENSG00000134460_IL2RA": None, "HGNC:6106": None, "X1": None, "X2": None,
        "ENSG00000000005": None, "ENSG00000000419": None, "ENSG00000000457": 6.25,
    }


def test_no_planted_value_is_stored_anywhere(side_channels):
    planted = [*ARM_WORDS.values(), "13.37", "4.21", "31.73", "7.19", "13,37", "4,21", "4.4661", "5.0338",
               "5.4612", "4.6033", "6.1234", "3.9876", "5.1111", "5.2222", "5.3333", "5.4444", "5.5555",
               "5.6666", "5.7777"]
    text = warehouse_text(side_channels.warehouse)
    assert {value: columns_containing(text, value) for value in planted} == {value: [] for value in planted}
    data = side_channels.warehouse.read_bytes()
    assert [v for v in ARM_WORDS.values() if v.encode() in data] == []


def test_an_unblinded_build_keeps_the_values_of_columns_outside_the_contract(side_channels, tmp_path):
    listed = next(side_channels.landing.rglob("randomisation_list.parquet"))
    unblinded = run_build(side_channels.landing, tmp_path / "unblinded.duckdb", listed)
    subjects = unblinded.rows("select usubjid, extra_columns->>'treatment_arm' from raw.subjects where usubjid in (?, ?)", [IL2, PBO])
    assert sorted(subjects) == sorted(ARM_WORDS.items())
    subsets = unblinded.rows("select sample_id, extra_columns->>'treg_pct_cd45ra_neg' from raw.treg where extra_columns is not null")
    assert sorted(subsets) == [("S002", "31.73"), ("S005", "7.19")]


@pytest.fixture(scope="module")
def corrected_withheld(tmp_path_factory):
    """A %Treg corrected (withheld when blinded) and a CD4 count corrected (stored), built blinded
    and unblinded."""
    landing = tmp_path_factory.mktemp("corrected_withheld")
    write_reference(landing, [
        sample("S002", IL2, "BASELINE", "WHOLE_BLOOD", 1),
        sample("S005", PBO, "BASELINE", "WHOLE_BLOOD", -3),
    ])
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002", pct=5.0), treg("S005", cd4=800.0)])
    write_delivery(landing, "treg", "treg_batch02_corrections.parquet", [treg("S002", pct=9.5), treg("S005", cd4=650.0)])
    listed = next(landing.rglob("randomisation_list.parquet"))
    warehouses = tmp_path_factory.mktemp("corrected_withheld_wh")
    return run_build(landing, warehouses / "mirocals.duckdb"), run_build(landing, warehouses / "unblinded.duckdb", listed)


def test_a_correction_of_withheld_values_is_not_called_unchanged_in_a_blinded_build(corrected_withheld):
    blinded, unblinded = corrected_withheld
    query = "select record_key, value_changed from audit.correction where family = 'treg' order by 1"
    # blinded: S002's stored values agree, its %Treg was not stored: whether it changed is unknown
    assert blinded.rows(query) == [("S002", None), ("S005", True)]
    assert unblinded.rows(query) == [("S002", True), ("S005", True)]
    assert blinded.rows("select * from ref.withheld_value where family = 'treg' order by 2") == [
        ("treg", "treg_count"), ("treg", "treg_pct_cd4")]
    assert unblinded.scalar("select count(*) from ref.withheld_value") == 0


# ---------------------------------------------------------------------------------------------
# Blinding cannot be changed at launch, and a build never mixes blinded and unblinded files.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resources", [
    {"blinding": {"config": {"randomisation_file": "/secure/randomisation_list.parquet"}}},
    {"warehouse": {"config": {"owner_only": True}}},
])
def test_a_run_launched_from_the_ui_cannot_unblind(tmp_path, resources):
    # the Launchpad and `dagster job execute -c` hand run config to the code location's job
    job = build_definitions(str(tmp_path / "landing"), str(tmp_path / "mirocals.duckdb")).resolve_job_def(BUILD_JOB)
    with pytest.raises(dg.DagsterInvalidConfigError, match="unexpected config entry"):
        job.execute_in_process(run_config={"resources": resources}, instance=dg.DagsterInstance.ephemeral())
    assert not (tmp_path / "mirocals.duckdb").exists()


@pytest.fixture(scope="module")
def small_trial(tmp_path_factory):
    landing = tmp_path_factory.mktemp("small_trial")
    write_reference(landing, [sample("S002", IL2, "BASELINE", "WHOLE_BLOOD", 1),
                              sample("S005", PBO, "BASELINE", "WHOLE_BLOOD", -3)])
    write_delivery(landing, "treg", "treg_batch01.parquet", [treg("S002", pct=13.37), treg("S005", pct=4.21)])
    return landing, next(landing.rglob("randomisation_list.parquet"))


def _cli_build(landing: Path, warehouse: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("mirocals")), "build", "--landing", str(landing),
               "--warehouse", str(warehouse), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "400"})


def test_a_blinded_build_refuses_an_unblinded_warehouse(small_trial, tmp_path):
    landing, listed = small_trial
    unblinded = run_build(landing, tmp_path / "mirocals_unblinded.duckdb", listed)
    before = unblinded.warehouse.read_bytes()
    result = build_warehouse(landing, unblinded.warehouse, instance=dg.DagsterInstance.ephemeral())
    assert not result.success
    assert any("was built unblinded (audit.unblinding records it)" in e for e in result.errors), result.errors
    assert unblinded.warehouse.read_bytes() == before
    assert sorted(unblinded.rows("select armcd from core.subject where randomised")) == [("IL2",), ("PBO",)]
    # from the command line: the reason and that the build failed, without Dagster's traceback
    # nor a summary of the warehouse it refused to build
    cli = _cli_build(landing, unblinded.warehouse)
    output = cli.stdout + cli.stderr
    assert cli.returncode == 1, output
    assert "was built unblinded (audit.unblinding records it)" in output
    assert "Build failed" in output and "the published warehouse was not changed" in output
    assert "Traceback" not in output and "STEP_FAILURE" not in output and "rows delivered" not in output
    verbose = _cli_build(landing, unblinded.warehouse, "--verbose")
    assert verbose.returncode == 1 and "STEP_FAILURE" in verbose.stdout + verbose.stderr
    assert unblinded.warehouse.read_bytes() == before


def test_an_unblinded_build_refuses_a_blinded_warehouse(small_trial, tmp_path):
    landing, listed = small_trial
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    blinded = run_build(landing, shared / "mirocals.duckdb")
    before = blinded.warehouse.read_bytes()
    result = build_warehouse(landing, blinded.warehouse, instance=dg.DagsterInstance.ephemeral(), randomisation_file=listed)
    assert not result.success
    assert any("is a blinded warehouse: an unblinded build writes its own file" in e for e in result.errors), result.errors
    assert blinded.warehouse.read_bytes() == before
    assert blinded.scalar("select count(treg_pct_cd4) from raw.treg") == 0
    # without its work copy (cleaned up, or the published file copied elsewhere) as well
    shutil.rmtree(blinded.warehouse.parent / ".work")
    result = build_warehouse(landing, blinded.warehouse, instance=dg.DagsterInstance.ephemeral(), randomisation_file=listed)
    assert not result.success and blinded.warehouse.read_bytes() == before
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # the blinded folder is left readable


def test_a_blinded_warehouse_records_keyed_digests_that_cannot_be_recomputed(small_trial, tmp_path):
    # with a plain SHA-256 stored, the withheld values of a one-row delivery are found again by
    # writing the file for each guessed value until the hash matches
    landing, listed = small_trial
    blinded = run_build(landing, tmp_path / "blinded" / "mirocals.duckdb")
    key = digest_key_file(blinded.warehouse)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    treg_file = landing / "labs/treg/treg_batch01.parquet"
    plain = hashlib.sha256(treg_file.read_bytes()).hexdigest()
    stored = blinded.scalar("select file_sha256 from audit.delivery where file_name = 'labs/treg/treg_batch01.parquet'")
    assert stored != plain and plain not in warehouse_text(blinded.warehouse)
    # the same bytes under another name are still a duplicate
    (landing / "labs/treg/treg_batch01_resent.parquet").write_bytes(treg_file.read_bytes())
    try:
        again = run_build(landing, blinded.warehouse)
    finally:
        (landing / "labs/treg/treg_batch01_resent.parquet").unlink()
    assert again.scalar("select status from audit.delivery where file_name like '%resent%'") == "duplicate"
    # an unblinded warehouse (owner-only) keeps the plain SHA-256, and has no key
    unblinded = run_build(landing, tmp_path / "unblinded" / "mirocals_unblinded.duckdb", listed)
    assert not digest_key_file(unblinded.warehouse).exists()
    assert unblinded.scalar("select file_sha256 from audit.delivery where file_name = 'labs/treg/treg_batch01.parquet'") == plain


def test_an_empty_digest_key_a_stopped_build_left_is_not_taken_as_the_key(small_trial, tmp_path):
    # a first build killed just after it created the key file left it empty; the next build took
    # the empty key, and every digest it recorded could be recomputed by anyone
    landing, _ = small_trial
    warehouse = tmp_path / "blinded" / "mirocals.duckdb"
    key_file = digest_key_file(warehouse)
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(b"")
    key_file.chmod(0o600)
    built = run_build(landing, warehouse)
    key = key_file.read_bytes()
    assert len(key) == 32 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    treg_file = landing / "labs/treg/treg_batch01.parquet"
    stored = built.scalar("select file_sha256 from audit.delivery where file_name = 'labs/treg/treg_batch01.parquet'")
    assert stored == recorded_digest(hashlib.sha256(treg_file.read_bytes()).hexdigest(), key)
    assert not list(key_file.parent.glob(f"{key_file.name}.writing-*"))


def test_a_subject_removed_from_the_subjects_export_changes_no_other_dummy_arm(tmp_path):
    landing = tmp_path / "landing"
    subjects = [subject(f"MIROCALS-FR01-{i:04d}", "FR01", randomisation_date=RANDOMISED + dt.timedelta(days=i))
                for i in range(1, 13)]
    write_delivery(landing, "subjects", "subjects_export_20190101.parquet", subjects)
    query = "select usubjid, armcd from core.subject where randomised order by 1"
    before = dict(run_build(landing, tmp_path / "wh" / "mirocals.duckdb").rows(query))
    write_delivery(landing, "subjects", "subjects_export_20190201.parquet", subjects[1:])  # the first one removed
    after = dict(run_build(landing, tmp_path / "wh" / "mirocals.duckdb").rows(query))
    assert len(after) == 11 and after == {u: a for u, a in before.items() if u != "MIROCALS-FR01-0001"}


def test_a_blinded_warehouse_without_its_digest_key_is_not_built_and_earlier_ones_are_keyed(small_trial, tmp_path):
    landing, _ = small_trial
    warehouse = tmp_path / "blinded" / "mirocals.duckdb"
    built = run_build(landing, warehouse)
    query = "select delivery_id, file_name, file_sha256 from audit.delivery order by 1"
    deliveries = built.rows(query)
    key = digest_key_file(warehouse).read_bytes()
    # the key lost: a build stops instead of taking every file in again under plain hashes
    digest_key_file(warehouse).unlink()
    for path in landing.rglob("*.parquet"):
        os.utime(path)  # every file's record changed: each one is hashed again
    result = build_warehouse(landing, warehouse, instance=dg.DagsterInstance.ephemeral())
    assert not result.success and any("its file digests are keyed, and its key" in e for e in result.errors), result.errors
    assert built.rows(query) == deliveries
    # a warehouse whose digests are plain SHA-256 (built before they were keyed) is keyed in place
    plain = {p.relative_to(landing).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in landing.rglob("*.parquet")}
    dummy = work_file(warehouse).parent / "dummy" / "dummy_randomisation.parquet"
    plain["dummy/dummy_randomisation.parquet"] = hashlib.sha256(dummy.read_bytes()).hexdigest()
    for copy in (warehouse, work_file(warehouse)):
        con = duckdb.connect(str(copy))
        for table in ("audit.delivery", "audit.landing_file"):
            for name, sha in plain.items():
                con.execute(f"update {table} set file_sha256 = ? where file_name = ?", [sha, name])
        con.execute("delete from audit.digest_key")
        con.close()
    rekeyed = run_build(landing, warehouse)
    new_key = digest_key_file(warehouse).read_bytes()
    assert new_key != key
    after = rekeyed.rows(query)
    assert [(i, n) for i, n, _ in after] == [(i, n) for i, n, _ in deliveries]  # nothing taken in again
    assert all(sha == recorded_digest(plain[n], new_key) for _, n, sha in after if n in plain)


def test_a_delivery_carrying_columns_outside_its_contract_is_told_in_the_run(side_channels):
    """An arm column in the subjects export is withheld, and the data manager is told: in the raw
    asset's metadata and as a warning in the run's log, not only in audit.delivery."""
    run_id = side_channels.result.run_id
    remarks = []
    for record in side_channels.instance.get_records_for_run(run_id=run_id, limit=100000).records:
        event = record.event_log_entry.dagster_event
        materialization = getattr(getattr(event, "event_specific_data", None), "materialization", None) if event else None
        if materialization is not None and materialization.asset_key.to_user_string() == "raw/subjects":
            remarks.append(str(materialization.metadata["accepted_with_remarks"].value))
    assert len(remarks) == 1
    assert "subjects_export_20190101.parquet: column(s) 'treatment_arm' are not in the contract" in remarks[0]
    assert "withheld (blinded build)" in remarks[0]
    warnings = [e.user_message for e in side_channels.instance.all_logs(run_id)
                if e.level >= logging.WARNING and "accepted with remarks" in e.user_message]
    assert any("'treatment_arm'" in w for w in warnings), warnings
    assert not any(word in " ".join(remarks + warnings) for word in ARM_WORDS.values())
