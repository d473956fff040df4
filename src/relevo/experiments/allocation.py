"""Who sees which variant: deterministic hash assignment, and the split it follows.

Assignment. Each unit (user, session...) gets a fixed position u in [0, 1):

    u = (first 64 bits of blake2b-64(len-prefixed salt | experiment id | unit id,
         person=b"relevo-exp-v1") >> 11) / 2^53

and the variant whose cumulative-probability interval [C_{k-1}, C_k) holds u. So the
same unit with the same probabilities gets the same variant, always, on any process or
machine (no state, no RNG). When adaptive allocation changes the probabilities, a unit
moves only if an interval boundary crossed its u: moving mass from a variant to its
neighbour moves exactly that mass of units; in general the share that moves is at most
sum_k |C_k - C'_k|. Units never move for other reasons. Store a unit's first variant
where strict stickiness matters more than following the evidence. The byte layout is a
storage format (pinned by a golden test): changing it reshuffles every running
experiment.

Split (``allocation_probabilities``), shape (K,) float64 summing to 1:

- ``fixed``: the normalised weights, exactly.
- ``thompson``: P(variant is best) under Beta(1 + successes, 1 + trials - successes)
  posteriors (``analysis.beta_posteriors``), estimated from ``THOMPSON_DRAWS`` = 10,000
  seeded joint draws (standard error <= 0.005).
- ``top_two``: the probability that top-two Thompson sampling (Russo 2016, beta = 0.5)
  picks each variant: with prob. beta the leader I of a posterior draw, otherwise the
  leader of a fresh draw conditioned on differing from I, so
  psi_i = beta a_i + (1 - beta) sum_{j != i} a_j a_i / (1 - a_j), with a = P(best) from
  the same Monte Carlo. Where a_j = 1 to Monte-Carlo precision (j led every draw) the
  challenger distribution given j is taken as the runner-up frequencies of those draws.

Adaptive splits then get a floor, q = f + (1 - sum f) p: a variant with fewer than
``min_samples_per_variant`` rewards keeps f_k = ``WARMUP_SHARE`` / K = 0.5 / K (so every
arm gets the data its read-out needs), every other variant f_k = ``MIN_SHARE`` / K =
0.01 / K (no arm is ever starved: propensities stay >= 0.01 / K, so the logged
assignment probabilities remain usable for off-policy estimates). The split in force is
each assignment's propensity: log it, and accumulate sum_t n_t q_t for the
sample-ratio check (``analysis.sample_ratio_check``).

Rewards that are not 0/1 count as fractional successes (sum of rewards clipped to
[0, 1]) over trials = rewards recorded, one per exposure; see ``analysis``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from relevo.experiments.analysis import VariantStats, align_stats, beta_posteriors, posterior_draws
from relevo.experiments.design import Experiment

THOMPSON_DRAWS = 10_000
TOP_TWO_BETA = 0.5
WARMUP_SHARE = 0.5
MIN_SHARE = 0.01
HASH_PERSON = b"relevo-exp-v1"
PROBABILITY_TOLERANCE = 1e-6


def _part(text: str) -> bytes:
    raw = text.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def bucket(experiment: Experiment, unit_id: str) -> float:
    """The unit's fixed position u in [0, 1) for this experiment (layout in the module
    docstring). Uniform over units; independent across salts and experiment ids."""
    if not isinstance(unit_id, str) or not unit_id:
        raise ValueError("unit_id must be a non-empty string")
    message = _part(experiment.salt) + _part(experiment.id) + _part(unit_id)
    digest = hashlib.blake2b(message, digest_size=8, person=HASH_PERSON).digest()
    return (int.from_bytes(digest, "big") >> 11) / float(1 << 53)


def check_probabilities(probabilities, k: int) -> np.ndarray:
    """Validate a split: shape (k,), finite, >= 0, summing to 1 within 1e-6. Returns the
    cumulative probabilities, shape (k,), with the last entry exactly 1."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.shape != (k,):
        raise ValueError(f"probabilities have shape {p.shape}; expected ({k},), one per variant")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probabilities must be finite and >= 0")
    total = p.sum()
    if abs(total - 1.0) > PROBABILITY_TOLERANCE:
        raise ValueError(f"probabilities must sum to 1, got {total:.9g}")
    cum = np.cumsum(p / total)
    cum[-1] = 1.0
    return cum


def variant_indices(u, cumulative: np.ndarray) -> np.ndarray:
    """Variant index for positions ``u`` (array-like (n,) in [0, 1)): the k with
    C_{k-1} <= u < C_k. Variants with zero probability are never chosen. Shape (n,) int64."""
    idx = np.searchsorted(cumulative, np.asarray(u, dtype=np.float64), side="right")
    return np.minimum(idx, len(cumulative) - 1).astype(np.int64)


def assign(experiment: Experiment, unit_id: str, probabilities) -> str:
    """Name of the variant ``unit_id`` is in, given the split in force (shape (K,))."""
    cum = check_probabilities(probabilities, len(experiment.variants))
    return experiment.names[int(variant_indices([bucket(experiment, unit_id)], cum)[0])]


def assign_indices(experiment: Experiment, unit_ids: Sequence[str], probabilities) -> np.ndarray:
    """Bulk ``assign``: variant index per unit, shape (n,) int64."""
    cum = check_probabilities(probabilities, len(experiment.variants))
    u = np.fromiter((bucket(experiment, uid) for uid in unit_ids), dtype=np.float64, count=len(unit_ids))
    return variant_indices(u, cum)


def top_two_probabilities(samples: np.ndarray, beta: float = TOP_TWO_BETA) -> np.ndarray:
    """Top-two Thompson selection probabilities from posterior samples of the means,
    ``samples`` shape (draws, K); returns shape (K,) summing to 1 (formula in the module
    docstring)."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError("beta must be in [0, 1]")
    draws, k = samples.shape
    winners = samples.argmax(axis=1)
    a = np.bincount(winners, minlength=k) / draws
    psi = beta * a
    for j in np.flatnonzero(a):
        rest = a.copy()
        rest[j] = 0.0
        if rest.sum() > 0:
            challenger = rest / rest.sum()
        else:  # j led every draw: the runner-up of each draw stands in for the challenger
            masked = samples.copy()
            masked[:, j] = -np.inf
            challenger = np.bincount(masked.argmax(axis=1), minlength=k) / draws
        psi = psi + (1.0 - beta) * a[j] * challenger
    return psi / psi.sum()


def floors(experiment: Experiment, stats: Sequence[VariantStats]) -> np.ndarray:
    """Per-variant floor shares f, shape (K,): WARMUP_SHARE / K below
    ``min_samples_per_variant`` rewards, MIN_SHARE / K after."""
    k = len(experiment.variants)
    warm = np.array([s.trials < experiment.min_samples_per_variant for s in stats])
    return np.where(warm, WARMUP_SHARE, MIN_SHARE) / k


def allocation_probabilities(
    experiment: Experiment,
    stats: Sequence[VariantStats] | Mapping[str, VariantStats],
    seed: int | np.random.Generator,
    *,
    draws: int = THOMPSON_DRAWS,
) -> np.ndarray:
    """The split to use now, shape (K,) float64 summing to 1, in variant order. ``stats``:
    per-variant evidence (sequence in variant order, or name -> stats; missing = empty).
    Same stats and seed => same split."""
    aligned = align_stats(experiment, stats)
    if experiment.allocation == "fixed":
        return experiment.weights()
    if draws < 1:
        raise ValueError("draws must be >= 1")
    alpha, beta = beta_posteriors(aligned)
    samples = posterior_draws(alpha, beta, draws, np.random.default_rng(seed))
    if experiment.allocation == "thompson":
        p = np.bincount(samples.argmax(axis=1), minlength=len(alpha)) / draws
    else:
        p = top_two_probabilities(samples, TOP_TWO_BETA)
    f = floors(experiment, aligned)
    q = f + (1.0 - f.sum()) * p
    return q / q.sum()
