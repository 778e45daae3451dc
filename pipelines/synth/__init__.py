"""Seeded synthetic generator of MIROCALS-shaped landing zones (reference, restricted and lab deliveries).

Usage::

    from pipelines.synth import generate_landing_zone
    report = generate_landing_zone(Path("landing"), seed=20170615, scale=1.0, genes=20000)
"""

from pipelines.synth.generator import generate_landing_zone
from pipelines.synth.report import FAULT_KINDS, GeneratedFile, GenerationReport, InjectedFault

__all__ = ["FAULT_KINDS", "GeneratedFile", "GenerationReport", "InjectedFault", "generate_landing_zone"]
