"""The gene-level table, the large one: validation of large deliveries value by value, raw rows
clustered by gene id, and the incremental models that judge its rows (copies within a
delivery, corrections across deliveries) without reading earlier deliveries again."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from pipelines.api import load
from pipelines.cli import app
from pipelines.ingest.delivery import cluster_order
from pipelines.ingest.expectations import validate_table
from pipelines.study import load_contracts
from pipelines.warehouse import work_file
from tests.conftest import run_build
from tests.landing import IL2, PBO, sample, write_delivery, write_reference

GENE = load_contracts()["transcript_gene"]

# (gene_id, symbol) of the test genes; FOXP3 is treatment-revealing (withheld when blinded).
GENES = [("ENSG00000010610", "CD4"), ("ENSG00000111640", "GAPDH"), ("ENSG00000198851", "CD3E"),
         ("ENSG00000049768", "FOXP3"), ("ENSG00000153563", "CD8A")]


def _gene_rows(sample_id: str, shift: float = 0.0) -> list[dict]:
    return [{"sample_id": sample_id, "gene_id": g, "gene_symbol": s, "expression": 5.0 + i + shift}
            for i, (g, s) in enumerate(GENES)]


def _faulty_gene_table(rng: np.random.Generator, rows: int = 6000) -> pa.Table:
    """Gene rows with repeated bad values, as a large delivery would carry them."""
    samples = np.array(["S1", "S2", " s3 ", "S\u04214", None, "S5"], dtype=object)   # a look-alike, a null
    genes = np.array(["ENSG00000010610", "ENSG00000111640", "ENSG123", "ENSG00000198851"], dtype=object)
    expression = rng.normal(6, 2, rows).round(2)
    expression[rng.choice(rows, 40, replace=False)] = np.nan
    expression[rng.choice(rows, 25, replace=False)] = 99.0
    expression[rng.choice(rows, 300, replace=False)] = rng.uniform(30, 60, 300)   # > 200 distinct bad values
    expression[rng.choice(rows, 5, replace=False)] = -3.0
    return pa.table({
        "sample_id": pa.array(samples[rng.integers(0, len(samples), rows)].tolist(), pa.string()),
        "gene_id": pa.array(genes[rng.integers(0, len(genes), rows)].tolist(), pa.string()),
        "gene_symbol": pa.array(["CD4"] * rows),
        "expression": pa.array(expression, from_pandas=False),
        "row_number": pa.array(np.arange(1, rows + 1)),
    })


@pytest.mark.parametrize("rows", [6000, 3000])
def test_value_by_value_validation_gives_the_row_by_row_verdicts(rows):
    table = _faulty_gene_table(np.random.default_rng(7), rows)
    columns = list(GENE.column_names)
    by_value = validate_table(GENE.suite, table, columns, by_value_above=0)
    by_row = validate_table(GENE.suite, table, columns, by_value_above=10**9)

    assert len(by_value.gx_results) == len(set(columns) - {"gene_symbol"})   # one GX run per checked column
    assert len(by_row.gx_results) == 1
    assert sorted(by_value.row_failures, key=str) == sorted(by_row.row_failures, key=str)
    assert by_row.row_failures, "the table carries faults"
    assert by_value.success is by_row.success is False

    def counts(result):
        return [(o.rule, o.success, o.element_count, o.unexpected_count) for o in result.outcomes]

    assert counts(by_value) == counts(by_row)
    for value_outcome, row_outcome in zip(by_value.outcomes, by_row.outcomes, strict=True):
        assert set(map(str, value_outcome.examples)) <= set(map(str, row_outcome.examples)) | {
            str(f.reason.split("(delivered: ")[1][:-1]) for f in by_row.row_failures if f.rule == row_outcome.rule
        }


def test_clustering_sorts_by_the_column_keeps_every_row_and_their_numbers():
    rng = np.random.default_rng(3)
    symbols = rng.choice(["CD4", "GAPDH", "ACTB", None, "B2M"], 500).tolist()
    table = pa.table({"gene_symbol": pa.array(symbols, pa.string()), "row_number": pa.array(np.arange(1, 501))})
    result = table.take(pa.array(cluster_order(table, "gene_symbol")))
    ordered = result["gene_symbol"].to_pylist()
    present = [s for s in ordered if s is not None]
    assert present == sorted(present) and ordered[len(present):] == [None] * (500 - len(present))
    assert sorted(result["row_number"].to_pylist()) == list(range(1, 501))
    for symbol in ("CD4", None):   # stable: the delivered order within a symbol is kept
        numbers = [n for s, n in zip(ordered, result["row_number"].to_pylist(), strict=True) if s == symbol]
        assert numbers == sorted(numbers)


GENE_MANIFEST = [
    sample("R001", IL2, "BASELINE", "PAXGENE_RNA", 1),
    sample("R002", IL2, "M3", "PAXGENE_RNA", 85),
    sample("R003", PBO, "BASELINE", "PAXGENE_RNA", -3),
    sample("R004", PBO, "BASELINE", "SERUM", -3),
]


@pytest.fixture
def gene_landing(tmp_path: Path) -> Path:
    landing = tmp_path / "landing"
    write_reference(landing, samples=GENE_MANIFEST)
    rows = _gene_rows("R001") + _gene_rows("R002") + _gene_rows("R003")
    rows.append(dict(rows[0]))                                   # exact copy of row 1
    rows.append({**rows[6], "expression": rows[6]["expression"] + 1})   # R002 GAPDH twice, values differ
    rows += _gene_rows("R004")                                   # a serum sample: wrong matrix
    write_delivery(landing, "transcript_gene", "tg_batch01.parquet", rows)
    return landing


def _current(built) -> dict[tuple[str, str], float]:
    return {(s, g): v for s, g, v in built.rows("select sample_id, gene_symbol, aval from core.transcript_gene")}


def _materialisation_metadata(built, asset: str) -> dict:
    for record in built.instance.get_records_for_run(run_id=built.result.run_id, limit=100000).records:
        event = record.event_log_entry.dagster_event
        materialisation = getattr(getattr(event, "event_specific_data", None), "materialization", None)
        if materialisation is not None and materialisation.asset_key.to_user_string() == asset:
            return dict(materialisation.metadata)
    raise AssertionError(f"{asset} was not materialised in run {built.result.run_id}")


def test_gene_rows_are_judged_within_and_across_deliveries(gene_landing: Path, tmp_path: Path):
    warehouse = tmp_path / "wh" / "m.duckdb"
    first = run_build(gene_landing, warehouse)

    rules = dict(first.rows(
        "select row_number, qc_rule from staging.stg_lab__transcript_gene where qc_rule is not null"))
    assert rules == {16: "duplicate_row", 7: "conflicting_values", 17: "conflicting_values",
                     **{n: "matrix_mismatch" for n in range(18, 23)}}
    current = _current(first)
    assert ("R002", "GAPDH") not in current                      # conflicting copies: neither loads
    assert current[("R001", "CD4")] == 5.0
    assert current[("R003", "FOXP3")] is None                    # treatment-revealing: withheld
    assert len(current) == 14

    # A corrected re-delivery of R001 (one value changed, one row failing an expectation) and a
    # new sample R002 value: the newest valid value wins, the history is kept.
    corrected = _gene_rows("R001", shift=0.5)
    corrected[1]["expression"] = math.nan                        # GAPDH: fails, the older value stays
    corrected.append({"sample_id": "r002 ", "gene_id": "ENSG00000111640", "gene_symbol": "GAPDH", "expression": 7.0})
    write_delivery(gene_landing, "transcript_gene", "tg_batch02_corrected.parquet", corrected)
    second = run_build(gene_landing, warehouse)

    current = _current(second)
    assert current[("R001", "CD4")] == 5.5 and current[("R001", "CD3E")] == 7.5
    assert current[("R001", "GAPDH")] == 6.0                     # the failing correction does not replace it
    assert current[("R002", "GAPDH")] == 7.0                     # a later delivery settles the conflict
    assert len(current) == 15
    corrections = second.rows(
        "select record_key, superseded_values->>'expression', replacing_values->>'expression' "
        "from audit.correction where family = 'transcript_gene' order by record_key")
    assert corrections == [
        ("R001 ENSG00000010610", "5.0", "5.5"),
        ("R001 ENSG00000049768", None, None),                    # FOXP3: corrected, values withheld
        ("R001 ENSG00000153563", "9.0", "9.5"),
        ("R001 ENSG00000198851", "7.0", "7.5"),
    ]
    assert second.scalar("select bool_and(balanced) from audit.reconciliation") is True
    superseded = second.rows(
        "select file_name, rows_superseded from audit.reconciliation where family = 'transcript_gene' order by 1")
    assert superseded == [("labs/transcript_gene/tg_batch01.parquet", 4),
                          ("labs/transcript_gene/tg_batch02_corrected.parquet", 0)]

    # The UI's preview of audit.correction leaves the gene rows out (a corrected sample lists every
    # gene, and computing them at each build cost more as corrections piled up) and says so.
    preview = _materialisation_metadata(second, "audit/correction")
    assert "transcript_gene" not in preview["preview"].value
    assert "gene rows" in preview["preview_leaves_out"].value

    # Each delivery was taken in once by each incremental model.
    taken = second.rows("select model, count(*), count(distinct delivery_id) from audit.incremental_state group by 1")
    assert {(m, n, d) for m, n, d in taken} == {
        (f"staging.int_transcript_gene__{name}", 2, 2) for name in ("samples", "copies", "delivered_symbols", "latest")}


def test_changed_model_sql_rebuilds_the_model_from_every_delivery(gene_landing: Path, tmp_path: Path):
    warehouse = tmp_path / "wh" / "m.duckdb"
    run_build(gene_landing, warehouse)
    write_delivery(gene_landing, "transcript_gene", "tg_batch02.parquet", _gene_rows("R001", shift=1.0))
    before = _current(run_build(gene_landing, warehouse))

    # As if the model file had changed since the deliveries were taken in.
    con = duckdb.connect(str(work_file(warehouse.resolve())))
    con.execute("update audit.incremental_state set model_sha256 = 'older' "
                "where model = 'staging.int_transcript_gene__latest'")
    con.execute("delete from staging.int_transcript_gene__latest")
    con.close()
    after = run_build(gene_landing, warehouse)

    assert _current(after) == before
    assert after.scalar("select count(*) from staging.int_transcript_gene__latest where not is_latest") == 5
    assert after.scalar("select count(*) from audit.incremental_state where model_sha256 = 'older'") == 0


def _row_by_row_audit(built) -> dict[str, set]:
    """What judging every row of the gene staging view gives, per delivery and per row."""
    counts = built.rows(
        "select delivery_id, count(*) filter (where qc_rule is null), count(*) filter (where qc_rule is not null), "
        "count(*) filter (where qc_rule is null and not is_current) from staging.stg_lab__transcript_gene group by 1")
    held = built.rows(
        "select delivery_id, row_number, qc_rule, qc_reason, to_json(struct_pack(sample_id := delivered_sample_id, "
        "gene_id, gene_symbol, expression, extra_columns)) from staging.stg_lab__transcript_gene where qc_rule is not null")
    superseded = built.rows(
        "select sample_id || ' ' || gene_id, delivery_id, row_number from staging.stg_lab__transcript_gene "
        "where qc_rule is null and not is_current")
    return {"counts": set(counts), "held": set(held), "superseded": set(superseded)}


def _audit(built) -> dict[str, set]:
    """The same, as the audit and quarantine tables give it."""
    counts = built.rows("select delivery_id, rows_loaded, rows_quarantined, rows_superseded from audit.reconciliation "
                        "where family = 'transcript_gene' and status <> 'rejected'")
    held = built.rows("select delivery_id, row_number, rule, reason, delivered_row from quarantine.rejected_rows "
                      "where family = 'transcript_gene'")
    superseded = built.rows("select record_key, superseded_delivery_id, superseded_row_number from audit.correction "
                            "where family = 'transcript_gene'")
    return {"counts": set(counts), "held": set(held), "superseded": set(superseded)}


def test_gene_audit_tables_read_from_verdict_tables_agree_with_every_row(gene_landing: Path, tmp_path: Path):
    """Reconciliation, quarantine and corrections of the gene table come from its small verdict
    tables, reading only the gene rows they list: they must say what judging every row says, also when a
    later manifest changes a sample's verdict."""
    warehouse = tmp_path / "wh" / "m.duckdb"
    run_build(gene_landing, warehouse)
    second = _gene_rows("r001 ", shift=0.5)                       # corrects R001, delivered in lower case
    second[1]["expression"] = math.nan                            # fails an expectation
    second.append(dict(second[0]))                                # an exact copy
    second.append(dict(second[1]))                                # a copy that also fails an expectation
    second += _gene_rows("R404") + _gene_rows("R004", shift=1.0)  # not in the manifest; a serum sample
    write_delivery(gene_landing, "transcript_gene", "tg_batch02.parquet", second)
    built = run_build(gene_landing, warehouse)

    by_row = _row_by_row_audit(built)
    assert _audit(built) == by_row
    rules = {rule for _, _, rule, *_ in by_row["held"]}
    assert {"duplicate_row", "conflicting_values", "matrix_mismatch", "sample_unknown"} <= rules
    assert len(rules) > 4, "an expectation's rule is among them"
    assert len(by_row["superseded"]) == 4

    # The next manifest export also lists R404 as an RNA tube: its rows load, without the gene
    # delivery again.
    write_delivery(gene_landing, "sample_manifest", "manifest_export_20190301.parquet",
                   [*GENE_MANIFEST, sample("R404", PBO, "M3", "PAXGENE_RNA", 90)])
    rebuilt = run_build(gene_landing, warehouse)
    assert _audit(rebuilt) == _row_by_row_audit(rebuilt)
    assert "sample_unknown" not in {rule for _, _, rule, *_ in _audit(rebuilt)["held"]}
    assert rebuilt.scalar("select count(*) from core.transcript_gene where sample_id = 'R404'") == len(GENES)


def test_every_gene_row_in_core_reaches_adgene_with_its_sample_visit(gene_landing, tmp_path):
    # the landing zone has gene rows and no per-sample summary: ADGENE takes visit and treatment
    # from the sample itself, not from ADBM's summary records
    built = run_build(gene_landing, tmp_path / "wh" / "mirocals.duckdb")
    core = built.rows("select sample_id, gene_id, aval from core.transcript_gene order by all")
    assert core
    assert built.rows("select SAMPLEID, GENEID, AVAL from analysis.adgene order by all") == core
    visits = dict(built.rows("select distinct SAMPLEID, AVISIT from analysis.adgene"))
    assert visits == {"R001": "BASELINE", "R002": "M3", "R003": "BASELINE"}
    # each gene row carries its sample's analysis flag
    flags = set(built.rows("select distinct SAMPLEID, ANL01FL from analysis.adgene"))
    assert flags == set(built.rows("select SAMPLEID, ANL01FL from analysis.adgene_samples")) and ("R001", "Y") in flags
    assert built.scalar("select count(*) from analysis.adbm where SRCTBL = 'core.transcript_summary'") == 0
    # every row carries its subject's (masked) arm
    arms = dict(built.rows("select usubjid, arm from core.subject where randomised"))
    assert arms and set(arms.values()) <= {"Masked arm A", "Masked arm B"}
    assert built.rows("select distinct USUBJID, TRTP from analysis.adgene order by 1") == sorted(arms.items())


def test_a_model_materialised_the_other_way_in_an_earlier_warehouse_is_replaced(gene_landing, tmp_path):
    """quarantine.rejected_rows and audit.correction became views; a warehouse built when they
    were tables (and one where a table model was a view) is rebuilt with each model as it is now."""
    warehouse = tmp_path / "wh" / "m.duckdb"
    first = run_build(gene_landing, warehouse)
    held = first.rows("select * from quarantine.rejected_rows order by all")
    assert held, "the landing zone has held-back rows"
    con = duckdb.connect(str(work_file(warehouse.resolve())))
    for schema, name in (("quarantine", "rejected_rows"), ("audit", "correction")):
        con.execute(f"create table {schema}.{name}_then as select * from {schema}.{name}")
        con.execute(f"drop view {schema}.{name}")
        con.execute(f"alter table {schema}.{name}_then rename to {name}")
    for schema, name in (("audit", "reconciliation"), ("staging", "int_transcript_gene__copies")):
        con.execute(f"create view {schema}.{name}_then as select * from {schema}.{name}")
        con.execute(f"drop table {schema}.{name}")
        con.execute(f"alter view {schema}.{name}_then rename to {name}")
    copies = first.rows("select * from staging.int_transcript_gene__copies order by all")
    con.close()

    second = run_build(gene_landing, warehouse)
    kinds = dict(second.rows(
        "select schema_name || '.' || table_name, 'table' from duckdb_tables() "
        "union all select schema_name || '.' || view_name, 'view' from duckdb_views() where not internal"))
    assert kinds["quarantine.rejected_rows"] == "view"
    assert kinds["audit.correction"] == "view"
    assert kinds["audit.reconciliation"] == "table"
    assert kinds["staging.int_transcript_gene__copies"] == "table"  # incremental: taken in again from raw
    assert second.rows("select * from staging.int_transcript_gene__copies order by all") == copies
    assert second.rows("select * from quarantine.rejected_rows order by all") == held


def test_a_held_back_gene_correction_is_listed_with_the_value_that_stays_current(gene_landing, tmp_path):
    warehouse = tmp_path / "wh" / "m.duckdb"
    first = run_build(gene_landing, warehouse)
    earlier = first.scalar("select delivery_id from audit.delivery where family = 'transcript_gene'")
    corrected = _gene_rows("R001", shift=0.5)
    corrected[1]["expression"] = 99.0                                # GAPDH out of range: held back
    write_delivery(gene_landing, "transcript_gene", "tg_batch02.parquet", corrected)
    second = run_build(gene_landing, warehouse)
    listed = second.rows("select record_key, rule, current_delivery_id, current_row_number "
                         "from audit.held_back_correction")
    assert listed == [(f"R001 {GENES[1][0]}", "expression_in_range", earlier, 2)]
    assert _current(second)[("R001", "GAPDH")] == 6.0 and _current(second)[("R001", "CD4")] == 5.5


def test_adgene_change_takes_each_genes_baseline_from_the_subjects_baseline_rna_sample(tmp_path):
    landing = tmp_path / "landing"
    write_reference(landing, samples=[
        sample("B1", IL2, "BASELINE", "PAXGENE_RNA", -10),
        sample("B2", IL2, "BASELINE", "PAXGENE_RNA", 1),   # the later one in the window: the baseline
        sample("B3", IL2, "M3", "PAXGENE_RNA", 85),
        sample("C1", PBO, "BASELINE", "PAXGENE_RNA", -5),  # the baseline: C2 was never sequenced
        sample("C2", PBO, "BASELINE", "PAXGENE_RNA", 1),
        sample("C3", PBO, "M3", "PAXGENE_RNA", 86),
    ])
    rows = (_gene_rows("B1", shift=0.5) + _gene_rows("B2") + _gene_rows("B3", shift=2.25)
            + _gene_rows("C1", shift=0.75) + _gene_rows("C3", shift=1))
    gapdh = next(row for row in rows if row["sample_id"] == "B2" and row["gene_symbol"] == "GAPDH")
    rows.append({**gapdh, "expression": gapdh["expression"] + 1})   # B2's GAPDH twice, values differ: held back
    write_delivery(landing, "transcript_gene", "tg_batch01.parquet", rows)
    built = run_build(landing, tmp_path / "wh" / "mirocals.duckdb")

    assert built.rows("select SAMPLEID from analysis.adgene_samples where ABLFL = 'Y' order by 1") == [("B2",), ("C1",)]
    change = "select SAMPLEID, AVAL, ABLFL, BASE, CHG from analysis.adgene_change where GENESYM = ? order by ADY"
    assert built.rows(change, ["CD4"]) == [
        ("B1", 5.5, None, 5.0, None),    # before the baseline: no change
        ("C1", 5.75, "Y", 5.75, None),
        ("B2", 5.0, "Y", 5.0, None),
        ("B3", 7.25, None, 5.0, 2.25),
        ("C3", 6.0, None, 5.75, 0.25),
    ]
    # the baseline sample's value was held back: that gene has no baseline (not B1's value)
    assert built.rows(change, ["GAPDH"]) == [("B1", 6.5, None, None, None), ("C1", 6.75, "Y", 6.75, None),
                                             ("B3", 8.25, None, None, None), ("C3", 7.0, None, 6.75, 0.25)]
    # a withheld gene (blinded build) has neither baseline nor change
    assert built.rows("select count(*), count(ABLFL), count(BASE), count(CHG) from analysis.adgene_change "
                      "where GENESYM = 'FOXP3'") == [(5, 0, 0, 0)]
    # the same rows as ADGENE, which carries the baseline flag
    assert built.rows("select * exclude (BASE, CHG) from analysis.adgene_change order by all") == \
        built.rows("select * from analysis.adgene order by all")


def test_a_gene_renamed_between_deliveries_is_one_gene_in_adgene(tmp_path):
    """A lab's annotation update renames a gene between deliveries (same Ensembl id): ADGENE names
    it by the symbol most of its rows carry, so its baseline, a pull by either name and the gene
    matrix see one gene; core keeps each row's symbol as delivered. The choice does not depend on
    the order the files arrived in: a warehouse rebuilt from the landing zone names it the same."""
    landing = tmp_path / "landing"
    write_reference(landing, samples=[sample("B2", IL2, "BASELINE", "PAXGENE_RNA", 1),
                                      sample("B3", IL2, "M3", "PAXGENE_RNA", 85),
                                      sample("C3", PBO, "M3", "PAXGENE_RNA", 86)])
    write_delivery(landing, "transcript_gene", "tg_batch01.parquet", _gene_rows("B2"))

    def renamed(rows: list[dict]) -> list[dict]:
        return [{**row, "gene_symbol": "CD8"} if row["gene_symbol"] == "CD8A" else row for row in rows]

    write_delivery(landing, "transcript_gene", "tg_batch02.parquet",
                   renamed(_gene_rows("B3", shift=1.5) + _gene_rows("C3")))
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    built = run_build(landing, warehouse)

    cd8 = "ENSG00000153563"
    assert built.rows("select sample_id, gene_symbol from core.transcript_gene where gene_id = ? order by 1", [cd8]) == [
        ("B2", "CD8A"), ("B3", "CD8"), ("C3", "CD8")]
    assert built.rows("select SAMPLEID, GENESYM, BASE, CHG from analysis.adgene_change where GENEID = ? and USUBJID = ? "
                      "order by ADY", [cd8, IL2]) == [("B2", "CD8", 9.0, None), ("B3", "CD8", 9.0, 1.5)]
    # pulled by either name, from ADGENE and from core
    for name in ("CD8", "CD8A"):
        assert load("adgene", genes=name, warehouse=warehouse).height == 3
        assert load("core.transcript_gene", genes=name, warehouse=warehouse)["gene_symbol"].sort().to_list() == [
            "CD8", "CD8", "CD8A"]
    out = tmp_path / "genes.parquet"
    result = CliRunner().invoke(app, ["export", "gene-matrix", "--out", str(out), "--warehouse", str(warehouse)])
    assert result.exit_code == 0, result.output
    matrix = pl.read_parquet(out)
    assert matrix["GENEID"].is_unique().all() and matrix.filter(pl.col("GENEID") == cd8)["GENESYM"].to_list() == ["CD8"]

    # B2 delivered again, under the older name, after batch02: the names now tie, and the later
    # in alphabetical order wins, whatever the order of arrival
    write_delivery(landing, "transcript_gene", "tg_batch01_corrected.parquet", _gene_rows("B2", shift=0.25))
    updated = run_build(landing, warehouse)
    rebuilt = run_build(landing, tmp_path / "rebuilt" / "mirocals.duckdb")
    names = "select GENEID, GENESYM from analysis.adgene group by all order by all"
    assert updated.rows(names) == rebuilt.rows(names)
    assert dict(updated.rows(names))[cd8] == "CD8A"


def test_a_gene_delivered_without_a_symbol_keeps_the_symbol_other_rows_give_it(tmp_path):
    landing = tmp_path / "landing"
    write_reference(landing, samples=[sample("B2", IL2, "BASELINE", "PAXGENE_RNA", 1),
                                      sample("B3", IL2, "M3", "PAXGENE_RNA", 85)])
    write_delivery(landing, "transcript_gene", "tg_batch01.parquet", _gene_rows("B2"))
    warehouse = tmp_path / "wh" / "mirocals.duckdb"
    run_build(landing, warehouse)
    write_delivery(landing, "transcript_gene", "tg_batch02.parquet", [
        {**row, "gene_symbol": None} if row["gene_symbol"] == "CD8A" else row for row in _gene_rows("B3")])
    updated = run_build(landing, warehouse)
    rebuilt = run_build(landing, tmp_path / "rebuilt" / "mirocals.duckdb")
    names = "select GENEID, GENESYM, count(*) from analysis.adgene group by all order by all"
    assert updated.rows(names) == rebuilt.rows(names)
    assert ("ENSG00000153563", "CD8A", 2) in updated.rows(names)
