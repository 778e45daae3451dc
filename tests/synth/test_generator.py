"""Tests of the seeded synthetic landing-zone generator (pipelines.synth)."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.study import load_contracts, load_study
from pipelines.synth import FAULT_KINDS, GenerationReport, generate_landing_zone
from pipelines.synth.writer import arrow_type

SMALL = {"scale": 0.1, "genes": 50}
FULL = {"scale": 1.0, "genes": 20}
STUDY = load_study()
CONTRACTS = load_contracts()


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read(root: Path, report: GenerationReport, family: str, include_corrections: bool = True) -> list[dict]:
    rows = []
    for f in report.files_of(family):
        if not include_corrections and "corrected" in f.path:
            continue
        for r in pq.read_table(root / f.path).to_pylist():
            rows.append(r | {"_file": f.path})
    return rows


def _only(root: Path, report: GenerationReport, family: str) -> list[dict]:
    (f,) = report.files_of(family)
    return pq.read_table(root / f.path).to_pylist()


def _study_day(rand: date, d: date) -> int:
    delta = (d - rand).days
    return delta + 1 if delta >= 0 else delta


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, GenerationReport]:
    out = tmp_path_factory.mktemp("small")
    return out, generate_landing_zone(out, seed=7, **SMALL)


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[Path, GenerationReport]:
    out = tmp_path_factory.mktemp("full")
    return out, generate_landing_zone(out, **FULL)


@pytest.fixture(params=["small", "full"])
def zone(request) -> tuple[Path, GenerationReport]:
    return request.getfixturevalue(request.param)


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(small, tmp_path):
    out, _ = small
    again = generate_landing_zone(tmp_path / "again", seed=7, **SMALL)
    first, second = _hashes(out), _hashes(tmp_path / "again")
    assert first == second
    assert set(first) == {f.path for f in again.files} | {"_generator/report.json"}


def test_different_seed_gives_different_files(small, tmp_path):
    out, report = small
    other = generate_landing_zone(tmp_path / "other", seed=8, **SMALL)
    assert other.n_randomised == report.n_randomised
    first, second = _hashes(out), _hashes(tmp_path / "other")
    shared = set(first) & set(second)
    assert "restricted/randomisation_list.parquet" in shared
    assert all(first[p] != second[p] for p in shared)


def test_report_json_round_trips(small):
    out, report = small
    assert GenerationReport.read(out) == report


# --- cohort sizes ------------------------------------------------------------------------------


def test_scale_one_counts(full):
    out, report = full
    assert (report.n_entered, report.n_randomised) == (304, 220)
    assert report.n_per_arm == {"IL2": 110, "PBO": 110}
    subjects = _only(out, report, "subjects")
    assert len(subjects) == 304
    assert sum(s["randomisation_date"] is not None for s in subjects) == 220
    rand = _only(out, report, "randomisation")
    assert Counter(r["armcd"] for r in rand) == {"IL2": 110, "PBO": 110}
    assert {r["usubjid"] for r in rand} == {s["usubjid"] for s in subjects if s["randomisation_date"]}


@pytest.mark.parametrize(("scale", "entered", "randomised"), [(0.1, 30, 22), (5, 1520, 1100)])
def test_other_scales_keep_exact_arms(tmp_path, scale, entered, randomised):
    report = generate_landing_zone(tmp_path, seed=3, scale=scale, genes=4)
    assert (report.n_entered, report.n_randomised) == (entered, randomised)
    assert report.n_per_arm == {"IL2": randomised // 2, "PBO": randomised // 2}
    assert {f.kind for f in report.faults} == set(FAULT_KINDS)


def test_population_shape(full):
    out, report = full
    subjects = _only(out, report, "subjects")
    lo_age, hi_age = STUDY.raw["study"]["age_range"]
    assert all(lo_age <= s["age"] <= hi_age for s in subjects)
    ages = sorted(s["age"] for s in subjects)
    assert 56 <= ages[len(ages) // 2] <= 64
    assert 0.55 <= sum(s["sex"] == "M" for s in subjects) / len(subjects) <= 0.69
    assert 0.25 <= sum(s["onset"] == "BULBAR" for s in subjects) / len(subjects) <= 0.35
    by_country = Counter(s["usubjid"].split("-")[1][:2] for s in subjects)
    assert by_country["FR"] > by_country["UK"]
    for s in subjects:
        assert 0 <= (s["consent_date"] - s["diagnosis_date"]).days <= 730
        if s["randomisation_date"]:
            assert 84 <= (s["randomisation_date"] - s["consent_date"]).days <= 126
            assert date(2017, 6, 1) <= s["randomisation_date"] <= date(2019, 10, 31)
        else:
            assert s["death_date"] is None
        assert (s["withdrawal_date"] is None) == (s["withdrawal_reason"] is None)
    randomised = [s for s in subjects if s["randomisation_date"]]
    deaths = sum(s["death_date"] is not None for s in randomised) / len(randomised)
    assert 0.30 <= deaths <= 0.50
    assert report.n_deaths_per_arm["PBO"] > report.n_deaths_per_arm["IL2"]


# --- contracts and layout --------------------------------------------------------------------------


def test_files_match_contracts(zone):
    out, report = zone
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.parquet")}
    assert on_disk == {f.path for f in report.files}
    for f in report.files:
        contract = CONTRACTS[f.family]
        assert f.path.startswith(contract.folder + "/")
        schema = pq.read_schema(out / f.path)
        assert schema.names == list(contract.column_names), f.path
        assert [schema.field(c.name).type for c in contract.columns] == [arrow_type(c.type) for c in contract.columns]
        assert pq.read_metadata(out / f.path).num_rows == f.rows
        table = pq.read_table(out / f.path)
        for c in contract.required_columns:
            assert table.column(c).null_count == 0, (f.path, c)


def test_layout_and_delivery_order(full):
    _, report = full
    names = {fam: [Path(f.path).name for f in report.files_of(fam)] for fam in CONTRACTS.families}
    assert re.fullmatch(r"subjects_export_\d{8}\.parquet", names["subjects"][0])
    assert re.fullmatch(r"manifest_export_\d{8}\.parquet", names["sample_manifest"][0])
    assert names["randomisation"] == ["randomisation_list.parquet"]
    assert 4 <= len(names["treg"]) <= 6
    nfl = names["neurofilament"]
    assert nfl == sorted(nfl)
    assert nfl[1:4] == [
        "neurofilament_batch02.parquet",
        "neurofilament_batch02_corrected.parquet",
        "neurofilament_batch03.parquet",
    ]
    assert 4 <= len([n for n in nfl if "corrected" not in n]) <= 6
    assert len(names["transcript_gene"]) == len(names["transcript_summary"]) == 3


def test_identifiers(zone):
    out, report = zone
    sites = {s.siteid for s in STUDY.sites}
    for s in _only(out, report, "subjects"):
        m = re.fullmatch(rf"{STUDY.studyid}-([A-Z0-9]+)-(\d{{4}})", s["usubjid"])
        assert m and m.group(1) == s["siteid"] and s["siteid"] in sites
    ids = [r["sample_id"] for r in _only(out, report, "sample_manifest")]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"S\d{7}", i) for i in ids)


def test_randomisation_list(full):
    out, report = full
    subjects = {s["usubjid"]: s for s in _only(out, report, "subjects")}
    rand = _only(out, report, "randomisation")
    block_size = STUDY.strata["block_size"]
    assert [r["randomisation_number"] for r in rand] == list(range(1, len(rand) + 1))
    dates = [subjects[r["usubjid"]]["randomisation_date"] for r in rand]
    assert dates == sorted(dates)
    blocks: dict[str, list[str]] = {}
    for r in rand:
        s = subjects[r["usubjid"]]
        country = next(x.country for x in STUDY.sites if x.siteid == s["siteid"])
        assert r["stratum"] == f"{country}-{s['onset']}"
        assert r["block_id"].startswith(r["stratum"])
        blocks.setdefault(r["block_id"], []).append(r["armcd"])
    for arms in blocks.values():
        assert len(arms) <= block_size
        if len(arms) == block_size:
            assert Counter(arms) == {"IL2": block_size // 2, "PBO": block_size // 2}


# --- samples -------------------------------------------------------------------------------------


def test_manifest_follows_schedule(full):
    out, report = full
    subjects = {s["usubjid"]: s for s in _only(out, report, "subjects")}
    visits = {v.visit_code: v for v in STUDY.visits}
    faulty = {f.sample_id: f.kind for f in report.faults if f.family == "sample_manifest"}
    manifest = _only(out, report, "sample_manifest")
    for m in manifest:
        s, v = subjects[m["usubjid"]], visits[m["visit_code"]]
        assert m["matrix"] in v.matrices
        if faulty.get(m["sample_id"]) == "not_randomised":
            assert s["randomisation_date"] is None
            continue
        assert s["randomisation_date"] is not None
        day = _study_day(s["randomisation_date"], m["collection_datetime"].date())
        inside = v.window_lo <= day <= v.window_hi
        assert inside == (faulty.get(m["sample_id"]) != "out_of_window"), m
        for end in (s["death_date"], s["withdrawal_date"]):
            assert end is None or m["collection_datetime"].date() < end
    per_visit = Counter((m["usubjid"], m["visit_code"], m["matrix"]) for m in manifest)
    assert max(per_visit.values()) == 1
    # every randomised subject has a baseline visit
    baseline = {m["usubjid"] for m in manifest if m["visit_code"] == "BASELINE"}
    assert baseline == {u for u, s in subjects.items() if s["randomisation_date"]}


def test_pnfh_baseline_split(full):
    out, report = full
    cut = STUDY.analysis["pnfh_cutpoint_pgml"]
    manifest = {m["sample_id"]: m for m in _only(out, report, "sample_manifest")}
    subjects = [s for s in _only(out, report, "subjects") if s["randomisation_date"]]
    csf_baseline = {
        m["usubjid"] for m in manifest.values() if m["visit_code"] == "BASELINE" and m["matrix"] == "CSF"
    }
    values = {}
    for r in _read(out, report, "neurofilament", include_corrections=False):
        m = manifest.get(r["sample_id"])
        if m and m["visit_code"] == "BASELINE" and r["analyte"] == "pNfH":
            values[m["usubjid"]] = float(r["result"]) * STUDY.parameter("PNFHC").units[r["unit"]]
    assert set(values) == csf_baseline
    n = len(subjects)
    high = sum(v > cut for v in values.values()) / n
    low = sum(v <= cut for v in values.values()) / n
    missing = 1 - len(values) / n
    assert abs(low - 0.70) < 0.05
    assert abs(high - 0.21) < 0.05
    assert abs(missing - 0.09) < 0.04


# --- effects -------------------------------------------------------------------------------------


def _arm_of(out: Path, report: GenerationReport) -> dict[str, str]:
    return {r["usubjid"]: r["armcd"] for r in _only(out, report, "randomisation")}


def test_treg_rises_on_il2_only(full):
    out, report = full
    arm = _arm_of(out, report)
    manifest = {m["sample_id"]: m for m in _only(out, report, "sample_manifest")}
    pct: dict[tuple[str, str], float] = {}
    for r in _read(out, report, "treg"):
        m = manifest.get(r["sample_id"])
        if m and m["usubjid"] in arm:
            pct[(m["usubjid"], m["visit_code"])] = r["treg_pct_cd4"]
    ratios: dict[str, list[float]] = {"IL2": [], "PBO": []}
    on_treatment = {v.visit_code for v in STUDY.visits if v.study_day > 1}
    for (u, visit), value in pct.items():
        if visit in on_treatment and (u, "BASELINE") in pct:
            ratios[arm[u]].append(value / pct[(u, "BASELINE")])
    il2 = sum(ratios["IL2"]) / len(ratios["IL2"])
    pbo = sum(ratios["PBO"]) / len(ratios["PBO"])
    assert il2 > 1.6
    assert 0.9 < pbo < 1.15
    baseline = [v for (u, visit), v in pct.items() if visit == "BASELINE"]
    assert 4.0 < sum(baseline) / len(baseline) < 6.0


def test_treg_signature_follows_arm(full):
    out, report = full
    arm = _arm_of(out, report)
    manifest = {m["sample_id"]: m for m in _only(out, report, "sample_manifest")}
    scores: dict[tuple[str, bool], list[float]] = {}
    for r in _read(out, report, "transcript_summary"):
        m = manifest[r["sample_id"]]
        scores.setdefault((arm[m["usubjid"]], m["visit_code"] != "BASELINE"), []).append(r["treg_signature"])

    def mean(key):
        return sum(scores[key]) / len(scores[key])

    assert mean(("IL2", True)) > mean(("PBO", True)) + 1.0
    assert abs(mean(("IL2", False)) - mean(("PBO", False))) < 0.5


def test_serum_nfl_levels(full):
    out, report = full
    manifest = {m["sample_id"]: m for m in _only(out, report, "sample_manifest")}
    onset = {s["usubjid"]: s["onset"] for s in _only(out, report, "subjects")}
    values: dict[str, list[float]] = {"LIMB": [], "BULBAR": []}
    for r in _read(out, report, "neurofilament", include_corrections=False):
        m = manifest.get(r["sample_id"])
        if m and m["matrix"] == "SERUM" and m["visit_code"] == "BASELINE" and r["unit"] == "pg/mL":
            if not r["result"].startswith(("<", ">")):
                values[onset[m["usubjid"]]].append(float(r["result"]))
    med = {k: sorted(v)[len(v) // 2] for k, v in values.items()}
    assert 40 < med["LIMB"] < 80
    assert med["BULBAR"] > med["LIMB"]


# --- faults --------------------------------------------------------------------------------------


def test_every_fault_kind_is_reported(zone):
    _, report = zone
    assert {f.kind for f in report.faults} == set(FAULT_KINDS)
    for f in report.faults:
        if f.family == "sample_manifest":
            assert f.row_number is None and f.sample_id
        else:
            assert f.row_number >= 1
        assert f.family not in ("subjects", "randomisation")


def test_faults_are_really_in_the_files(zone):
    out, report = zone
    manifest = {m["sample_id"]: m for m in _only(out, report, "sample_manifest")}
    subjects = {s["usubjid"]: s for s in _only(out, report, "subjects")}
    files = {f.path: pq.read_table(out / f.path).to_pylist() for f in report.files if f.family in ("treg", "neurofilament")}
    lab_ids = {r["sample_id"] for rows in files.values() for r in rows}
    visits = {v.visit_code: v for v in STUDY.visits}
    units = {u for p in STUDY.parameters_of("neurofilament") for u in p.units}
    for f in report.faults:
        row = files[f.file][f.row_number - 1] if f.row_number else None
        if row is not None:
            assert row["sample_id"] == f.sample_id
        if f.kind == "duplicate_row":
            assert files[f.file].count(row) >= 2
        elif f.kind == "unit_spelling":
            assert row["unit"] in units and row["unit"] != "pg/mL"
        elif f.kind == "below_lloq":
            assert row["result"].startswith("<")
            assert float(row["result"][1:]) == pytest.approx(row["lloq"])
        elif f.kind == "unknown_sample":
            assert f.sample_id not in manifest
        elif f.kind == "out_of_window":
            m = manifest[f.sample_id]
            v = visits[m["visit_code"]]
            day = _study_day(subjects[m["usubjid"]]["randomisation_date"], m["collection_datetime"].date())
            assert not v.window_lo <= day <= v.window_hi
            assert f.sample_id in lab_ids or m["matrix"] not in ("WHOLE_BLOOD", "SERUM")
        elif f.kind == "not_randomised":
            m = manifest[f.sample_id]
            assert subjects[m["usubjid"]]["randomisation_date"] is None
            assert f.sample_id in lab_ids
        elif f.kind == "correction":
            assert f.file.endswith("_batch02_corrected.parquet")
            original = files[f.file.replace("_corrected", "")]
            before = [r for r in original if (r["sample_id"], r["analyte"]) == (row["sample_id"], row["analyte"])]
            assert len(before) == 1 and before[0]["result"] != row["result"]
    # nothing unreported: unknown ids, censored results and duplicates all carry a fault
    unknown = {f.sample_id for f in report.faults if f.kind == "unknown_sample"}
    assert lab_ids - set(manifest) == unknown
    below = {(f.file, f.row_number) for f in report.faults if f.kind == "below_lloq"}
    for path, rows in files.items():
        for n, r in enumerate(rows, start=1):
            if r.get("result", "").startswith("<"):
                assert (path, n) in below


def test_unit_spellings_are_consistent(zone):
    out, report = zone
    params = {(p.matrix, p.source["analyte"]): p for p in STUDY.parameters_of("neurofilament")}
    serum = STUDY.parameter("NFLS")
    for r in _read(out, report, "neurofilament"):
        factor = serum.units[r["unit"]]
        lloqs = {p.lloq / factor for p in params.values() if p.source["analyte"] == r["analyte"]}
        assert any(r["lloq"] == pytest.approx(x) for x in lloqs)
    assert {r["unit"] for r in _read(out, report, "neurofilament")} == set(serum.units)


# --- transcriptomics -----------------------------------------------------------------------------


def test_transcript_gene_has_genes_times_samples(small):
    out, report = small
    genes = SMALL["genes"]
    summaries = report.files_of("transcript_summary")
    gene_files = report.files_of("transcript_gene")
    manifest = {m["sample_id"]: m for m in _only(out, report, "sample_manifest")}
    for summary, gene_file in zip(summaries, gene_files, strict=True):
        sample_ids = pq.read_table(out / summary.path).column("sample_id").to_pylist()
        table = pq.read_table(out / gene_file.path)
        assert table.num_rows == gene_file.rows == genes * len(sample_ids)
        assert sorted(set(table.column("sample_id").to_pylist())) == sorted(sample_ids)
        assert all(manifest[s]["matrix"] == STUDY.gene_expression["matrix"] for s in sample_ids)
        gene_ids = table.column("gene_id").to_pylist()[:genes]
        symbols = table.column("gene_symbol").to_pylist()[:genes]
        assert len(set(gene_ids)) == len(set(symbols)) == genes
        assert all(re.fullmatch(r"ENSG\d{11}", g) for g in gene_ids)
        assert {"FOXP3", "IL2RA", "CTLA4", "IKZF2"} <= set(symbols)
        lo, hi = STUDY.gene_expression["plausible"]
        expr = table.column("expression").to_pylist()
        assert lo <= min(expr) and max(expr) <= hi


def test_gene_table_row_groups(tmp_path):
    report = generate_landing_zone(tmp_path, seed=1, scale=0.1, genes=60_000)
    f = report.files_of("transcript_gene")[0]
    meta = pq.read_metadata(tmp_path / f.path)
    assert meta.num_row_groups > 1
    assert all(meta.row_group(i).num_rows <= 1_000_000 for i in range(meta.num_row_groups))


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate_landing_zone(tmp_path, scale=0)
    with pytest.raises(ValueError):
        generate_landing_zone(tmp_path, seed=-1)
    with pytest.raises(ValueError):
        generate_landing_zone(tmp_path, genes=3)
