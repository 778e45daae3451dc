"""Hand-written landing zones for tests: small tables written with the contract's types."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.study import load_contracts

ARROW_TYPES = {
    "VARCHAR": pa.string(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
}

RANDOMISED = dt.date(2018, 1, 10)
IL2 = "MIROCALS-FR01-0001"
PBO = "MIROCALS-FR01-0002"
RUNIN_ONLY = "MIROCALS-UK01-0001"


# a cytometer acquisition or assay run after every collection the tests schedule (day 505)
AFTER_COLLECTION = dt.date(2019, 12, 1)


def day(study_day: int, hour: int = 9) -> dt.datetime:
    """Collection time on a study day (day 1 = randomisation date, no day 0)."""
    offset = study_day - 1 if study_day > 0 else study_day
    return dt.datetime.combine(RANDOMISED + dt.timedelta(days=offset), dt.time(hour))


def write_delivery(landing: Path, family: str, file_name: str, rows: list[dict[str, Any]], **extra_types: pa.DataType) -> Path:
    """Write ``rows`` as one delivery of ``family`` with the contract's column types.

    Columns not in the contract may be added to the rows; give their types in ``extra_types``
    (strings by default).
    """
    contract = load_contracts()[family]
    columns: dict[str, pa.Array] = {}
    declared = {c.name: ARROW_TYPES[c.type] for c in contract.columns}
    names = list(declared) + [k for row in rows for k in row if k not in declared]
    for column in dict.fromkeys(names):
        type_ = extra_types.get(column) or declared.get(column, pa.string())
        columns[column] = pa.array([row.get(column) for row in rows], type_)
    path = landing / contract.folder / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def subject(usubjid: str, siteid: str, randomised: bool = True, **overrides: Any) -> dict[str, Any]:
    row = {
        "usubjid": usubjid, "siteid": siteid, "sex": "M", "age": 60, "onset": "LIMB",
        "diagnosis_date": dt.date(2017, 6, 1), "consent_date": RANDOMISED - dt.timedelta(days=130),
        "randomisation_date": RANDOMISED if randomised else None,
        "death_date": None, "withdrawal_date": None, "withdrawal_reason": None,
    }
    return {**row, **overrides}


def sample(sample_id: str, usubjid: str, visit_code: str, matrix: str, study_day: int) -> dict[str, Any]:
    return {"sample_id": sample_id, "usubjid": usubjid, "visit_code": visit_code, "matrix": matrix,
            "collection_datetime": day(study_day)}


def treg(sample_id: str, cd4: float = 800.0, pct: float = 5.0, **overrides: Any) -> dict[str, Any]:
    row = {"sample_id": sample_id, "cd4_count": cd4, "treg_count": cd4 * pct / 100, "treg_pct_cd4": pct,
           "panel_version": "TREG-v1", "acquisition_date": AFTER_COLLECTION}
    return {**row, **overrides}


def nf(sample_id: str, result: str, unit: str = "pg/mL", analyte: str = "NfL", lloq: float = 3.0,
       uloq: float = 1500.0, **overrides: Any) -> dict[str, Any]:
    row = {"sample_id": sample_id, "analyte": analyte, "result": result, "unit": unit, "lloq": lloq,
           "uloq": uloq, "dilution": 4.0, "plate_id": "P001", "run_date": AFTER_COLLECTION, "cv_pct": 4.0}
    return {**row, **overrides}


def write_reference(landing: Path, samples: list[dict[str, Any]] | None = None) -> None:
    """Two randomised subjects (IL2, PBO), one run-in-only subject, the list and a manifest."""
    write_delivery(landing, "subjects", "subjects_export_20190101.parquet", [
        subject(IL2, "FR01"), subject(PBO, "FR01", onset="BULBAR", sex="F"), subject(RUNIN_ONLY, "UK01", randomised=False),
    ])
    write_delivery(landing, "randomisation", "randomisation_list.parquet", [
        {"usubjid": IL2, "randomisation_number": 1, "stratum": "FRA-LIMB", "block_id": "B01", "armcd": "IL2"},
        {"usubjid": PBO, "randomisation_number": 2, "stratum": "FRA-BULBAR", "block_id": "B02", "armcd": "PBO"},
    ])
    write_delivery(landing, "sample_manifest", "manifest_export_20190101.parquet", samples if samples is not None else [
        sample("S001", IL2, "BASELINE", "SERUM", 1),
        sample("S002", IL2, "BASELINE", "WHOLE_BLOOD", 1),
        sample("S003", IL2, "M3", "WHOLE_BLOOD", 85),
        sample("S004", PBO, "BASELINE", "SERUM", -3),
        sample("S005", PBO, "BASELINE", "WHOLE_BLOOD", -3),
        sample("S006", PBO, "M3", "SERUM", 90),
    ])
