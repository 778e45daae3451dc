"""Subjects who entered the run-in, their latent disease course, outcomes and the randomisation list."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import NormalDist

import numpy as np

from pipelines.study import Study
from pipelines.synth import model as M
from pipelines.synth.rng import exact_flags, largest_remainder, substream, weighted_choice


@dataclass
class Subject:
    """One subject: what the trial database exports plus the latent values behind the labs."""

    usubjid: str
    siteid: str
    country: str
    sex: str
    age: int
    onset: str
    diagnosis_date: date
    consent_date: date
    randomisation_date: date | None
    # latent disease course (never exported)
    prog: float
    cd4_level: float
    treg_pct_base: float
    il2_fold: float
    nfl_serum: float
    nfl_csf: float
    pnfh_latent: float
    pnfh_baseline: float | None = None
    pnfh_group: str | None = None
    lp_done: bool = False
    armcd: str | None = None
    stratum: str | None = None
    death_date: date | None = None
    withdrawal_date: date | None = None
    withdrawal_reason: str | None = None

    @property
    def randomised(self) -> bool:
        """True if the subject was randomised."""
        return self.randomisation_date is not None

    @property
    def end_date(self) -> date | None:
        """First day on which the subject can no longer be sampled (death or withdrawal)."""
        ends = [d for d in (self.death_date, self.withdrawal_date) if d is not None]
        return min(ends) if ends else None


@dataclass(frozen=True)
class Cohort:
    """All subjects (sorted by USUBJID) and the randomisation list."""

    subjects: tuple[Subject, ...]
    randomisation: tuple[dict, ...]
    active_arm: str
    control_arm: str
    data_cutoff: date

    @property
    def randomised(self) -> tuple[Subject, ...]:
        """Randomised subjects, sorted by USUBJID."""
        return tuple(s for s in self.subjects if s.randomised)

    @property
    def not_randomised(self) -> tuple[Subject, ...]:
        """Run-in subjects who were never randomised, sorted by USUBJID."""
        return tuple(s for s in self.subjects if not s.randomised)

    def by_id(self) -> dict[str, Subject]:
        """Subjects keyed by USUBJID."""
        return {s.usubjid: s for s in self.subjects}


def study_day_to_date(randomisation_date: date, study_day: int) -> date:
    """Calendar date of a study day (day 1 = randomisation; there is no day 0)."""
    offset = study_day - 1 if study_day >= 1 else study_day
    return randomisation_date + timedelta(days=offset)


def date_to_study_day(randomisation_date: date, d: date) -> int:
    """Study day of a calendar date (day 1 = randomisation; there is no day 0)."""
    delta = (d - randomisation_date).days
    return delta + 1 if delta >= 0 else delta


def cohort_sizes(study: Study, scale: float) -> tuple[int, int, int]:
    """(entered run-in, randomised, per arm) for a scale; randomised is always split exactly."""
    n_arms = len(study.arms)
    per_arm = max(1, round(study.raw["study"]["randomised_target"] * scale / n_arms))
    n_randomised = per_arm * n_arms
    n_entered = max(round(study.raw["study"]["runin_target"] * scale), n_randomised + 1)
    return n_entered, n_randomised, per_arm


def arm_roles(study: Study) -> tuple[str, str]:
    """(active arm code, placebo arm code) from the study's arm descriptions."""
    if len(study.arms) != 2:
        raise ValueError("the generator models a two-arm trial")
    placebo = [a["armcd"] for a in study.arms if "placebo" in (a["arm"] + a.get("description", "")).lower()]
    control = placebo[0] if placebo else study.armcds[1]
    active = next(a for a in study.armcds if a != control)
    return active, control


def _site_counts(study: Study, n_entered: int, rng: np.random.Generator) -> np.ndarray:
    countries = [s.country for s in study.sites]
    largest = max(sorted(set(countries)), key=countries.count)
    weights = rng.lognormal(0.0, M.SITE_WEIGHT_SIGMA, len(study.sites))
    weights *= np.array([M.LARGEST_COUNTRY_BOOST if c == largest else 1.0 for c in countries])
    return largest_remainder(n_entered, weights)


def build_cohort(study: Study, seed: int, scale: float) -> Cohort:
    """Generate every run-in subject, randomise, and draw outcomes."""
    n_entered, n_randomised, _ = cohort_sizes(study, scale)
    active, control = arm_roles(study)
    rng = substream(seed, "subjects")
    onset_levels = study.strata["levels"]["onset"]
    bulbar_level = next((o for o in onset_levels if o.upper().startswith("BULB")), onset_levels[0])
    limb_level = next(o for o in onset_levels if o != bulbar_level)

    site_idx = np.repeat(np.arange(len(study.sites)), _site_counts(study, n_entered, rng))
    bulbar = exact_flags(rng, n_entered, M.FRACTION_BULBAR)
    male = exact_flags(rng, n_entered, M.FRACTION_MALE)
    lo_age, hi_age = study.raw["study"]["age_range"]
    age = np.clip(np.rint(rng.normal(M.AGE_MEDIAN, M.AGE_SD, n_entered)), lo_age, hi_age).astype(int)
    prog = rng.standard_normal(n_entered) + M.BULBAR_PROGRESSION_SHIFT * bulbar
    cd4 = M.CD4_MEDIAN * np.exp(rng.normal(0.0, M.CD4_SUBJECT_SIGMA, n_entered))
    treg_pct = M.TREG_PCT_MEDIAN * np.exp(
        M.TREG_PCT_PROG_SLOPE * prog + rng.normal(0.0, M.TREG_PCT_SUBJECT_SIGMA, n_entered)
    )
    responder = rng.random(n_entered) < M.IL2_RESPONDER_P
    il2_fold = np.where(responder, M.IL2_FOLD_RESPONDER, M.IL2_FOLD_NONRESPONDER) * np.exp(
        rng.normal(0.0, M.IL2_FOLD_SUBJECT_SIGMA, n_entered)
    )
    nfl_serum = M.NFL_SERUM_MEDIAN_LIMB * np.exp(
        M.NFL_SERUM_BULBAR_LOG * bulbar
        + M.NFL_SERUM_PROG_LOG * prog
        + rng.normal(0.0, M.NFL_SERUM_SUBJECT_SIGMA, n_entered)
    )
    nfl_csf = M.NFL_CSF_MEDIAN * np.exp(
        M.NFL_CSF_PROG_LOG * prog + rng.normal(0.0, M.NFL_CSF_SUBJECT_SIGMA, n_entered)
    )
    pnfh_latent = M.PNFH_PROG_WEIGHT * prog + M.PNFH_NOISE_WEIGHT * rng.standard_normal(n_entered)

    # Dates: randomised subjects are randomised over the recruitment period after a 12-18 week
    # run-in; the others consent over the same period.
    randomised = np.zeros(n_entered, dtype=bool)
    randomised[rng.choice(n_entered, n_randomised, replace=False)] = True
    start, end = M.RANDOMISATION_PERIOD
    span = (end - start).days
    rand_offset = rng.integers(0, span + 1, n_entered)
    runin = rng.integers(M.RUNIN_DAYS[0], M.RUNIN_DAYS[1] + 1, n_entered)
    consent_offset = np.where(
        randomised, rand_offset - runin, rng.integers(-M.RUNIN_DAYS[1], span - M.RUNIN_DAYS[0] + 1, n_entered)
    )
    diag_lo, diag_hi = M.DIAGNOSIS_DAYS
    diag_days = diag_lo + np.floor((diag_hi - diag_lo) * rng.random(n_entered) ** 1.4).astype(int)
    tiebreak = rng.permutation(n_entered)

    # Number subjects within site by consent date.
    numbers = np.zeros(n_entered, dtype=int)
    for s in range(len(study.sites)):
        members = np.flatnonzero(site_idx == s)
        order = members[np.lexsort((tiebreak[members], consent_offset[members]))]
        numbers[order] = np.arange(1, len(order) + 1)

    subjects: list[Subject] = []
    for i in range(n_entered):
        site = study.sites[site_idx[i]]
        consent = start + timedelta(days=int(consent_offset[i]))
        subjects.append(
            Subject(
                usubjid=f"{study.studyid}-{site.siteid}-{numbers[i]:04d}",
                siteid=site.siteid,
                country=site.country,
                sex=M.SEX_CODES[0] if male[i] else M.SEX_CODES[1],
                age=int(age[i]),
                onset=bulbar_level if bulbar[i] else limb_level,
                diagnosis_date=consent - timedelta(days=int(diag_days[i])),
                consent_date=consent,
                randomisation_date=start + timedelta(days=int(rand_offset[i])) if randomised[i] else None,
                prog=float(prog[i]),
                cd4_level=float(cd4[i]),
                treg_pct_base=float(treg_pct[i]),
                il2_fold=float(il2_fold[i]),
                nfl_serum=float(nfl_serum[i]),
                nfl_csf=float(nfl_csf[i]),
                pnfh_latent=float(pnfh_latent[i]),
            )
        )
    subjects.sort(key=lambda s: s.usubjid)

    randomisation = randomise(study, subjects, substream(seed, "randomisation"))
    _assign_pnfh(study, subjects, substream(seed, "pnfh"))
    _draw_outcomes(subjects, active, substream(seed, "outcomes"))
    last_rand = max(s.randomisation_date for s in subjects if s.randomised)
    cutoff = last_rand + timedelta(days=M.FOLLOWUP_DAYS + M.EXPORT_LAG_DAYS)
    return Cohort(tuple(subjects), tuple(randomisation), active, control, cutoff)


def _stratum(study: Study, s: Subject) -> str:
    attrs = {"country": s.country, "onset": s.onset}
    return "-".join(attrs[f] for f in study.strata["factors"])


def randomise(study: Study, subjects: list[Subject], rng: np.random.Generator) -> list[dict]:
    """Stratified permuted-block randomisation; sets ``armcd``/``stratum`` and returns the list rows."""
    arms = list(study.armcds)
    block_size = int(study.strata["block_size"])
    if block_size % len(arms):
        raise ValueError("block size must be a multiple of the number of arms")
    in_order = sorted((s for s in subjects if s.randomised), key=lambda s: (s.randomisation_date, s.usubjid))
    number = {s.usubjid: i + 1 for i, s in enumerate(in_order)}
    block_of: dict[str, str] = {}
    incomplete: list[list[Subject]] = []
    levels = study.strata["levels"]
    strata = ["-".join(combo) for combo in _product([levels[f] for f in study.strata["factors"]])]
    for s in in_order:
        s.stratum = _stratum(study, s)
    for stratum in strata:
        members = [s for s in in_order if s.stratum == stratum]
        for b, first in enumerate(range(0, len(members), block_size)):
            chunk = members[first : first + block_size]
            sequence = rng.permutation(np.repeat(np.array(arms), block_size // len(arms)))
            for s, arm in zip(chunk, sequence, strict=False):
                s.armcd = str(arm)
                block_of[s.usubjid] = f"{stratum}-{b + 1:03d}"
            if len(chunk) < block_size:
                incomplete.append(chunk)
    _balance_arms(arms, in_order, incomplete)
    return [
        {
            "usubjid": s.usubjid,
            "randomisation_number": number[s.usubjid],
            "stratum": s.stratum,
            "block_id": block_of[s.usubjid],
            "armcd": s.armcd,
        }
        for s in in_order
    ]


def _product(lists: list[list[str]]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [()]
    for values in lists:
        out = [prefix + (v,) for prefix in out for v in values]
    return out


def _balance_arms(arms: list[str], subjects: list[Subject], incomplete: list[list[Subject]]) -> None:
    """Flip arms inside the last incomplete blocks so each arm gets exactly half."""
    first, second = arms
    target = len(subjects) // 2
    excess = sum(s.armcd == first for s in subjects) - target
    while excess:
        src, dst = (first, second) if excess > 0 else (second, first)
        candidates = [b for b in incomplete if any(s.armcd == src for s in b)]
        block = max(candidates, key=lambda b: sum(s.armcd == src for s in b) - sum(s.armcd == dst for s in b))
        next(s for s in reversed(block) if s.armcd == src).armcd = dst
        excess += -1 if excess > 0 else 1


def _assign_pnfh(study: Study, subjects: list[Subject], rng: np.random.Generator) -> None:
    """Baseline lumbar puncture and CSF pNfH: exact shares missing / high / low among randomised."""
    cut = float(study.analysis["pnfh_cutpoint_pgml"])
    rand = [s for s in subjects if s.randomised]
    missing = exact_flags(rng, len(rand), M.PNFH_MISSING_FRACTION)
    measured = [s for s, m in zip(rand, missing, strict=True) if not m]
    n_high = min(len(measured), round(M.PNFH_HIGH_FRACTION * len(rand)))
    order = sorted(measured, key=lambda s: s.pnfh_latent)
    n = len(order)
    jitter = rng.normal(0.0, 0.03, n)
    nd = NormalDist()
    for rank, s in enumerate(order):
        value = M.PNFH_MEDIAN * math.exp(M.PNFH_SIGMA * nd.inv_cdf((rank + 0.5) / n) + jitter[rank])
        high = rank >= n - n_high
        value = max(value, cut * 1.01) if high else min(value, cut * 0.995)
        s.lp_done = True
        s.pnfh_baseline = value
        s.pnfh_group = "high" if high else "low"
    for s, m in zip(rand, missing, strict=True):
        if m:
            s.pnfh_group = "missing"


def _draw_outcomes(subjects: list[Subject], active: str, rng: np.random.Generator) -> None:
    """Deaths (hazard linked to progression and arm x pNfH group) and withdrawals."""
    rand = [s for s in subjects if s.randomised]
    death_day: dict[str, int | None] = {}
    for s in rand:
        hr = M.ACTIVE_ARM_HR[s.pnfh_group] if s.armcd == active else 1.0
        hazard = M.DEATH_BASE_HAZARD * math.exp(M.DEATH_PROG_LOG_HR * s.prog) * hr
        day = M.MIN_DEATH_DAY + int(rng.exponential(1.0 / hazard))
        death_day[s.usubjid] = day if day <= M.FOLLOWUP_DAYS else None
    w_day = rng.integers(M.WITHDRAWAL_DAYS[0], M.WITHDRAWAL_DAYS[1] + 1, len(rand))
    eligible = [i for i, s in enumerate(rand) if death_day[s.usubjid] is None or death_day[s.usubjid] > w_day[i]]
    k = min(len(eligible), round(M.WITHDRAWAL_FRACTION * len(rand)))
    withdrawn = set(int(i) for i in rng.choice(np.array(eligible, dtype=int), k, replace=False)) if k else set()
    reasons = weighted_choice(rng, tuple(zip(M.WITHDRAWAL_REASONS, M.WITHDRAWAL_REASON_P, strict=True)), len(rand))
    for i, s in enumerate(rand):
        if i in withdrawn:
            s.withdrawal_date = study_day_to_date(s.randomisation_date, int(w_day[i]))
            s.withdrawal_reason = reasons[i]
        elif death_day[s.usubjid] is not None:
            s.death_date = study_day_to_date(s.randomisation_date, death_day[s.usubjid])

    others = [s for s in subjects if not s.randomised]
    quits = exact_flags(rng, len(others), M.RUNIN_WITHDRAWAL_FRACTION)
    days = rng.integers(M.RUNIN_WITHDRAWAL_DAYS[0], M.RUNIN_WITHDRAWAL_DAYS[1] + 1, len(others))
    for s, q, d in zip(others, quits, days, strict=True):
        if q:
            s.withdrawal_date = s.consent_date + timedelta(days=int(d))
            s.withdrawal_reason = M.RUNIN_WITHDRAWAL_REASON
