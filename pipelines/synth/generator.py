"""Assemble a whole MIROCALS-shaped landing zone from one seed."""

from __future__ import annotations

import math
from pathlib import Path

from pipelines.study import load_contracts, load_study
from pipelines.synth.faults import collect_row_faults, inject_lab_faults, unknown_sample_counts
from pipelines.synth.model import TREG_SIGNATURE_GENES
from pipelines.synth.labs import neurofilament_files, treg_files, visit_latents
from pipelines.synth.report import REPORT_RELPATH, GeneratedFile, GenerationReport, InjectedFault
from pipelines.synth.samples import assign_sample_ids, inject_manifest_faults, manifest_columns, plan_samples
from pipelines.synth.subjects import Cohort, build_cohort
from pipelines.synth.transcripts import write_transcripts
from pipelines.synth.writer import write_columns, write_rows

SUBJECTS_FAMILY = "subjects"
MANIFEST_FAMILY = "sample_manifest"
RANDOMISATION_FAMILY = "randomisation"


def _subject_columns(cohort: Cohort, names: tuple[str, ...]) -> dict[str, list]:
    return {c: [getattr(s, c) for s in cohort.subjects] for c in names}


def _validate(seed: int, scale: float, genes: int) -> None:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError("seed must be a non-negative integer")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError("scale must be a positive number")
    n_signature = len(TREG_SIGNATURE_GENES)
    if not isinstance(genes, int) or isinstance(genes, bool) or genes < n_signature:
        raise ValueError(f"genes must be an integer >= {n_signature} (the Treg signature genes)")


def generate_landing_zone(
    out: Path, seed: int = 20170615, scale: float = 1.0, genes: int = 20000
) -> GenerationReport:
    """Write a seeded synthetic landing zone under ``out`` and return (and save) its report."""
    _validate(seed, scale, genes)
    scale = float(scale)
    out = Path(out)
    study = load_study()
    contracts = load_contracts()

    cohort = build_cohort(study, seed, scale)
    samples = plan_samples(study, cohort, seed)
    samples = inject_manifest_faults(study, cohort, samples, seed, scale)
    unknown_ids = assign_sample_ids(samples, sum(unknown_sample_counts(scale).values()), seed)
    latents = visit_latents(study, cohort, samples, seed)
    treg, nfl = inject_lab_faults(
        study,
        treg_files(study, samples, latents, seed),
        neurofilament_files(study, samples, latents, seed),
        unknown_ids,
        seed,
        scale,
    )

    export = f"{cohort.data_cutoff:%Y%m%d}"
    files: list[GeneratedFile] = []
    subjects_contract = contracts[SUBJECTS_FAMILY]
    files.append(
        write_columns(
            out,
            subjects_contract,
            f"subjects_export_{export}.parquet",
            _subject_columns(cohort, subjects_contract.column_names),
        )
    )
    manifest = write_columns(
        out, contracts[MANIFEST_FAMILY], f"manifest_export_{export}.parquet", manifest_columns(samples)
    )
    files.append(manifest)
    listed = write_rows(out, contracts[RANDOMISATION_FAMILY], "randomisation_list.parquet", list(cohort.randomisation))
    # the real list is for unblinded builds only: readable by its owner alone
    (Path(out) / listed.path).chmod(0o600)
    (Path(out) / listed.path).parent.chmod(0o700)
    files.append(listed)

    faults: list[InjectedFault] = [
        InjectedFault(MANIFEST_FAMILY, manifest.path, None, s.sample_id, s.fault, s.detail)
        for s in sorted(samples, key=lambda s: s.sample_id)
        if s.fault
    ]
    for lab_files in (treg, nfl):
        paths = {}
        for f in lab_files:
            written = write_rows(out, contracts[f.family], f.name, f.rows)
            files.append(written)
            paths[f.name] = written.path
        faults.extend(collect_row_faults(lab_files, paths))
    files.extend(write_transcripts(out, study, contracts, samples, latents, seed, genes))

    randomised = cohort.randomised
    report = GenerationReport(
        files=sorted(files, key=lambda f: f.path),
        faults=sorted(faults, key=lambda f: (f.file, f.row_number or 0, f.sample_id or "", f.kind)),
        n_entered=len(cohort.subjects),
        n_randomised=len(randomised),
        n_per_arm={a: sum(s.armcd == a for s in randomised) for a in study.armcds},
        n_deaths_per_arm={a: sum(s.armcd == a and s.death_date is not None for s in randomised) for a in study.armcds},
        n_withdrawn=sum(s.withdrawal_date is not None for s in randomised),
        n_samples=len(samples),
        seed=seed,
        scale=scale,
        genes=genes,
    )
    target = out / REPORT_RELPATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report.to_json(), encoding="utf-8")
    # the landing zone holds values as the labs delivered them, unblinded (and the report counts
    # per real arm): readable by the pipeline's account only
    out.chmod(0o700)
    return report

