"""Property: whatever faults are mixed into the lab deliveries, every delivery balances, every
delivered row is either loaded or quarantined, nothing faulty is loaded, and every row that was
not touched is in ``core`` with exactly the value it had without the faults.

A small landing zone is generated and built once without faults (the reference). Each example
copies it, mixes several random faults into copies of the lab deliveries and builds it again.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipelines.study import load_contracts
from pipelines.synth import generate_landing_zone
from tests.conftest import Built, run_build

LAB_FAMILIES = ("treg", "neurofilament", "transcript_summary", "transcript_gene")
CONTRACTS = load_contracts()

# The value column each family's faults corrupt, and values that no valid delivery carries.
VALUE_COLUMN = {"treg": "cd4_count", "neurofilament": "result", "transcript_summary": "rin",
                "transcript_gene": "expression"}
CORRUPT = {
    "treg": {"negative": -420.0, "zero": 0.0, "nan": math.nan, "infinite": math.inf, "absurd": 99999.0},
    "neurofilament": {"negative": "-12.5", "zero": "0", "nan": "NaN", "infinite": "inf", "absurd": "9999999",
                      "text": "see comment"},
    "transcript_summary": {"negative": -2.0, "zero": 0.0, "nan": math.nan, "infinite": -math.inf, "absurd": 42.0},
    "transcript_gene": {"negative": -55.0, "nan": math.nan, "infinite": math.inf, "absurd": 99.0},
}
ROW_FAULTS = ("drop", "duplicate", "corrupt", "unknown_sample", "unit")
FILE_FAULTS = ("truncate", "personal_data", "text_column")
# corrupted values are drawn most often; file-level faults (a whole file refused) least
KINDS = ("drop", "duplicate", "unknown_sample", "unit") * 2 + ("corrupt",) * 6 + FILE_FAULTS

# How the rows of each core table are compared: (file_name, row_number) -> sorted values.
CORE_VALUES = {
    "core.treg": "paramcd, aval",
    "core.neurofilament": "paramcd, aval, blq_flag, alq_flag, lloq, uloq, reported_result",
    "core.transcript_summary": "paramcd, aval",
    "core.transcript_gene": "gene_id, gene_symbol, aval",
}


def core_values(built: Built) -> dict[tuple[str, int], list[tuple]]:
    values: dict[tuple[str, int], list[tuple]] = {}
    for table, columns in CORE_VALUES.items():
        for file_name, row_number, *rest in built.rows(f"select file_name, row_number, {columns} from {table}"):
            values.setdefault((file_name, row_number), []).append(tuple(rest))
    return {key: sorted(v, key=repr) for key, v in values.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    landing = tmp_path_factory.mktemp("reference_landing")
    generate_landing_zone(landing, seed=21, scale=0.1, genes=10)
    built = run_build(landing, tmp_path_factory.mktemp("reference_warehouse") / "mirocals.duckdb")
    files = {
        family: sorted(p.relative_to(landing).as_posix() for p in (landing / CONTRACTS[family].folder).glob("*.parquet"))
        for family in LAB_FAMILIES
    }
    return Reference(landing, core_values(built), files)


class Reference(tuple):
    """(landing zone, core values by delivered row, lab files by family) of the fault-free build."""

    def __new__(cls, landing: Path, values: dict, files: dict):
        return super().__new__(cls, (landing, values, files))

    def __repr__(self) -> str:
        return f"Reference({self[0]}, {len(self[1])} loaded rows)"


@dataclass
class Delivered:
    """One row written to a faulty copy: where it came from and what was done to it."""

    origin: int | None          # 1-based row in the original file; None for an added copy
    values: dict[str, Any]
    fault: str | None = None    # None: untouched
    must_load_as_before: bool = False  # touched, but harmonised: loads with the original value


@dataclass
class FaultyFile:
    family: str
    file_name: str
    rows: list[Delivered]
    file_fault: str | None = None
    touched_keys: Counter = field(default_factory=Counter)  # key -> rows touched with it


def _key(family: str, values: dict[str, Any]) -> tuple:
    key = CONTRACTS[family].key
    return tuple(str(values[k]).strip().upper() if k == "sample_id" else values[k] for k in key)


def apply_faults(landing: Path, files: dict[str, list[str]], faults: list[tuple[int, int, str, int, int]]
                 ) -> dict[str, FaultyFile]:
    """Rewrite lab files of ``landing`` with ``faults`` = (family, file, kind, row, variant) draws."""
    faulty: dict[str, FaultyFile] = {}
    for family_draw, file_draw, kind, row_draw, variant in faults:
        family = LAB_FAMILIES[family_draw % len(LAB_FAMILIES)]
        name = files[family][file_draw % len(files[family])]
        if name not in faulty:
            table = pq.read_table(landing / name)
            faulty[name] = FaultyFile(family, name, [Delivered(i, row) for i, row in enumerate(table.to_pylist(), 1)])
        target = faulty[name]
        if target.file_fault:
            continue
        if kind in FILE_FAULTS:
            target.file_fault = kind
            continue
        candidates = [r for r in target.rows if r.fault is None and r.origin is not None]
        if not candidates:
            continue
        row = candidates[row_draw % len(candidates)]
        target.touched_keys[_key(family, row.values)] += 1
        if kind == "drop":
            row.fault = "drop"
        elif kind == "duplicate":
            row.fault = "duplicated"  # the original stays valid; the exact copy is held back
            target.rows.append(Delivered(None, dict(row.values), fault="duplicate"))
        elif kind == "unknown_sample":
            row.values["sample_id"] = f"ZZUNKNOWN{row.origin:05d}{variant % 97:02d}"
            row.fault = "unknown_sample"
        elif kind == "unit" and family == "neurofilament":
            if variant % 2 == 0 and str(row.values["unit"]).lower() == "pg/ml":
                row.values["unit"] = "ng/L"  # the same unit spelled otherwise: harmonised
                row.fault, row.must_load_as_before = "unit_respelled", True
            else:
                row.values["unit"] = "mg/dL"  # no conversion factor: held back
                row.fault = "unit_unknown"
        else:
            corruptions = CORRUPT[family]
            label = list(corruptions)[variant % len(corruptions)]
            row.values[VALUE_COLUMN[family]] = corruptions[label]
            row.fault = f"corrupt_{label}"
    for target in faulty.values():
        write_faulty(landing, target)
    return faulty


def write_faulty(landing: Path, target: FaultyFile) -> None:
    path = landing / target.file_name
    schema = pq.read_schema(path)
    rows = [r.values for r in target.rows if r.fault != "drop"]
    table = pa.Table.from_pylist(rows, schema=schema)
    if target.file_fault == "personal_data":
        table = table.append_column("patient_name", pa.array(["Zebulon Quackenbush"] * table.num_rows))
    elif target.file_fault == "text_column":
        column = next(c.name for c in CONTRACTS[target.family].columns if c.type == "DOUBLE")
        values = [None if v is None else str(v) for v in table[column].to_pylist()]
        values[0] = "n/a"
        table = table.set_column(table.column_names.index(column), column, pa.array(values, pa.string()))
    pq.write_table(table, path)
    if target.file_fault == "truncate":
        path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size * 2 // 3)])


FAULTS = st.lists(
    st.tuples(st.integers(0, 100), st.integers(0, 100), st.sampled_from(KINDS), st.integers(0, 10_000),
              st.integers(0, 10_000)),
    min_size=10, max_size=30,
)
# Always tried as well: every corruption of every family, the other row faults and the three
# file-level faults, in one build.
EVERY_FAULT = [
    (f, 0, "corrupt", 0, v) for f, family in enumerate(LAB_FAMILIES) for v in range(len(CORRUPT[family]))
] + [
    (1, 1, "unit", 0, 0), (1, 1, "unit", 0, 1), (0, 1, "duplicate", 0, 0), (0, 1, "unknown_sample", 0, 0),
    (0, 1, "drop", 0, 0), (3, 1, "duplicate", 0, 0), (2, 1, "unknown_sample", 0, 0),
    (0, 2, "personal_data", 0, 0), (1, 2, "truncate", 0, 0), (2, 2, "text_column", 0, 0),
]


@pytest.mark.slow
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(faults=FAULTS)
@example(faults=EVERY_FAULT)
def test_faults_never_lose_or_change_a_valid_value(reference, faults):
    original_landing, before, files = reference
    with tempfile.TemporaryDirectory() as folder:
        landing = Path(folder) / "landing"
        shutil.copytree(original_landing, landing)
        faulty = apply_faults(landing, files, faults)
        built = run_build(landing, Path(folder) / "warehouse" / "mirocals.duckdb")
        after = core_values(built)
        reconciliation = {r["file_name"]: r for r in built.dicts("select * from audit.reconciliation")}
        held = {}
        for file_name, row_number in built.rows("select file_name, row_number from quarantine.rejected_rows"):
            held.setdefault(file_name, set()).add(row_number)

        # every delivery balances; only a file that cannot be read at all has no row count
        for file_name, record in reconciliation.items():
            if record["rows_delivered"] is None:
                assert faulty.get(file_name) and faulty[file_name].file_fault == "truncate", record
                assert (record["status"], record["rows_loaded"]) == ("rejected", 0)
                continue
            assert record["balanced"] is True, record
            assert record["rows_delivered"] == record["rows_loaded"] + record["rows_quarantined"], record

        for family in LAB_FAMILIES:
            for file_name in files[family]:
                target = faulty.get(file_name)
                record = reconciliation[file_name]
                delivered = [r for r in target.rows if r.fault != "drop"] if target else None
                if target is None:
                    expected_rows = pq.read_metadata(landing / file_name).num_rows
                else:
                    expected_rows = len(delivered)
                refused = target is not None and (target.file_fault is not None or not delivered)
                if refused:
                    assert record["status"] == "rejected", record
                    if target.file_fault != "truncate":
                        assert record["rows_delivered"] == expected_rows
                        assert record["rows_quarantined"] == expected_rows and record["rows_loaded"] == 0
                    assert not [key for key in after if key[0] == file_name], f"{file_name} was refused but loaded"
                    continue
                # quarantined + loaded rows == delivered rows, counted independently
                assert record["rows_delivered"] == expected_rows
                assert len(held.get(file_name, ())) == record["rows_quarantined"]
                loaded = built.scalar(
                    f"select count(*) from staging.{_staging(family)} where file_name = ? and qc_rule is null",
                    [file_name])
                assert len(held.get(file_name, ())) + loaded == expected_rows, file_name

                new_row = {}
                if target is not None:
                    for position, row in enumerate(delivered, 1):
                        if row.origin is not None:
                            new_row[row.origin] = position
                        if row.fault in ("duplicate", "unknown_sample", "unit_unknown") or (
                                row.fault or "").startswith("corrupt_"):
                            # a faulty row is held back, never loaded
                            assert position in held.get(file_name, ()), (file_name, position, row.fault)
                            assert (file_name, position) not in after, (file_name, position, row.fault)
                # every untouched row that loaded without faults loads again, with the same value
                for (name, origin), value in before.items():
                    if name != file_name:
                        continue
                    if target is None:
                        assert after.get((file_name, origin)) == value, (file_name, origin)
                        continue
                    row = next(r for r in target.rows if r.origin == origin)
                    if row.fault == "drop":
                        continue
                    others = target.touched_keys[_key(family, row.values)] - (row.fault is not None)
                    if others:
                        continue  # shares its key with a faulty row of the same delivery: conflicting values
                    if row.fault in (None, "duplicated") or row.must_load_as_before:
                        assert after.get((file_name, new_row[origin])) == value, (
                            file_name, origin, new_row[origin], row.fault)


def _staging(family: str) -> str:
    return {"treg": "stg_lab__treg", "neurofilament": "stg_lab__neurofilament",
            "transcript_summary": "stg_lab__transcript_summary", "transcript_gene": "stg_lab__transcript_gene"}[family]
