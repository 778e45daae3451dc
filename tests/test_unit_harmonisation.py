"""Neurofilament results are parsed and converted to pg/mL; censored results are flagged."""

import pytest

from tests.conftest import run_build
from tests.landing import IL2, PBO, nf, sample, write_delivery, write_reference

SERUM_SAMPLES = {
    "S101": "62.0 pg/mL as delivered",
    "S102": "ng/mL is 1000 pg/mL",
    "S103": "ng/L is pg/mL",
    "S104": "below LLOQ as text",
    "S105": "above ULOQ as text",
    "S106": "numeric but below LLOQ",
    "S107": "unit that cannot be converted",
    "S108": "spaces around the qualifier",
    "S109": "below a limit written in the result, higher than the LLOQ column",
    "S110": "below a limit written in ng/mL",
    "S111": "above a limit written in the result",
    "S112": "below LLOQ without a number",
    "S113": "ng/mL whose conversion is not exact in binary",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    landing = tmp_path_factory.mktemp("landing")
    samples = [sample(s, IL2 if i % 2 else PBO, "BASELINE", "SERUM", 1) for i, s in enumerate(SERUM_SAMPLES)]
    samples.append(sample("S120", IL2, "BASELINE", "CSF", 1))
    write_reference(landing, samples)
    write_delivery(landing, "neurofilament", "nf_batch01.parquet", [
        nf("S101", "62.0"),
        nf("S102", "0.084", unit="ng/mL", lloq=0.003, uloq=1.5),
        nf("S103", "70", unit="ng/L"),
        nf("S104", "<3.0"),
        nf("S105", ">1500"),
        nf("S106", "2.1"),
        nf("S107", "5.0", unit="mg/dL"),
        nf("S108", " < 3 "),
        nf("S109", "<10", lloq=3.0),
        nf("S110", "<0.01", unit="ng/mL", lloq=0.003, uloq=1.5),
        nf("S111", "> 2000", uloq=1500.0),
        nf("S112", "BLQ", lloq=3.0),
        nf("S113", "0.0449", unit="ng/mL", lloq=0.0031, uloq=1.5),
        nf("S120", "8000", lloq=100.0, uloq=50000.0),
        nf("S120", "1.2", unit="ng/mL", analyte="pNfH", lloq=0.05, uloq=40.0),
    ])
    return run_build(landing, tmp_path_factory.mktemp("wh") / "w.duckdb")


def _by_sample(built):
    return {
        (r["sample_id"], r["paramcd"]): r
        for r in built.dicts("select * from core.neurofilament")
    }


def test_units_are_converted_to_pg_per_ml(built):
    rows = _by_sample(built)
    assert rows[("S101", "NFLS")]["aval"] == pytest.approx(62.0)
    assert rows[("S102", "NFLS")]["aval"] == pytest.approx(84.0)
    assert rows[("S102", "NFLS")]["lloq"] == pytest.approx(3.0)
    assert rows[("S103", "NFLS")]["aval"] == pytest.approx(70.0)
    # exact, without conversion noise (0.0449 * 1000 is 44.900000000000006 in binary)
    assert (rows[("S113", "NFLS")]["aval"], rows[("S113", "NFLS")]["lloq"]) == (44.9, 3.1)
    assert {r["aval_unit"] for r in rows.values()} == {"pg/mL"}
    assert rows[("S102", "NFLS")]["reported_result"] == "0.084"
    assert rows[("S102", "NFLS")]["reported_unit"] == "ng/mL"


def test_matrix_decides_the_parameter(built):
    rows = _by_sample(built)
    assert rows[("S120", "NFLC")]["aval"] == pytest.approx(8000.0)
    assert rows[("S120", "PNFHC")]["aval"] == pytest.approx(1200.0)


def test_censored_results_are_kept_and_flagged(built):
    rows = _by_sample(built)
    for sample_id in ("S104", "S106", "S108"):
        assert rows[(sample_id, "NFLS")]["blq_flag"] is True
        assert rows[(sample_id, "NFLS")]["aval"] is None
    assert rows[("S105", "NFLS")]["alq_flag"] is True
    assert rows[("S105", "NFLS")]["aval"] is None
    assert rows[("S101", "NFLS")]["blq_flag"] is False


def test_unconvertible_unit_is_quarantined_with_reason(built):
    held = built.dicts("select * from quarantine.rejected_rows where family = 'neurofilament'")
    assert [r["row_number"] for r in held] == [7]
    assert "unit_known" in held[0]["rule"]
    assert "mg/dL" in held[0]["reason"]
    assert '"unit":"mg/dL"' in held[0]["delivered_row"]


def test_a_limit_written_in_a_censored_result_is_its_limit(built):
    rows = _by_sample(built)
    limits = {s: (rows[(s, "NFLS")]["lloq"], rows[(s, "NFLS")]["uloq"]) for s in ("S104", "S109", "S110", "S111", "S112")}
    assert limits == {
        "S104": (pytest.approx(3.0), 1500.0), "S109": (10.0, 1500.0), "S110": (pytest.approx(10.0), pytest.approx(1500.0)),
        "S111": (3.0, 2000.0), "S112": (3.0, 1500.0),
    }
    assert rows[("S109", "NFLS")]["blq_flag"] is True and rows[("S111", "NFLS")]["alq_flag"] is True
    # the analysis layer imputes from that limit (LLOQ/2 below, the limit above)
    adbm = {r[0]: r[1:] for r in built.rows(
        "select SAMPLEID, AVAL, IMPUTRL from analysis.adbm where PARAMCD = 'NFLS' and SAMPLEID in ('S109', 'S111')")}
    assert adbm == {"S109": (5.0, "LLOQ/2"), "S111": (2000.0, "ULOQ")}
