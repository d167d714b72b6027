"""Writes tests/offline/obp_reference.json: obp 0.4.1's estimates on the vendored OBD sample.

Run with a Python that has obp 0.4.1 (not a dependency of ecomrl_jax), from the repository root:

    /work/scratch/obpvenv/bin/python tests/offline/make_obp_reference.py

(obp 0.4.1 --no-deps with numpy<2, pandas<2, scikit-learn<1.6, scipy<1.14, torch, pyyaml, tqdm).
obp reads a decompressed copy of the vendored gzipped CSVs. The evaluation policy and the reward
model are fixed formulas of the context and the item (`action_dist`, `q_hat`, numpy only), so
test_obp_agreement.py computes the same inputs without obp. Also stores obp's Monte-Carlo action
distribution of BernoulliTS(is_zozotown_prior=True, campaign="all"). Not collected by pytest.
"""

import gzip
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("obp_reference.json")
SAMPLE = ROOT / "ecomrl_jax" / "offline" / "obd_sample"
BTS_SIMULATIONS, BTS_SEED = 1_000_000, 12345
TAU, LAMBDA = 5.0, 100.0  # non-default Switch-DR / DRos hyperparameters (also run with obp's defaults)


def action_dist(context: np.ndarray, num_actions: int, len_list: int) -> np.ndarray:
    """(n, A, L) a context-dependent softmax over items at each position (float64)."""
    a = np.arange(num_actions)[None, :, None]
    k = np.arange(len_list)[None, None, :]
    scale = 1.0 + context[:, :3].sum(axis=1)[:, None, None]
    logits = 2.0 * np.sin(0.7 * a + 1.3 * k) * scale
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def q_hat(context: np.ndarray, num_actions: int, len_list: int) -> np.ndarray:
    """(n, A, L) a fixed click-probability model of context, item and position (float64)."""
    a = np.arange(num_actions)[None, :, None]
    k = np.arange(len_list)[None, None, :]
    user = context[:, :6] @ np.linspace(0.5, 1.5, 6)
    return 0.002 + 0.004 * ((7 * a + 3 * k) % 11) / 11 + 0.001 * user[:, None, None]


def main() -> None:
    import obp
    from obp.dataset import OpenBanditDataset
    from obp.ope import (DirectMethod, DoublyRobust, DoublyRobustWithShrinkage, InverseProbabilityWeighting,
                         SelfNormalizedDoublyRobust, SelfNormalizedInverseProbabilityWeighting,
                         SwitchDoublyRobust)
    from obp.policy import BernoulliTS

    estimators = {"ipw": InverseProbabilityWeighting(), "snipw": SelfNormalizedInverseProbabilityWeighting(),
                  "dm": DirectMethod(), "dr": DoublyRobust(), "sndr": SelfNormalizedDoublyRobust(),
                  "switch-dr": SwitchDoublyRobust(), f"switch-dr tau={TAU:g}": SwitchDoublyRobust(tau=TAU),
                  "dr-os": DoublyRobustWithShrinkage(),
                  f"dr-os lambda={LAMBDA:g}": DoublyRobustWithShrinkage(lambda_=LAMBDA)}
    logs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for behavior in ("random", "bts"):
            target = Path(tmp) / behavior / "all"
            target.mkdir(parents=True)
            for name in ("all.csv", "item_context.csv"):
                with gzip.open(SAMPLE / behavior / "all" / f"{name}.gz", "rb") as src, open(target / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            dataset = OpenBanditDataset(behavior_policy=behavior, campaign="all", data_path=Path(tmp))
            feedback = dataset.obtain_batch_bandit_feedback()
            shape = (feedback["context"], feedback["n_actions"], dataset.len_list)
            dist, q = action_dist(*shape), q_hat(*shape)
            inputs = dict(reward=feedback["reward"], action=feedback["action"], position=feedback["position"],
                          pscore=feedback["pscore"], action_dist=dist, estimated_rewards_by_reg_model=q)
            logs[behavior] = {"n_rows": int(feedback["n_rounds"]),
                              "estimates": {name: float(est.estimate_policy_value(**inputs))
                                            for name, est in estimators.items()}}
    bts = BernoulliTS(n_actions=80, len_list=3, is_zozotown_prior=True, campaign="all", random_state=BTS_SEED)
    bts_dist = bts.compute_batch_action_dist(n_rounds=1, n_sim=BTS_SIMULATIONS)[0]
    OUT.write_text(json.dumps({
        "obp_version": obp.__version__, "python": sys.version.split()[0], "numpy": np.__version__,
        "command": "/work/scratch/obpvenv/bin/python tests/offline/make_obp_reference.py",
        "inputs": "action_dist and q_hat from make_obp_reference.py; data: the vendored OBD 'all' samples",
        "tau": TAU, "lambda": LAMBDA, "logs": logs,
        "bts_action_dist": {"n_sim": BTS_SIMULATIONS, "random_state": BTS_SEED,
                            "probabilities": bts_dist.round(7).tolist()},
    }, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
