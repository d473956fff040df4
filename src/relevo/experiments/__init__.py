"""Online experiments: A/B tests whose traffic can follow the evidence.

``design`` says what an experiment is (validated records), ``allocation`` who sees which
variant (deterministic hashing over a split that is fixed or adaptive: Thompson or
top-two Thompson), ``analysis`` what the evidence says (intervals, lift, P(best),
guardrails, sample-ratio mismatch). Pure numpy/scipy: storage and HTTP live elsewhere.
"""

from relevo.experiments.allocation import (
    allocation_probabilities,
    assign,
    assign_indices,
    bucket,
    top_two_probabilities,
)
from relevo.experiments.analysis import (
    ExperimentResults,
    GuardrailResult,
    SampleRatioCheck,
    Sums,
    VariantResult,
    VariantStats,
    empty_stats,
    probability_best,
    results,
    sample_ratio_check,
)
from relevo.experiments.design import Experiment, Guardrail, Variant

__all__ = [
    "Experiment",
    "ExperimentResults",
    "Guardrail",
    "GuardrailResult",
    "SampleRatioCheck",
    "Sums",
    "Variant",
    "VariantResult",
    "VariantStats",
    "allocation_probabilities",
    "assign",
    "assign_indices",
    "bucket",
    "empty_stats",
    "probability_best",
    "results",
    "sample_ratio_check",
    "top_two_probabilities",
]
