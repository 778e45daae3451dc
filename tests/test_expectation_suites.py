"""The Great Expectations suites are read into GX when the code location loads, so a suite GX
cannot use stops the load with a message naming its file, before any delivery is touched."""

import json
import subprocess
import sys

import pyarrow as pa
import pytest

import pipelines.ingest.expectations as expectations
from pipelines.study import load_contracts


def _write_suite(folder, name, items):
    (folder / f"{name}.json").write_text(json.dumps({"name": name, "expectations": items}), encoding="utf-8")


@pytest.fixture
def suites_in(tmp_path, monkeypatch):
    monkeypatch.setattr(expectations, "EXPECTATIONS_DIR", tmp_path)
    return tmp_path


def test_every_declared_suite_loads():
    suites = [contract.suite for contract in load_contracts().families.values()]
    expectations.load_suites(suites)
    for suite in suites:
        assert expectations._validation_definition(suite).suite.expectations, suite


@pytest.mark.parametrize(
    "item, message",
    [
        ({"type": "expect_column_values_to_be_purple", "kwargs": {"column": "sample_id"},
          "meta": {"rule": "purple", "description": "sample_id must be purple"}},
         "expect_column_values_to_be_purple not found"),
        ({"type": "expect_column_values_to_be_between", "kwargs": {"min_value": 1},
          "meta": {"rule": "range", "description": "value must be at least 1"}},
         "column"),
        ({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "sample_id"},
          "meta": {"description": "sample_id must be present"}},
         "expectation 1 (expect_column_values_to_not_be_null): meta needs rule"),
    ],
    ids=["unknown_type", "missing_argument", "no_rule"],
)
def test_a_suite_gx_cannot_use_is_refused_naming_its_file(suites_in, item, message):
    name = f"broken_{abs(hash(json.dumps(item)))}"
    _write_suite(suites_in, name, [item])
    with pytest.raises(ValueError, match=rf"expectations/{name}\.json") as refused:
        expectations.load_suites([name])
    assert message in str(refused.value)


def test_code_location_loads_the_suites():
    """Importing the definitions (as the Dagster UI and every run do) reads every suite into GX."""
    script = (
        "import pipelines.definitions, pipelines.ingest.expectations as e; "
        "_, context, _ = e._gx(); "
        "print('\\n'.join(d.name for d in context.validation_definitions.all()))"
    )
    held = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    declared = {expectations.load_suite_json(c.suite)["name"] for c in load_contracts().families.values()}
    assert declared <= set(held), declared - set(held)


def _reason_of(suite: str, rule: str) -> str:
    item = next(e for e in expectations.load_suite_json(suite)["expectations"] if e["meta"]["rule"] == rule)
    return expectations._described(item["meta"], item["kwargs"], expectations.suite_parameters())


def test_a_reason_names_the_bounds_the_study_definition_gives_and_only_those():
    # bounds from schemas/study.yaml ($PARAMETER) are named; a bound written in the suite is in
    # its description already, and a strict one is not "at least"
    assert _reason_of("treg", "cd4_count_in_range") == "cd4_count must lie in the plausible range (cells/uL): 50 to 5000"
    assert _reason_of("neurofilament", "lloq_positive") == "lloq must be positive"
    meta = {"rule": "x_in_range", "description": "x must lie in the plausible range"}
    one_sided = {"min_value": {"$PARAMETER": "CD4CNT_lo"}, "strict_min": True}
    assert expectations._described(meta, one_sided, {"CD4CNT_lo": 1.0}) == f"{meta['description']}: above 1"
    with pytest.raises(KeyError, match="x_in_range: no suite parameter 'CD4CNT_lo'"):
        expectations._described(meta, one_sided, {})


def test_an_expectation_gx_cannot_evaluate_stops_the_validation_naming_it(suites_in):
    # GX reports a metric it could not compute on the result, and the result itself says no row
    # failed: read as such, every row would have loaded unjudged
    _write_suite(suites_in, "regex_broken", [
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "result", "regex": "^([0-9]+$"},
         "meta": {"rule": "result_readable", "description": "result must be a number"}}])
    expectations.load_suites(["regex_broken"])
    table = pa.table({"result": ["12.5", "abc"], "row_number": pa.array([1, 2], pa.int64())})
    with pytest.raises(RuntimeError, match=r"could not evaluate regex_broken\.result_readable: .*"):
        expectations.validate_table("regex_broken", table, ["result"], {})
