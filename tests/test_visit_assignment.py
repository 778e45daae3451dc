"""Study day and visit windows: day 1 is randomisation, no day 0, windows are inclusive."""

import pytest

from tests.conftest import run_build
from tests.landing import IL2, sample, write_reference

CASES = [
    # sample, visit, study day, accepted
    ("V01", "SCREEN", -90, True),
    ("V02", "SCREEN", -127, False),
    ("V03", "BASELINE", -14, True),
    ("V04", "BASELINE", -15, False),
    ("V05", "BASELINE", 1, True),
    ("V06", "BASELINE", 2, False),
    ("V07", "M3", 78, True),
    ("V08", "M3", 77, False),
    ("V09", "M3", 92, True),
    ("V10", "M3", 93, False),
    ("V11", "M18", 519, True),
    ("V12", "M18", 520, False),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    landing = tmp_path_factory.mktemp("landing")
    write_reference(landing, [sample(s, IL2, visit, "SERUM", d) for s, visit, d, _ in CASES])
    return run_build(landing, tmp_path_factory.mktemp("wh") / "w.duckdb")


def test_samples_inside_their_window_are_kept(built):
    kept = {r[0]: r[1] for r in built.rows("select sample_id, study_day from core.sample")}
    assert set(kept) == {s for s, _, _, ok in CASES if ok}
    assert kept["V03"] == -14
    assert kept["V05"] == 1


def test_samples_outside_their_window_are_quarantined_with_the_window(built):
    held = {r["delivered_row"]: r for r in built.dicts(
        "select json_extract_string(delivered_row, '$.sample_id') as delivered_row, rule, reason "
        "from quarantine.rejected_rows where family = 'sample_manifest'")}
    assert set(held) == {s for s, _, _, ok in CASES if not ok}
    assert {r["rule"] for r in held.values()} == {"collection_out_of_window"}
    assert "study day 2" in held["V06"]["reason"] and "days -14 to 1" in held["V06"]["reason"]
    assert "study day 93" in held["V10"]["reason"] and "M3 window (days 78 to 92)" in held["V10"]["reason"]


def test_day_before_randomisation_has_no_day_zero(built):
    rows = built.rows("select collection_date - (select randomisation_date from core.subject where usubjid = ?), study_day "
                      "from core.sample where sample_id = 'V03'", [IL2])
    assert rows == [(-14, -14)]
