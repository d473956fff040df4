"""The Open Bandit Dataset loader on the shared sample, and off-policy evaluation of the
Bernoulli TS policy on the random log against its own on-policy CTR.

The dataset is read from ../shared/datasets (or RELEVO_DATA_DIR); a missing copy fails.
"""

from __future__ import annotations


import numpy as np
import pytest

from relevo.bandits.ope import RewardModel, behavior_action_dist_from_log, evaluate
from relevo.datasets.obd import build_vocab, load_action_context, load_obd

def test_random_men_log(obd_dir):
    log = load_obd(obd_dir, "random", "men")
    assert log.n_rounds == 10_000 and log.n_actions == 34 and log.n_positions == 3
    assert set(np.unique(log.position)) == {0, 1, 2}
    np.testing.assert_allclose(log.pscore, 1 / 34)
    assert set(np.unique(log.reward)) == {0.0, 1.0} and int(log.reward.sum()) == 46
    # one-hot user features (3 + 5 + 9 + 8 categories in this file), then 34 affinities
    assert log.context.shape == (10_000, 25 + 34)
    np.testing.assert_array_equal(log.context[:, :25].sum(axis=1), 4)
    assert log.context[:, 25:].min() >= 0
    # item features: one standardised numeric column, then three one-hot blocks
    z = log.action_context
    assert z.shape[0] == 34
    assert z[:, 0].mean() == pytest.approx(0, abs=1e-12) and z[:, 0].std() == pytest.approx(1)
    np.testing.assert_array_equal(z[:, 1:].sum(axis=1), 3)


def test_shared_vocabulary_encodes_both_logs_alike(obd_dir):
    for campaign, width in (("men", 26 + 34), ("women", 23 + 46)):
        vocab = build_vocab(obd_dir, campaign)
        assert vocab.width == width
        random_log = load_obd(obd_dir, "random", campaign, vocab=vocab)
        bts_log = load_obd(obd_dir, "bts", campaign, vocab=vocab)
        assert random_log.context.shape[1] == bts_log.context.shape[1] == width
        # the women item files hash the same item groups to different strings per policy
        np.testing.assert_array_equal(random_log.action_context, bts_log.action_context)
        assert not np.allclose(bts_log.pscore, bts_log.pscore[0])


def test_data_dir_may_be_the_obd_folder_or_its_parent(obd_dir):
    a = load_action_context(obd_dir, "bts", "women")
    b = load_action_context(obd_dir.parent, "bts", "women") if (obd_dir.parent / "obd").is_dir() else a
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("policy, campaign, error, pattern", [
    ("greedy", "men", ValueError, r"unknown OBD policy 'greedy'; choose from \['random', 'bts'\]"),
    ("random", "all", ValueError, r"unknown OBD campaign 'all'; choose from \['men', 'women'\]"),
    ("random", "men", FileNotFoundError, r"nowhere/random/men/.*\.csv not found"),
])
def test_bad_arguments_are_refused(tmp_path, policy, campaign, error, pattern):
    with pytest.raises(error, match=pattern):
        load_obd(tmp_path / "nowhere", policy, campaign)


@pytest.mark.slow
@pytest.mark.parametrize("campaign", ["men", "women"])
def test_bts_ctr_estimated_on_the_random_log(obd_dir, campaign):
    """Measured (seed 0, 3 folds, 500 resamples): truth 0.0069 / 0.0046 (men / women,
    itself +-0.0015 at 95% from 69 / 46 clicks); IPS, SNIPS and DR 0.0055 / 0.0059,
    relative errors 0.20 / 0.29, intervals covering the truth. The bound 0.5 leaves room
    for the sampling noise of both logs (about 20% relative each)."""
    vocab = build_vocab(obd_dir, campaign)
    random_log = load_obd(obd_dir, "random", campaign, vocab=vocab)
    bts_log = load_obd(obd_dir, "bts", campaign, vocab=vocab)
    pi = behavior_action_dist_from_log(bts_log)
    np.testing.assert_allclose(pi.sum(axis=0), 1)
    action_dist = np.broadcast_to(pi, (random_log.n_rounds, *pi.shape))
    q_hat = RewardModel(reg=100.0).fit_predict(random_log, n_folds=3)
    assert q_hat.shape == (10_000, random_log.n_actions, 3)
    truth = float(bts_log.reward.mean())
    estimates = {e.estimator: e for e in evaluate(random_log, action_dist, q_hat, clip=3.0, tau=3.0, n_boot=500)}
    for name, est in estimates.items():
        assert 0 < est.value < 0.05, est
    for name in ("ips", "snips", "dr"):
        assert abs(estimates[name].value - truth) / truth < 0.5, estimates[name]
        assert estimates[name].covers(truth), estimates[name]
