"""Agreement with obp 0.4.1 on the vendored OBD samples (numbers in obp_reference.json, written by
make_obp_reference.py with obp): same data, same evaluation action distribution and reward-model
predictions -> IPW and SNIPW to 1e-6 relative, the model-based estimators to 1e-5 (asked: 1%); the simulated
ZOZOTOWN Bernoulli TS action distribution within Monte-Carlo error of obp's."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecomrl_jax.offline import load_obd
from ecomrl_jax.offline import estimators as E
from ecomrl_jax.offline.policies import bts_action_dist, zozotown_prior
from tests.offline.make_obp_reference import action_dist, q_hat

REFERENCE = json.loads((Path(__file__).parent / "obp_reference.json").read_text())


@pytest.mark.parametrize("behavior", ["random", "bts"])
def test_estimates_match_obp(behavior):
    data = load_obd(behavior)
    expected = REFERENCE["logs"][behavior]
    assert data.n_rows == expected["n_rows"]
    context = np.asarray(data.context, np.float64)
    shape = (context, data.num_actions, data.len_list)
    dist, q = jnp.asarray(action_dist(*shape), jnp.float32), jnp.asarray(q_hat(*shape), jnp.float32)
    E.check_action_dist(dist, data)
    terms = jax.jit(E.row_terms)(data, dist, q)
    tau, lambda_ = REFERENCE["tau"], REFERENCE["lambda"]
    ours = {**E.estimate(terms, ("ipw", "snipw", "dm", "dr", "sndr", "switch-dr", "dr-os")),
            f"switch-dr tau={tau:g}": E.switch_dr(terms, tau=tau), f"dr-os lambda={lambda_:g}": E.dros(terms, lambda_=lambda_)}
    assert set(ours) == set(expected["estimates"])
    for name, value in expected["estimates"].items():
        rtol = 1e-6 if name in E.MODEL_FREE else 1e-5  # the issue asks 1%; float32 vs float64 gives ~1e-7
        np.testing.assert_allclose(float(ours[name]), value, rtol=rtol, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("num_samples", [10_000, pytest.param(200_000, marks=pytest.mark.slow)])
def test_bts_action_distribution_matches_obps_simulation(num_samples):
    """Each of the 240 item x position probabilities within 4.5 standard errors of the two
    simulations' difference (ours: `num_samples` slates; obp: 1,000,000)."""
    reference = REFERENCE["bts_action_dist"]
    theirs = np.array(reference["probabilities"])
    ours = np.asarray(jax.jit(bts_action_dist, static_argnums=(3, 4, 5))(
        jax.random.key(0), *zozotown_prior("all"), 3, num_samples, 10_000))
    p = np.clip((ours + theirs) / 2, 1e-6, 1)
    se = np.sqrt(p * (1 - p) * (1 / num_samples + 1 / reference["n_sim"]))
    z = np.abs(ours - theirs) / se
    assert z.max() < 4.5, (z.max(), np.unravel_index(z.argmax(), z.shape))
    assert theirs.argmax(axis=0).tolist() == ours.argmax(axis=0).tolist()
