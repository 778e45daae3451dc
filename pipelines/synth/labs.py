"""Lab deliveries of the small families: Treg flow cytometry and neurofilaments, batch by batch.

Rows are plain dicts holding the contract's columns plus private keys (starting with ``_``)
that the writer drops: ``_faults`` (list of (kind, detail, referenced row or None)),
``_lock`` (row must not receive another fault), and for neurofilaments the true value and
reporting unit the result text is rendered from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from pipelines.study import Parameter, Study
from pipelines.synth import model as M
from pipelines.synth.rng import substream, weighted_choice
from pipelines.synth.samples import Sample, baseline_visit
from pipelines.synth.subjects import Cohort

TREG_FAMILY = "treg"
NFL_FAMILY = "neurofilament"


@dataclass
class LabFile:
    """One lab delivery file being assembled."""

    family: str
    name: str
    rows: list[dict]


def batch_name(family: str, number: int, suffix: str = "") -> str:
    """File name of a lab batch; names sort in delivery order."""
    return f"{family}_batch{number:02d}{suffix}.parquet"


def visit_latents(study: Study, cohort: Cohort, samples: list[Sample], seed: int) -> dict[tuple[str, str], dict]:
    """True biomarker levels per (subject, visit), shared by every sample of that visit."""
    rng = substream(seed, "visit-latents")
    subjects = cohort.by_id()
    visit_of = {v.visit_code: v for v in study.visits}
    baseline = baseline_visit(study).visit_code
    out: dict[tuple[str, str], dict] = {}
    for key in sorted({s.key for s in samples}):
        subject, visit = subjects[key[0]], visit_of[key[1]]
        z = rng.standard_normal(6)
        on_treatment = subject.armcd == cohort.active_arm and visit.study_day > 1
        fold = subject.il2_fold if on_treatment else 1.0
        pnfh_base = subject.pnfh_baseline
        if pnfh_base is None:
            pnfh_base = M.PNFH_MEDIAN * math.exp(M.PNFH_SIGMA * z[5])
        if key[1] == baseline and subject.pnfh_baseline is not None:
            pnfh = pnfh_base
        else:
            pnfh = pnfh_base * math.exp(M.PNFH_FOLLOWUP_DRIFT[0] + M.PNFH_FOLLOWUP_DRIFT[1] * z[4])
        out[key] = {
            "cd4": subject.cd4_level * math.exp(M.CD4_VISIT_SIGMA * z[0]),
            "treg_pct": subject.treg_pct_base * fold * math.exp(M.TREG_PCT_VISIT_SIGMA * z[1]),
            M.NFL_SERUM: subject.nfl_serum * math.exp(M.NFL_SERUM_VISIT_SIGMA * z[2]),
            M.NFL_CSF: subject.nfl_csf * math.exp(M.CSF_VISIT_SIGMA * z[3]),
            M.PNFH_CSF: pnfh,
        }
    return out


def _split(items: list, n_batches: int) -> list[list]:
    n = min(n_batches, len(items))
    if n == 0:
        return []
    bounds = np.linspace(0, len(items), n + 1).round().astype(int)
    return [items[bounds[i] : bounds[i + 1]] for i in range(n)]


def panel_version(on: date) -> str:
    """Flow panel in use on a date."""
    return [name for name, since in M.PANEL_VERSIONS if since <= on][-1]


def treg_row(sample_id: str, cd4: float, pct: float, acquired: date, lock: bool = False) -> dict:
    """A Treg delivery row from true CD4 count and %Treg."""
    cd4 = round(cd4, 1)
    pct = round(pct, 2)
    return {
        "sample_id": sample_id,
        "cd4_count": cd4,
        "treg_count": round(cd4 * pct / 100.0, 2),
        "treg_pct_cd4": pct,
        "panel_version": panel_version(acquired),
        "acquisition_date": acquired,
        "_faults": [],
        "_lock": lock,
    }


def treg_files(study: Study, samples: list[Sample], latents: dict, seed: int) -> list[LabFile]:
    """Treg flow cytometry batches, split by collection period."""
    rng = substream(seed, "treg")
    matrix = study.parameter(M.CD4CNT).matrix
    mine = sorted((s for s in samples if s.matrix == matrix), key=lambda s: (s.collection, s.sample_id))
    rows = []
    for s in mine:
        lat = latents[s.key]
        acquired = s.collection.date() + timedelta(days=int(rng.choice(M.ACQUISITION_LAG_DAYS)))
        rows.append(treg_row(s.sample_id, lat["cd4"], lat["treg_pct"], acquired, lock=s.fault is not None))
    files = []
    for b, batch in enumerate(_split(rows, M.TREG_BATCHES), start=1):
        batch.sort(key=lambda r: (r["acquisition_date"], r["sample_id"]))
        files.append(LabFile(TREG_FAMILY, batch_name(TREG_FAMILY, b), batch))
    return files


# --- neurofilaments -----------------------------------------------------------------------------


def _decimals(factor: float) -> int:
    return 1 + max(0, round(math.log10(factor))) if factor >= 1 else 1


def _fmt_lloq(x: float) -> str:
    return f"{x:.1f}" if x >= 1 else format(x, "g")


def _fmt_uloq(x: float) -> str:
    return format(x, "g")


def render_nfl(row: dict, param: Parameter) -> dict:
    """(Re)write result text, unit, limits and CV of a row from its true value and reporting unit."""
    unit = row["_unit"]
    factor = param.units[unit]
    value = row["_true"]
    lloq, uloq = param.lloq / factor, param.uloq / factor
    if value < param.lloq:
        result, censored = f"<{_fmt_lloq(lloq)}", True
    elif value > param.uloq:
        result, censored = f">{_fmt_uloq(uloq)}", True
    else:
        result, censored = f"{value / factor:.{_decimals(factor)}f}", False
    row.update(
        result=result,
        unit=unit,
        lloq=lloq,
        uloq=uloq,
        cv_pct=None if censored else row["_cv"],
    )
    row["_censored"] = "below" if value < param.lloq else ("above" if value > param.uloq else None)
    return row


def nfl_row(
    sample_id: str,
    param: Parameter,
    value: float,
    dilution: float,
    plate_id: str,
    run_date: date,
    cv: float,
    lock: bool = False,
) -> dict:
    """A neurofilament delivery row in the parameter's standard unit."""
    row = {
        "sample_id": sample_id,
        "analyte": param.source["analyte"],
        "result": "",
        "unit": param.unit,
        "lloq": 0.0,
        "uloq": 0.0,
        "dilution": dilution,
        "plate_id": plate_id,
        "run_date": run_date,
        "cv_pct": None,
        "_true": value,
        "_unit": param.unit,
        "_cv": cv,
        "_param": param.paramcd,
        "_faults": [],
        "_lock": lock,
    }
    return render_nfl(row, param)


def draw_cv(rng: np.random.Generator) -> float:
    """Replicate CV of a Simoa result, %."""
    return round(float(np.clip(M.CV_MEDIAN * math.exp(M.CV_SIGMA * rng.standard_normal()), 0.5, 30.0)), 1)


def dilution_for(param: Parameter, serum_matrix: str, rng: np.random.Generator) -> float:
    """Dilution factor a lab would apply for this matrix."""
    return float(weighted_choice(rng, M.SERUM_DILUTIONS if param.matrix == serum_matrix else M.CSF_DILUTIONS))


def neurofilament_files(study: Study, samples: list[Sample], latents: dict, seed: int) -> list[LabFile]:
    """Neurofilament batches by collection period, assays on plates of fixed size."""
    rng = substream(seed, "neurofilament")
    params = study.parameters_of(NFL_FAMILY)
    serum_matrix = study.parameter(M.NFL_SERUM).matrix
    matrices = {p.matrix for p in params}
    mine = sorted((s for s in samples if s.matrix in matrices), key=lambda s: (s.collection, s.sample_id))
    files = []
    for b, batch in enumerate(_split(mine, M.NFL_BATCHES), start=1):
        batch_end = max(s.collection.date() for s in batch)
        rows = []
        for pi, p in enumerate(params):
            assay = [s for s in batch if s.matrix == p.matrix and s.visit_code in p.visits]
            for plate_no, first in enumerate(range(0, len(assay), M.PLATE_SAMPLES), start=1):
                plate_id = f"{p.paramcd}-B{b:02d}-P{plate_no:02d}"
                run_date = batch_end + timedelta(days=M.RUN_LAG_DAYS + 3 * pi + plate_no)
                for s in assay[first : first + M.PLATE_SAMPLES]:
                    rows.append(
                        nfl_row(
                            s.sample_id,
                            p,
                            latents[s.key][p.paramcd],
                            dilution_for(p, serum_matrix, rng),
                            plate_id,
                            run_date,
                            draw_cv(rng),
                            lock=s.fault is not None,
                        )
                    )
        files.append(LabFile(NFL_FAMILY, batch_name(NFL_FAMILY, b), rows))
    return files
