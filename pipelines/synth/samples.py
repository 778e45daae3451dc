"""The biobank sample manifest: which sample was taken from whom, at which visit, when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import numpy as np

from pipelines.study import Study, Visit
from pipelines.synth import model as M
from pipelines.synth.rng import fault_count, substream
from pipelines.synth.subjects import Cohort, Subject, date_to_study_day, study_day_to_date

SAMPLE_ID_DIGITS = 7


@dataclass
class Sample:
    """One manifest sample (``fault`` marks the manifest-level faults it carries)."""

    usubjid: str
    visit_code: str
    matrix: str
    collection: datetime
    sample_id: str = ""
    fault: str | None = None
    detail: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """(subject, visit) the sample belongs to."""
        return (self.usubjid, self.visit_code)


def lp_matrix(study: Study) -> str:
    """Matrix obtained by lumbar puncture (the one that carries CSF pNfH)."""
    return study.parameter(M.PNFH_CSF).matrix


def baseline_visit(study: Study) -> Visit:
    """The visit on study day 1 (randomisation, pre-dose)."""
    return next(v for v in study.visits if v.study_day == 1)


def is_screening(visit: Visit) -> bool:
    """Visits whose whole window lies before randomisation are collected at consent."""
    return visit.window_hi < 1


def _clinic_time(rng: np.random.Generator, span_min: int) -> time:
    minutes = M.CLINIC_OPEN_MIN + 5 * int(rng.integers(0, span_min // 5 + 1))
    return time(minutes // 60, minutes % 60)


def _draw_day(visit: Visit, subject: Subject, rng: np.random.Generator) -> int:
    lo, hi = visit.window_lo, visit.window_hi
    if is_screening(visit):
        consent_day = date_to_study_day(subject.randomisation_date, subject.consent_date)
        day = consent_day + int(rng.integers(0, 3))
    elif visit.study_day == 1:
        day = 1 if rng.random() < M.BASELINE_ON_DAY1_P else int(rng.integers(lo, 0))
    else:
        day = visit.study_day + int(np.rint(rng.normal(0.0, (hi - lo) / 6)))
    day = min(max(day, lo), hi)
    return -1 if day == 0 else day


def _visit_samples(
    study: Study, subject: Subject, visit: Visit, when: date, rng: np.random.Generator, with_lp: bool
) -> list[Sample]:
    # pre-dose baseline draws and visits with a lumbar puncture happen in the morning
    span = M.PREDOSE_SPAN_MIN if visit.study_day == 1 or with_lp else M.CLINIC_SPAN_MIN
    blood_time = datetime.combine(when, _clinic_time(rng, span))
    lp_delay = timedelta(minutes=5 * int(rng.integers(M.LP_DELAY_MIN[0] // 5, M.LP_DELAY_MIN[1] // 5 + 1)))
    out = []
    for matrix in visit.matrices:
        if matrix == lp_matrix(study):
            if not with_lp:
                continue
            out.append(Sample(subject.usubjid, visit.visit_code, matrix, blood_time + lp_delay))
        else:
            out.append(Sample(subject.usubjid, visit.visit_code, matrix, blood_time))
    return out


def plan_samples(study: Study, cohort: Cohort, seed: int) -> list[Sample]:
    """Every sample of every randomised subject, visit by visit until death, withdrawal or the last visit."""
    rng = substream(seed, "samples")
    visits = sorted(study.visits, key=lambda v: v.visit_num)
    samples: list[Sample] = []
    for subject in cohort.randomised:
        end = subject.end_date
        for visit in visits:
            missed = visit.study_day != 1 and rng.random() < M.MISSED_VISIT_P
            day = _draw_day(visit, subject, rng)
            when = study_day_to_date(subject.randomisation_date, day)
            if end is not None and when >= end:
                break
            if missed:
                continue
            if visit.study_day == 1:
                with_lp = subject.lp_done
            else:
                with_lp = subject.lp_done and rng.random() < M.FOLLOWUP_LP_P
            samples.extend(_visit_samples(study, subject, visit, when, rng, with_lp))
    return samples


def inject_manifest_faults(study: Study, cohort: Cohort, samples: list[Sample], seed: int, scale: float) -> list[Sample]:
    """Shift a few visits out of their window and add screening samples of never-randomised subjects."""
    rng = substream(seed, "manifest-faults")
    subjects = cohort.by_id()
    visit_of = {v.visit_code: v for v in study.visits}

    # out_of_window: whole subject-visits collected a few days after the window closed.
    keys = sorted({s.key for s in samples if visit_of[s.visit_code].study_day > 1})
    shifts = {}
    for key in [keys[i] for i in rng.permutation(len(keys))]:
        if len(shifts) >= fault_count(3, scale):
            break
        subject, visit = subjects[key[0]], visit_of[key[1]]
        new_day = visit.window_hi + int(rng.integers(3, 11))
        when = study_day_to_date(subject.randomisation_date, new_day)
        if subject.end_date is not None and when >= subject.end_date:
            continue
        shifts[key] = (new_day, when)
    for s in samples:
        if s.key in shifts:
            new_day, when = shifts[s.key]
            visit = visit_of[s.visit_code]
            s.collection = datetime.combine(when, s.collection.time())
            s.fault = "out_of_window"
            s.detail = (
                f"{s.visit_code} sample collected on study day {new_day}, "
                f"outside the window {visit.window_lo}..{visit.window_hi}"
            )

    # not_randomised: screening samples of run-in subjects who were never randomised.
    others = list(cohort.not_randomised)
    chosen = sorted(rng.choice(len(others), min(len(others), fault_count(3, scale)), replace=False))
    screening = [v for v in sorted(study.visits, key=lambda v: v.visit_num) if is_screening(v)]
    extra = []
    for i in chosen:
        subject = others[int(i)]
        for visit in screening:
            when = subject.consent_date + timedelta(days=int(rng.integers(0, 3)))
            for s in _visit_samples(study, subject, visit, when, rng, with_lp=False):
                s.fault = "not_randomised"
                s.detail = f"{subject.usubjid} entered the run-in but was never randomised"
                extra.append(s)
    return samples + extra


def assign_sample_ids(samples: list[Sample], n_extra: int, seed: int) -> list[str]:
    """Give every sample a unique random ``S`` + 7-digit id; return ``n_extra`` further unused ids."""
    rng = substream(seed, "sample-ids")
    lo = 10 ** (SAMPLE_ID_DIGITS - 1)
    numbers = rng.choice(10**SAMPLE_ID_DIGITS - lo, len(samples) + n_extra, replace=False) + lo
    ids = [f"S{n:0{SAMPLE_ID_DIGITS}d}" for n in numbers]
    for s, sid in zip(samples, ids, strict=False):
        s.sample_id = sid
    return ids[len(samples) :]


def manifest_columns(samples: list[Sample]) -> dict[str, list]:
    """Manifest rows sorted by sample id, as columns."""
    rows = sorted(samples, key=lambda s: s.sample_id)
    return {
        "sample_id": [s.sample_id for s in rows],
        "usubjid": [s.usubjid for s in rows],
        "visit_code": [s.visit_code for s in rows],
        "matrix": [s.matrix for s in rows],
        "collection_datetime": [s.collection for s in rows],
    }
