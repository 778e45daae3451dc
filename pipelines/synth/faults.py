"""Row-level faults injected into the Treg and neurofilament deliveries.

Each fault is attached to the row that carries it as ``(kind, detail, referenced_row)``;
row numbers are resolved only when the files are final (see :func:`collect_row_faults`).
A detail may contain ``{ref}``, replaced by "<file> row <n>" of the referenced row.
"""

from __future__ import annotations

import math

import numpy as np

from pipelines.study import Study
from pipelines.synth import model as M
from pipelines.synth.labs import (
    NFL_FAMILY,
    TREG_FAMILY,
    LabFile,
    batch_name,
    draw_cv,
    nfl_row,
    render_nfl,
    treg_row,
)
from pipelines.synth.report import InjectedFault
from pipelines.synth.rng import fault_count, substream

UNKNOWN_BASE = 2
DUPLICATE_BASE = 3
UNIT_BASE = 4
BELOW_LLOQ_BASE = 3
CORRECTION_BASE = 4
CORRECTED_BATCH = 2


def unknown_sample_counts(scale: float) -> dict[str, int]:
    """How many rows with unknown sample ids each family receives."""
    return {TREG_FAMILY: fault_count(UNKNOWN_BASE, scale), NFL_FAMILY: fault_count(UNKNOWN_BASE, scale)}


def _eligible(files: list[LabFile], pred=lambda r: True) -> list[tuple[int, int]]:
    return [
        (fi, ri)
        for fi, f in enumerate(files)
        for ri, r in enumerate(f.rows)
        if not r["_lock"] and not r["_faults"] and pred(r)
    ]


def _pick(rng: np.random.Generator, pool: list, k: int) -> list:
    if not pool or k <= 0:
        return []
    idx = sorted(int(i) for i in rng.choice(len(pool), min(k, len(pool)), replace=False))
    return [pool[i] for i in idx]


def _tag(row: dict, kind: str, detail: str, ref: dict | None = None) -> None:
    row["_faults"].append((kind, detail, ref))
    row["_lock"] = True


def _private_free_copy(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")} | {"_faults": [], "_lock": True}


def inject_lab_faults(
    study: Study,
    treg: list[LabFile],
    nfl: list[LabFile],
    unknown_ids: list[str],
    seed: int,
    scale: float,
) -> tuple[list[LabFile], list[LabFile]]:
    """Inject every row-level fault kind; returns (treg files, neurofilament files incl. the correction)."""
    rng = substream(seed, "lab-faults")
    params = {p.paramcd: p for p in study.parameters_of(NFL_FAMILY)}
    serum = params[M.NFL_SERUM]

    # below_lloq: a few degraded / low-volume serum samples, then every censored result is flagged.
    for fi, ri in _pick(rng, _eligible(nfl, lambda r: r["_param"] == M.NFL_SERUM), fault_count(BELOW_LLOQ_BASE, scale)):
        row = nfl[fi].rows[ri]
        row["_true"] = serum.lloq * float(rng.uniform(0.3, 0.9))
        render_nfl(row, serum)
    for f in nfl:
        for row in f.rows:
            if row["_censored"] == "below":
                p = params[row["_param"]]
                _tag(row, "below_lloq", f"{p.paramcd} result {row['result']} {row['unit']} below LLOQ {p.lloq:g} {p.unit}")
            elif row["_censored"] == "above":
                row["_lock"] = True

    # unit_spelling: valid alternative spellings of the unit (ng/L, ng/mL), value converted.
    for unit in sorted({u for p in params.values() for u in p.units if u != p.unit}):
        pool = _eligible(nfl, lambda r, u=unit: u in params[r["_param"]].units and params[r["_param"]].unit != u)
        for fi, ri in _pick(rng, pool, fault_count(UNIT_BASE, scale)):
            row = nfl[fi].rows[ri]
            p = params[row["_param"]]
            row["_unit"] = unit
            render_nfl(row, p)
            _tag(
                row,
                "unit_spelling",
                f"{p.paramcd} reported as {row['result']} {unit}; x {p.units[unit]:g} gives {p.unit}",
            )

    # unknown_sample: rows whose sample id the manifest does not know.
    counts = unknown_sample_counts(scale)
    ids = iter(unknown_ids)
    for _ in range(counts[TREG_FAMILY]):
        f = treg[int(rng.integers(len(treg)))]
        acquired = f.rows[int(rng.integers(len(f.rows)))]["acquisition_date"] if f.rows else None
        cd4 = M.CD4_MEDIAN * math.exp(M.CD4_SUBJECT_SIGMA * rng.standard_normal())
        pct = M.TREG_PCT_MEDIAN * math.exp(M.TREG_PCT_SUBJECT_SIGMA * rng.standard_normal())
        row = treg_row(next(ids), cd4, pct, acquired)
        _tag(row, "unknown_sample", f"sample {row['sample_id']} is not in the manifest")
        f.rows.insert(int(rng.integers(len(f.rows) + 1)), row)
    serum_files = [f for f in nfl if any(r["_param"] == M.NFL_SERUM for r in f.rows)]
    for _ in range(counts[NFL_FAMILY]):
        f = serum_files[int(rng.integers(len(serum_files)))]
        serum_rows = [r for r in f.rows if r["_param"] == M.NFL_SERUM]
        template = serum_rows[int(rng.integers(len(serum_rows)))]
        value = M.NFL_SERUM_MEDIAN_LIMB * math.exp(0.5 * rng.standard_normal())
        row = nfl_row(next(ids), serum, value, template["dilution"], template["plate_id"], template["run_date"], draw_cv(rng))
        _tag(row, "unknown_sample", f"sample {row['sample_id']} is not in the manifest")
        f.rows.insert(int(rng.integers(len(f.rows) + 1)), row)

    # duplicate_row: exact copies of a few rows later in the same delivery.
    for files in (treg, nfl):
        for fi, ri in _pick(rng, _eligible(files), fault_count(DUPLICATE_BASE, scale)):
            rows = files[fi].rows
            original = files[fi].rows[ri]
            # earlier insertions may have moved the original: find it by identity
            pos = next(i for i, r in enumerate(rows) if r is original)
            copy = _private_free_copy(original)
            for k in ("_true", "_unit", "_cv", "_param", "_censored"):
                if k in original:
                    copy[k] = original[k]
            _tag(copy, "duplicate_row", "exact duplicate of {ref}", original)
            original["_lock"] = True
            rows.insert(int(rng.integers(pos + 1, len(rows) + 1)), copy)

    # correction: batch02 reported some values with a decimal-point error; a corrected
    # re-delivery re-sends those rows (same sample_id + analyte) with the right values.
    if len(nfl) >= CORRECTED_BATCH:
        target = nfl[CORRECTED_BATCH - 1]
        pool = [
            (0, ri)
            for ri, r in enumerate(target.rows)
            if not r["_lock"] and not r["_faults"] and r["_unit"] == params[r["_param"]].unit
        ]
        corrected_rows = []
        for _, ri in _pick(rng, pool, fault_count(CORRECTION_BASE, scale)):
            row = target.rows[ri]
            p = params[row["_param"]]
            fixed = _private_free_copy(row) | {
                k: row[k] for k in ("_true", "_unit", "_cv", "_param", "_censored")
            }
            wrong = row["_true"] * 10 if row["_true"] * 10 < p.uloq else row["_true"] / 10
            row["_true"] = wrong
            render_nfl(row, p)
            row["_lock"] = True
            _tag(fixed, "correction", f"corrects {{ref}}: {row['result']} -> {fixed['result']} {fixed['unit']}", row)
            corrected_rows.append(fixed)
        if corrected_rows:
            name = batch_name(NFL_FAMILY, CORRECTED_BATCH, "_corrected")
            nfl = nfl[:CORRECTED_BATCH] + [LabFile(NFL_FAMILY, name, corrected_rows)] + nfl[CORRECTED_BATCH:]
    return treg, nfl


def collect_row_faults(files: list[LabFile], relpath: dict[str, str]) -> list[InjectedFault]:
    """Resolve row numbers of every row-level fault once the files are final."""
    where: dict[int, tuple[str, int]] = {}
    for f in files:
        for n, row in enumerate(f.rows, start=1):
            where[id(row)] = (relpath[f.name], n)
    faults = []
    for f in files:
        for n, row in enumerate(f.rows, start=1):
            for kind, detail, ref in row["_faults"]:
                if ref is not None:
                    ref_file, ref_row = where[id(ref)]
                    detail = detail.replace("{ref}", f"{ref_file} row {ref_row}")
                faults.append(InjectedFault(f.family, relpath[f.name], n, row["sample_id"], kind, detail))
    return faults

