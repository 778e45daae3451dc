"""Blood RNA-seq deliveries: per-sample summaries and the large gene-level table.

The gene table (samples x genes rows) is generated with numpy one row group at a time and
written with pyarrow as dictionary-encoded columns, so memory stays bounded at any scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.study import Contracts, FamilyContract, Study
from pipelines.synth import model as M
from pipelines.synth.report import GeneratedFile
from pipelines.synth.rng import substream
from pipelines.synth.samples import Sample, baseline_visit
from pipelines.synth.writer import PARQUET_OPTIONS, arrow_schema, check_columns, relpath, write_columns

SUMMARY_FAMILY = "transcript_summary"
GENE_FAMILY = "transcript_gene"


@dataclass(frozen=True)
class GeneCatalogue:
    """Genes in delivery order (sorted by Ensembl id) with their expression model."""

    gene_ids: pa.Array
    symbols: pa.Array
    mean: np.ndarray
    sd: np.ndarray
    signature_idx: np.ndarray  # positions of the Treg signature genes
    signature_weight: np.ndarray


def gene_catalogue(genes: int, seed: int) -> GeneCatalogue:
    """``genes`` unique Ensembl-like ids and symbols, always including the Treg signature genes."""
    signature = M.TREG_SIGNATURE_GENES
    if genes < len(signature):
        raise ValueError(f"genes must be at least {len(signature)} (the Treg signature genes)")
    rng = substream(seed, "gene-catalogue")
    n_other = genes - len(signature)
    real = [s for s in M.REAL_GENE_SYMBOLS if s not in signature][:n_other]
    width = max(5, len(str(n_other)))
    symbols = list(signature) + real + [f"GENE{i:0{width}d}" for i in range(1, n_other - len(real) + 1)]
    taken = {int(v[0][4:]) for v in signature.values()}
    numbers = rng.choice(M.ENSEMBL_ID_MAX, n_other + len(taken), replace=False) + 1
    numbers = [int(n) for n in numbers if int(n) not in taken][:n_other]
    ids = [v[0] for v in signature.values()] + [f"ENSG{n:011d}" for n in numbers]
    mean = np.concatenate(
        [
            np.array([v[1] for v in signature.values()]),
            np.clip(rng.normal(M.GENE_MEAN[0], M.GENE_MEAN[1], n_other), 0.0, 12.0),
        ]
    )
    sd = rng.uniform(M.GENE_SD[0], M.GENE_SD[1], genes)
    weight = np.concatenate([np.array([v[2] for v in signature.values()]), np.zeros(n_other)])
    order = np.argsort(np.array(ids), kind="stable")
    position = np.empty(genes, dtype=int)
    position[order] = np.arange(genes)
    return GeneCatalogue(
        gene_ids=pa.array([ids[i] for i in order], pa.string()),
        symbols=pa.array([symbols[i] for i in order], pa.string()),
        mean=mean[order],
        sd=sd[order],
        signature_idx=position[: len(signature)],
        signature_weight=weight[: len(signature)],
    )


def rna_batches(study: Study, samples: list[Sample]) -> list[tuple[str, list[Sample]]]:
    """RNA samples grouped by sequencing batch (one batch per transcriptomics visit)."""
    spec = study.gene_expression
    out = []
    for visit_code in spec["visits"]:
        batch = sorted(
            (s for s in samples if s.matrix == spec["matrix"] and s.visit_code == visit_code),
            key=lambda s: (s.collection, s.sample_id),
        )
        if batch:
            out.append((visit_code, batch))
    return out


def write_transcripts(
    out: Path,
    study: Study,
    contracts: Contracts,
    samples: list[Sample],
    latents: dict,
    seed: int,
    genes: int,
) -> list[GeneratedFile]:
    """Write transcript_summary and transcript_gene batches; returns the files written."""
    catalogue = gene_catalogue(genes, seed)
    batches = rna_batches(study, samples)
    rna = [s for _, batch in batches for s in batch]
    if not rna:
        return []
    rng = substream(seed, "rna-samples")
    n = len(rna)
    offset = rng.normal(0.0, M.LIBRARY_OFFSET_SD, n)
    log2_treg = np.array([math.log2(latents[s.key]["treg_pct"] / M.TREG_PCT_MEDIAN) for s in rna])
    sig = (
        catalogue.mean[catalogue.signature_idx][None, :]
        + catalogue.signature_weight[None, :] * log2_treg[:, None]
        + rng.normal(0.0, M.SIGNATURE_NOISE_SD, (n, len(catalogue.signature_idx)))
        + offset[:, None]
    ).round(M.EXPRESSION_DECIMALS)
    reference = np.array([s.visit_code == baseline_visit(study).visit_code for s in rna])
    if reference.sum() < 2:
        reference[:] = True
    ref_mean = sig[reference].mean(axis=0)
    ref_sd = sig[reference].std(axis=0, ddof=1) if reference.sum() > 1 else np.ones(sig.shape[1])
    ref_sd[ref_sd == 0] = 1.0
    signature_score = ((sig - ref_mean) / ref_sd).mean(axis=1).round(4)

    def qc(spec: tuple[float, float, float, float], decimals: int) -> np.ndarray:
        return np.clip(rng.normal(spec[0], spec[1], n), spec[2], spec[3]).round(decimals)

    reads, mapped, rin = qc(M.READS_M, 2), qc(M.PCT_MAPPED, 2), qc(M.RIN, 1)
    files: list[GeneratedFile] = []
    first = 0
    for b, (visit_code, batch) in enumerate(batches, start=1):
        idx = np.arange(first, first + len(batch))
        first += len(batch)
        run_ids = [f"SEQ{b:02d}-R{k // M.RUN_SAMPLES + 1:02d}" for k in range(len(batch))]
        summary = {
            "sample_id": [s.sample_id for s in batch],
            "total_reads_m": reads[idx].tolist(),
            "pct_mapped": mapped[idx].tolist(),
            "rin": rin[idx].tolist(),
            "treg_signature": signature_score[idx].tolist(),
            "run_id": run_ids,
        }
        files.append(write_columns(out, contracts[SUMMARY_FAMILY], f"{SUMMARY_FAMILY}_batch{b:02d}.parquet", summary))
        files.append(
            _write_gene_batch(
                out,
                contracts[GENE_FAMILY],
                f"{GENE_FAMILY}_batch{b:02d}.parquet",
                [s.sample_id for s in batch],
                offset[idx],
                sig[idx],
                catalogue,
                substream(seed, f"genes-{visit_code}"),
            )
        )
    return files


def _write_gene_batch(
    out: Path,
    contract: FamilyContract,
    name: str,
    sample_ids: list[str],
    offset: np.ndarray,
    signature_values: np.ndarray,
    catalogue: GeneCatalogue,
    rng: np.random.Generator,
) -> GeneratedFile:
    """Write one gene-level batch, one row group (~1M rows) at a time."""
    n_genes = len(catalogue.gene_ids)
    per_group = max(1, M.GENE_ROW_GROUP_ROWS // n_genes)
    schema = arrow_schema(contract, dictionary_strings=True)
    check_columns(contract, schema.names)
    rel = relpath(contract, name)
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    gene_idx = np.arange(n_genes, dtype=np.int32)
    with pq.ParquetWriter(path, schema, **PARQUET_OPTIONS) as writer:
        for first in range(0, len(sample_ids), per_group):
            ids = sample_ids[first : first + per_group]
            k = len(ids)
            x = catalogue.mean[None, :] + catalogue.sd[None, :] * rng.standard_normal((k, n_genes))
            x += offset[first : first + k, None]
            x[:, catalogue.signature_idx] = signature_values[first : first + k]
            x = x.round(M.EXPRESSION_DECIMALS)
            columns = {
                "sample_id": pa.DictionaryArray.from_arrays(
                    pa.array(np.repeat(np.arange(k, dtype=np.int32), n_genes)), pa.array(ids, pa.string())
                ),
                "gene_id": pa.DictionaryArray.from_arrays(pa.array(np.tile(gene_idx, k)), catalogue.gene_ids),
                "gene_symbol": pa.DictionaryArray.from_arrays(pa.array(np.tile(gene_idx, k)), catalogue.symbols),
                "expression": pa.array(x.ravel()),
            }
            table = pa.Table.from_arrays([columns[c] for c in schema.names], schema=schema)
            writer.write_table(table, row_group_size=k * n_genes)
    return GeneratedFile(contract.family, rel, len(sample_ids) * n_genes)
