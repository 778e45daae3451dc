"""Analysis tables on a generated trial: the effects as generated, and traceability."""

import datetime
import json
import math
import shutil

import duckdb
import pandas as pd
import polars as pl
import pyreadstat
import pytest
from typer.testing import CliRunner

from pipelines.api import build_query, gene_ids, load, resolve_table
from pipelines.cli import app
from pipelines.dictionary import render_markdown
from pipelines.export import write_xpt, xpt_label
from pipelines.study import PROJECT_ROOT, load_study
from pipelines.warehouse import sas_labels, table_docs


def test_treg_ratio_to_baseline_rises_on_ld_il2_only(unblinded_trial):
    _, built = unblinded_trial
    ratios = dict(built.rows(
        "select TRTP, avg(R2BASE) from analysis.adbm where PARAMCD = 'TREGPCT' and ANL01FL = 'Y' "
        "and ADY > 1 group by TRTP"
    ))
    arms = {a["armcd"]: a["arm"] for a in load_study().arms}
    assert ratios[arms["IL2"]] > 1.5
    assert 0.9 < ratios[arms["PBO"]] < 1.1


def test_a_z_score_gets_change_from_baseline_but_no_percent_change_or_ratio(unblinded_trial):
    _, built = unblinded_trial
    chg, pchg, r2base = built.rows(
        "select count(CHG), count(PCHG), count(R2BASE) from analysis.adbm where PARAMCD = 'TRSIG'")[0]
    assert chg > 0 and (pchg, r2base) == (0, 0)
    assert built.scalar("select count(PCHG) from analysis.adbm where PARAMCD = 'NFLS'") > 0


def test_pnfh_strata_split_as_generated(trial):
    _, built = trial
    split = dict(built.rows("select coalesce(PNFHSTR, 'MISSING'), count(*) from analysis.adsl where ITTFL = 'Y' group by all"))
    total = sum(split.values())
    assert total == 220
    assert 0.62 < split["LOW"] / total < 0.78
    assert 0.14 < split["HIGH"] / total < 0.28
    assert 0.03 < split["MISSING"] / total < 0.15
    # the stratum follows the cut-point held in the study definition
    cut = load_study().analysis["pnfh_cutpoint_pgml"]
    assert built.scalar("select count(*) from analysis.adsl where (PNFHSTR = 'LOW' and BPNFHC > ?) "
                        "or (PNFHSTR = 'HIGH' and BPNFHC <= ?)", [cut, cut]) == 0


def test_every_analysis_row_traces_to_exactly_one_core_row(trial):
    _, built = trial
    adbm_rows = built.scalar("select count(*) from analysis.adbm")
    traced = built.scalar(
        """
        select count(*) from analysis.adbm a
        join (
            select 'core.treg' as t, delivery_id, row_number, paramcd, file_name from core.treg
            union all select 'core.neurofilament', delivery_id, row_number, paramcd, file_name from core.neurofilament
            union all select 'core.transcript_summary', delivery_id, row_number, paramcd, file_name from core.transcript_summary
        ) c on c.t = a.SRCTBL and c.delivery_id = a.SRCDLVID and c.row_number = a.SRCROW and c.paramcd = a.PARAMCD
            and c.file_name = a.SRCFILE
        join audit.delivery d on d.delivery_id = a.SRCDLVID and d.file_name = a.SRCFILE
        """
    )
    assert adbm_rows > 0 and traced == adbm_rows
    assert built.scalar("select count(*) from (select SRCTBL, SRCDLVID, SRCROW, PARAMCD from analysis.adbm "
                        "group by all having count(*) > 1)") == 0
    core_total = built.scalar("select (select count(*) from core.treg) + (select count(*) from core.neurofilament) "
                              "+ (select count(*) from core.transcript_summary)")
    assert adbm_rows == core_total
    gene_rows = built.scalar("select count(*) from analysis.adgene")
    assert gene_rows == built.scalar("select count(*) from core.transcript_gene")
    assert built.scalar("select count(*) from analysis.adgene a join core.transcript_gene g "
                        "on g.delivery_id = a.SRCDLVID and g.row_number = a.SRCROW and g.aval is not distinct from a.AVAL") == gene_rows


def test_baseline_and_change_are_consistent(trial):
    _, built = trial
    assert built.scalar("select count(*) from (select USUBJID, PARAMCD from analysis.adbm where ABLFL = 'Y' "
                        "group by all having count(*) > 1)") == 0
    assert built.scalar("select count(*) from analysis.adbm where ABLFL = 'Y' and ADY > 1") == 0
    assert built.scalar("select count(*) from analysis.adbm where CHG is not null and abs(CHG - (AVAL - BASE)) > 1e-9") == 0
    assert built.scalar("select count(*) from analysis.adbm where BLQFL = 'Y' and IMPUTRL is null and AVAL is not null") == 0


def test_load_pushes_filters_into_duckdb(unblinded_trial):
    _, built = unblinded_trial
    frame = load("adbm", params=["TREGPCT"], visits=["M3"], arm="IL2", warehouse=built.warehouse)
    assert isinstance(frame, pl.DataFrame) and frame.height > 0
    arm = next(a["arm"] for a in load_study().arms if a["armcd"] == "IL2")
    assert set(frame["PARAMCD"]) == {"TREGPCT"} and set(frame["AVISIT"]) == {"M3"} and set(frame["TRTP"]) == {arm}
    assert frame.height == built.scalar("select count(*) from analysis.adbm where PARAMCD = 'TREGPCT' "
                                        "and AVISIT = 'M3' and TRTP = ?", [arm])
    pandas_frame = load("core.neurofilament", params=["NFLS"], warehouse=built.warehouse, pandas=True)
    assert len(pandas_frame) == built.scalar("select count(*) from core.neurofilament where paramcd = 'NFLS'")
    with pytest.raises(ValueError, match="Unknown table"):
        load("adxx", warehouse=built.warehouse)


def test_load_takes_one_code_as_a_string_and_refuses_what_cannot_match(trial):
    _, built = trial
    expected = built.scalar("select count(*) from analysis.adbm where PARAMCD = 'NFLS' and AVISIT = 'M3'")
    assert expected > 0
    assert load("adbm", params="NFLS", visits="M3", warehouse=built.warehouse).height == expected
    with pytest.raises(ValueError, match="Unknown parameter 'NFL'; parameters are .*NFLS"):
        load("adbm", params=["NFL"], warehouse=built.warehouse)
    with pytest.raises(ValueError, match="Unknown visit 'MONTH3'"):
        load("adbm", visits="MONTH3", warehouse=built.warehouse)
    # tables without the column say so, instead of failing in DuckDB
    with pytest.raises(ValueError, match="core.sample cannot be filtered by params"):
        load("core.sample", params="NFLS", warehouse=built.warehouse)
    with pytest.raises(ValueError, match=r"core.treg has no column\(s\) matrix"):
        load("core.treg", columns=["usubjid", "matrix"], warehouse=built.warehouse)
    # a name two schemas publish (core.visit, ref.visit) asks for its schema
    with pytest.raises(ValueError, match=r"Table 'visit' is ambiguous: name its schema, core.visit or ref.visit"):
        load("visit", warehouse=built.warehouse)
    assert load("core.visit", warehouse=built.warehouse).height == len(load_study().visits)


def test_a_withheld_parameter_asked_of_a_blinded_warehouse_is_refused_not_empty(trial, unblinded_trial, tmp_path):
    _, blinded = trial
    with pytest.raises(ValueError, match="TREGPCT is withheld from this blinded warehouse"):
        load("adbm", params=["NFLS", "TREGPCT"], warehouse=blinded.warehouse)
    out = tmp_path / "tregpct.csv"
    result = CliRunner().invoke(app, ["export", "adbm", "--param", "TRSIG", "--out", str(out),
                                      "--warehouse", str(blinded.warehouse)])
    assert result.exit_code == 2 and "TRSIG is withheld from this blinded warehouse" in result.output
    assert not out.exists()
    _, unblinded = unblinded_trial
    assert load("adbm", params=["TREGPCT"], warehouse=unblinded.warehouse).height > 0


@pytest.mark.parametrize("command", [["export", "adbm", "--out", "{tmp}/adbm.parquet"],
                                     ["export", "gene-matrix", "--out", "{tmp}/genes.parquet"],
                                     ["report", "--out", "{tmp}/report"], ["sql", "select 1"]])
def test_a_reader_command_without_a_warehouse_says_so_in_one_line(tmp_path, command):
    missing = tmp_path / "nowhere" / "mirocals.duckdb"
    args = [part.format(tmp=tmp_path) for part in command] + ["--warehouse", str(missing)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    # one message (the console wraps it at the terminal's width), no traceback
    expected = f"No warehouse at {missing}: run `mirocals build` (or `make demo`) first."
    assert "".join(result.output.split()) == "".join(expected.split()) and "Traceback" not in result.output


@pytest.mark.parametrize("table", ["adbm", "adsl", "core.treg"])
def test_load_filters_by_masked_arm_in_a_blinded_warehouse(trial, table):
    _, built = trial
    column = {"adbm": "TRTP", "adsl": "TRT01P", "core.treg": "armcd"}[table]
    wanted = {"TRTP": "Masked arm A", "TRT01P": "Masked arm A", "armcd": "A"}[column]
    expected = built.scalar(f"select count(*) from {resolve_table(table)} where {column} = ?", [wanted])
    assert expected > 0
    for arm in ("A", "Masked arm A"):
        frame = load(table, arm=arm, warehouse=built.warehouse)
        assert frame.height == expected and set(frame[column]) == {wanted}
    with pytest.raises(ValueError, match="Unknown arm 'C'"):
        load(table, arm="C", warehouse=built.warehouse)
    # a real arm of the study, asked of a blinded warehouse: refused, not an empty table
    with pytest.raises(ValueError, match=r"holds no arm 'IL2'; it is blinded: its arms are masked, and its "
                                         r"arms are A \(Masked arm A\), B \(Masked arm B\)"):
        load(table, arm=["A", "IL2"], warehouse=built.warehouse)


@pytest.mark.parametrize(("text", "label"), [
    ("Actual treatment for period 1 (as planned in the randomisation list)", "Actual treatment for period 1"),
    ("Treg count, cells/\u00b5L, as reported by the laboratory", "Treg count, cells/\u00b5L, as reported by"),
    ("Analysis value", "Analysis value"),
    ("x" * 60, "x" * 40),
])
def test_xpt_labels_are_cut_after_a_whole_word_within_40_bytes(text, label):
    assert xpt_label(text) == label
    assert len(label.encode("utf-8")) <= 40


def test_xpt_dates_stay_numeric_sas_dates_when_every_value_is_empty(tmp_path):
    frame = pd.DataFrame({"USUBJID": ["S1", "S2"], "DTHDT": pd.to_datetime([None, None]),
                          "ADT": pd.to_datetime(["2019-03-01", None])})
    write_xpt(frame, "analysis.adsl", tmp_path / "adsl.xpt", dates=["DTHDT", "ADT"])
    data, meta = pyreadstat.read_xport(str(tmp_path / "adsl.xpt"), disable_datetime_conversion=True)
    assert meta.original_variable_types["DTHDT"] == "DATE9" and meta.original_variable_types["ADT"] == "DATE9"
    assert meta.readstat_variable_types["DTHDT"] == "double"
    assert data["DTHDT"].isna().all()
    assert data["ADT"][0] == (datetime.date(2019, 3, 1) - datetime.date(1960, 1, 1)).days and math.isnan(data["ADT"][1])


def test_xpt_export_writes_a_list_as_its_items_joined(trial, tmp_path):
    _, built = trial
    out = tmp_path / "visit.xpt"
    result = CliRunner().invoke(app, ["export", "core.visit", "--format", "xpt", "--out", str(out),
                                      "--warehouse", str(built.warehouse)])
    assert result.exit_code == 0, result.output
    written = dict(zip(*pyreadstat.read_xport(str(out))[0][["VISIT_CO", "MATRICES"]].to_dict("list").values()))
    stored = dict(built.rows("select visit_code, array_to_string(list_sort(matrices), ', ') from core.visit"))
    assert {visit: ", ".join(sorted(text.split(", "))) for visit, text in written.items()} == stored
    assert written["BASELINE"].count(",") >= 2 and "[" not in written["BASELINE"]


def test_xpt_export_refuses_text_longer_than_sas_transport_holds(tmp_path):
    frame = pd.DataFrame({"family": ["treg", "treg"], "superseded_values": ["x" * 120, "\u00e9" * 101]})
    with pytest.raises(ValueError, match="superseded_values holds up to 202") as refused:
        write_xpt(frame, "audit.correction", tmp_path / "correction.xpt")
    assert "Export it as parquet or csv" in str(refused.value)
    assert not (tmp_path / "correction.xpt").exists()
    write_xpt(frame.assign(superseded_values=["x" * 200, None]), "audit.correction", tmp_path / "ok.xpt")
    assert pyreadstat.read_xport(str(tmp_path / "ok.xpt"))[0].shape == (2, 2)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "xpt"])
def test_export_writes_every_row(trial, tmp_path, fmt):
    _, built = trial
    out = tmp_path / f"adbm.{fmt}"
    result = CliRunner().invoke(app, ["export", "adbm", "--format", fmt, "--out", str(out),
                                      "--warehouse", str(built.warehouse), "--param", "NFLS"])
    assert result.exit_code == 0, result.output
    expected = built.scalar("select count(*) from analysis.adbm where PARAMCD = 'NFLS'")
    if fmt == "parquet":
        frame = pl.read_parquet(out)
    elif fmt == "csv":
        frame = pl.read_csv(out, infer_schema_length=0)
    else:
        data, meta = pyreadstat.read_xport(str(out))
        frame = pl.from_pandas(data)
        assert all(len(name) <= 8 for name in frame.columns)
        assert meta.column_names_to_labels["AVAL"] == "Analysis Value"
        # ADaM dates are SAS dates (days since 1960 with a date format), not datetimes
        assert meta.original_variable_types["ADT"] == "DATE9"
        delivered = {d for (d,) in built.rows("select distinct ADT from analysis.adbm where PARAMCD = 'NFLS'")}
        assert set(data["ADT"].dropna()) == delivered - {None}
        raw, _ = pyreadstat.read_xport(str(out), disable_datetime_conversion=True)
        first = min(delivered - {None})
        assert raw["ADT"].min() == (first - datetime.date(1960, 1, 1)).days
    assert frame.height == expected
    # in the table's key order, as ADaM datasets are
    keys = frame.select("USUBJID", "PARAMCD", "SAMPLEID").rows()
    assert keys == built.rows("select USUBJID, PARAMCD, SAMPLEID from analysis.adbm where PARAMCD = 'NFLS' "
                              "order by USUBJID, PARAMCD, ADT, SAMPLEID, SRCDLVID, SRCROW")


def test_adsl_subject_identifiers_are_unique_in_the_study_and_arms_are_as_randomised(trial):
    _, built = trial
    adsl = load("adsl", warehouse=built.warehouse)
    assert adsl["SUBJID"].n_unique() == adsl.height > 0
    assert (adsl["STUDYID"] + "-" + adsl["SUBJID"]).to_list() == adsl["USUBJID"].to_list()
    assert adsl["USUBJID"].to_list() == sorted(adsl["USUBJID"].to_list())
    randomised = adsl.filter(pl.col("ITTFL") == "Y")
    assert randomised["ARM"].to_list() == randomised["TRT01P"].to_list() == randomised["ACTARM"].to_list()
    assert set(randomised["ARMCD"]) == set(randomised["ACTARMCD"]) == {c for (c,) in built.rows("select armcd from ref.arm")}
    never = adsl.filter(pl.col("ITTFL") == "N")
    assert never.height > 0 and set(never["ARMCD"]) == set(never["ACTARMCD"]) == {"NOTASSGN"}
    assert set(never["ARM"]) == {"Not Assigned"} and never["TRT01P"].null_count() == never.height


def test_gene_matrix_export(trial, tmp_path):
    _, built = trial
    out = tmp_path / "genes.parquet"
    result = CliRunner().invoke(app, ["export", "gene-matrix", "--out", str(out), "--warehouse", str(built.warehouse)])
    assert result.exit_code == 0, result.output
    matrix = pl.read_parquet(out)
    samples = pl.read_parquet(tmp_path / "genes_samples.parquet")
    # the blinded build's treatment-revealing genes have no value: left out, and said so
    withheld = built.scalar("select count(*) from (select GENEID from analysis.adgene group by GENEID having count(AVAL) = 0)")
    assert withheld == 4 and f"{withheld} genes without a value left out" in " ".join(result.output.split())
    assert matrix.height == built.scalar("select count(distinct GENEID) from analysis.adgene") - withheld
    assert not matrix.select(pl.all_horizontal(pl.exclude("GENEID", "GENESYM").is_null())).to_series().any()
    assert matrix.width == 2 + samples.height
    # column k of the matrix is row k of the annotation, as omics tools pair them
    assert matrix.columns[2:] == samples["SAMPLEID"].to_list()
    assert samples["USUBJID"].to_list() == sorted(samples["USUBJID"].to_list())
    # the annotation says which sample of a subject's visit window to analyse
    assert samples.filter(pl.col("ANL01FL") == "Y").height == built.scalar(
        "select count(*) from analysis.adgene_samples where ANL01FL = 'Y'") > 0
    # and which is the subject's baseline sample, the one ADGENE's changes are from
    assert samples.filter(pl.col("ABLFL") == "Y")["SAMPLEID"].sort().to_list() == [sample for sample, in built.rows(
        "select SAMPLEID from analysis.adgene_samples where ABLFL = 'Y' order by 1")] != []
    sample = samples["SAMPLEID"][0]
    gene = matrix["GENEID"][0]
    assert matrix.filter(pl.col("GENEID") == gene)[sample][0] == pytest.approx(
        built.scalar("select AVAL from analysis.adgene where GENEID = ? and SAMPLEID = ?", [gene, sample]))


def test_data_dictionary_in_the_repository_is_current():
    committed = (PROJECT_ROOT / "docs" / "data_dictionary.md").read_text(encoding="utf-8")
    assert committed == render_markdown(), "run `mirocals dictionary` and commit docs/data_dictionary.md"


def test_an_rna_sample_has_the_same_visit_and_treatment_in_adbm_and_adgene(trial):
    _, built = trial
    columns = "USUBJID, SITEID, TRTP, TRTPN, TRTA, SAMPLEID, ADT, ADY, VISIT, AVISIT, AVISITN"
    in_adbm = built.rows(f"select distinct {columns} from analysis.adbm where SRCTBL = 'core.transcript_summary' order by all")
    in_adgene = built.rows(
        f"select distinct {columns} from analysis.adgene_samples "
        "where SAMPLEID in (select SAMPLEID from analysis.adbm where SRCTBL = 'core.transcript_summary') order by all")
    assert in_adbm and in_adgene == in_adbm


def test_every_analysis_variable_has_a_whole_cdisc_label_for_sas():
    docs = table_docs()
    variables = {c for key, doc in docs.items() if key.startswith("analysis.") for c in doc["columns"]}
    labels = sas_labels()
    assert variables == set(labels), (variables - set(labels), set(labels) - variables)
    assert all(0 < len(label.encode("utf-8")) <= 40 for label in labels.values()), labels


def test_xpt_export_labels_analysis_variables_as_cdisc_names_them(trial, tmp_path):
    _, built = trial
    out = tmp_path / "adsl.xpt"
    result = CliRunner().invoke(app, ["export", "adsl", "--format", "xpt", "--out", str(out), "--warehouse", str(built.warehouse)])
    assert result.exit_code == 0, result.output
    labels = pyreadstat.read_xport(str(out), metadataonly=True)[1].column_names_to_labels
    assert labels["TRT01P"] == "Planned Treatment for Period 01" and labels["ARM"] == "Description of Planned Arm"
    assert labels["USUBJID"] == "Unique Subject Identifier" and labels["PNFHSTR"] == "Baseline CSF pNfH Stratum"


def test_the_gene_tables_are_pulled_by_gene_id_or_symbol(trial, tmp_path):
    _, built = trial
    (first_id, first_symbol), (second_id, _) = built.rows(
        "select GENEID, any_value(GENESYM) from analysis.adgene group by 1 having count(AVAL) > 0 order by 1 limit 2")
    expected = built.scalar("select count(*) from analysis.adgene where GENEID in (?, ?)", [first_id, second_id])
    change = load("adgene_change", genes=[first_symbol, second_id], warehouse=built.warehouse)
    assert change.height == expected > 0 and set(change["GENEID"]) == {first_id, second_id}
    core = load("core.transcript_gene", genes=first_id, warehouse=built.warehouse)
    assert core.height == built.scalar("select count(*) from core.transcript_gene where gene_id = ?", [first_id])
    assert set(core["gene_id"]) == {first_id}
    out = tmp_path / "one_gene.csv"
    result = CliRunner().invoke(app, ["export", "adgene", "--gene", first_symbol, "--format", "csv", "--out", str(out),
                                      "--warehouse", str(built.warehouse)])
    assert result.exit_code == 0, result.output
    assert set(pl.read_csv(out)["GENESYM"]) == {first_symbol}
    # a misspelt gene, a withheld one (blinded build) and a table without genes are refused, not empty
    with pytest.raises(ValueError, match="No gene 'CD4X'"):
        load("adgene", genes=["CD4X"], warehouse=built.warehouse)
    with pytest.raises(ValueError, match="FOXP3 is withheld from this blinded warehouse"):
        load("adgene", genes="FOXP3", warehouse=built.warehouse)
    with pytest.raises(ValueError, match="cannot be filtered by genes"):
        load("adbm", genes="CD4", warehouse=built.warehouse)
    with pytest.raises(ValueError, match="name at least one gene"):
        load("adgene", genes=[], warehouse=built.warehouse)
    matrix = CliRunner().invoke(app, ["export", "gene-matrix", "--gene", first_symbol, "--out", str(tmp_path / "m.parquet"),
                                      "--warehouse", str(built.warehouse)])
    assert matrix.exit_code == 2 and "takes no --param, --visit or --gene" in " ".join(matrix.output.split())
    # a warehouse built before genes could be looked up by name says to build it again
    earlier = tmp_path / "earlier.duckdb"
    shutil.copyfile(built.warehouse, earlier)
    with duckdb.connect(str(earlier)) as con:
        con.execute("drop table staging.int_transcript_gene__delivered_symbols")
    with pytest.raises(ValueError, match="build it again"):
        load("adgene", genes=first_symbol, warehouse=earlier)


def _plan_nodes(node):
    for child in node if isinstance(node, list) else [node]:
        yield child
        yield from _plan_nodes(child.get("children", []))


def test_a_pull_of_genes_reaches_the_stored_gene_rows_as_a_filter_on_their_ids(trial):
    """The benchmark measures the speed; this checks the plan it comes from: the genes' ids are
    constants, which DuckDB pushes below analysis.adgene_change's window into the scan of the
    stored gene rows (a lookup subquery in the filter made it compute every gene's baseline)."""
    _, built = trial
    with duckdb.connect(str(built.warehouse), read_only=True) as con:
        symbol = con.execute("select any_value(GENESYM) from analysis.adgene where AVAL is not null").fetchone()[0]
        (gene_id,) = gene_ids(con, symbol)
        sql, values = build_query("adgene_change", genes=[gene_id])
        plan = json.loads(con.execute(f"explain (format json) {sql}", values).fetchall()[0][1])
    scans = [node["extra_info"] for node in _plan_nodes(plan)
             if str(node.get("extra_info", {}).get("Table", "")).endswith("raw.transcript_gene__rows")]
    assert scans and all(f"gene_id = '{gene_id}'" in scan.get("Filters", "") for scan in scans), scans
