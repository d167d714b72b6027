"""experiments/pretrain_finetune.py end to end on a tiny budget (slow: it pre-trains and trains)."""

import numpy as np
import pytest

from experiments import pretrain_finetune
from tests.helpers import run_quickly


@pytest.mark.slow
def test_writes_table_and_figure_for_scratch_and_pretrained(tmp_path):
    out = run_quickly("experiments.pretrain_finetune", ["--quick", "--seeds", "2", "--total-steps",
        "2048", "--episodes", "20", "--out", str(tmp_path)])
    assert set(out["evaluated"]) == {"pre-trained, no fine-tuning", "from scratch",
                                     "pre-trained + fine-tuned"}
    assert set(out["references"]) == {"myopic oracle", "logging policy"}
    table = (tmp_path / "pretrain_finetune.md").read_text()
    assert "from scratch" in table and "pre-trained + fine-tuned" in table
    assert (tmp_path / "pretrain_finetune.png").stat().st_size > 0
    assert all(len(v) == 2 and np.all(np.isfinite(v)) for v in out["evaluated"].values())
    # behaviour cloning of the (epsilon-)oracle alone already beats a random-level policy
    assert out["evaluated"]["pre-trained, no fine-tuning"][0] > 0.5 * out["references"]["logging policy"]


def test_rejects_a_budget_below_one_update(tmp_path):
    with pytest.raises(SystemExit):
        pretrain_finetune.main(["--total-steps", "10", "--out", str(tmp_path)])
