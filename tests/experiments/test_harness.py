"""experiments/_harness.py: chunked seed training equals one-scan training, parsing, formatting."""

import ast
from pathlib import Path

import jax
import numpy as np
from matplotlib.figure import Figure

import ecomrl_jax
from ecomrl_jax.learners import tabular
from experiments import _harness as harness

EXPERIMENTS = Path(harness.__file__).parent


def test_train_seeds_matches_one_vmapped_train_and_reports_progress(capsys):
    """Chunks of updates (51 = 25 x 2 + 1: both chunk functions), with progress between them,
    give bit-identical curves to `jit(vmap(make_train))` on training keys 0..seeds-1."""
    env, params = ecomrl_jax.make("ToyRec-v0")
    config = tabular.QLearningConfig(num_envs=4, num_steps=5, total_timesteps=4 * 5 * 51)
    trained = harness.train_seeds(tabular, config, env, params, 2, label="Q")
    _, curves = jax.jit(jax.vmap(tabular.make_train(config, env, params)))(
        jax.random.split(jax.random.key(0), 2))
    assert set(trained.curves) == set(curves)
    for name, values in curves.items():
        np.testing.assert_array_equal(trained.curves[name], np.asarray(values))
    assert len(trained.policies) == 2 and trained.compile_s > 0 and trained.run_s > 0
    out, err = capsys.readouterr()
    assert "Q: 1,020 env steps x 2 seeds, compile" in out
    assert "51/51 updates 100.0%" in err.splitlines()[-1]


def test_parser_takes_quick_quiet_seeds_and_out():
    parser = harness.make_parser("Title line.\n\nmore", "fast")
    assert parser.description == "Title line."
    args = parser.parse_args([])
    assert (args.quick, args.quiet, harness.num_seeds(args), args.out) == (False, False, 5,
                                                                           Path("results"))
    assert harness.num_seeds(parser.parse_args(["--quick"])) == 3
    assert harness.num_seeds(parser.parse_args(["--quick", "--seeds", "4", "--quiet"])) == 4
    assert not hasattr(harness.make_parser("T", "fast", seeds=False).parse_args([]), "seeds")


def test_cells_rows_and_lines():
    assert harness.cell((1.23456, 1.0, 1.5)) == "1.235 [1.000, 1.500]"
    assert harness.cell((12.3, 10.0, 14.6), ".0f") == "12 [10, 15]"
    assert harness.ci_cell([1.0, 1.0, 1.0], ".2f") == "1.00 [1.00, 1.00]"
    summary = {"PPO": {"return": (2.0, 1.5, 2.5)}, "rule": {"return": (1.0, 0.9, 1.1)}}
    assert harness.format_rows(summary, {"return": "value"}) == [
        "| policy | value |", "|---|---|", "| PPO | 2 [1.5, 2.5] |", "| rule | 1 [0.9, 1.1] |"]
    line = harness.goal_line(summary, "PPO", "rule", "return")
    assert "+100.0%" in line and "do not overlap" in line and line.endswith("met.")
    assert "Goal" not in harness.goal_line(summary, "PPO", "rule", "return", goal=False)
    trained = {"PPO": harness.Trained([], {}, 3.2, 40.7)}
    assert harness.timing_line(trained, 1000, 3).endswith("PPO compile 3 s, run 41 s.")


def test_table_and_figure_are_written(tmp_path, capsys):
    harness.write_table(["# title", "", "| a |"], tmp_path / "sub" / "x.md")
    assert (tmp_path / "sub" / "x.md").read_text() == "# title\n\n| a |\n"
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    harness.save_figure(fig, tmp_path / "sub" / "x.png")
    assert (tmp_path / "sub" / "x.png").stat().st_size > 0
    assert f"wrote {tmp_path / 'sub' / 'x.md'} and {tmp_path / 'sub' / 'x.png'}" in capsys.readouterr().out


def test_no_experiment_imports_another():
    """Shared pieces live in the harness (or the package), never in another experiment."""
    for path in EXPERIMENTS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "experiments":
                assert [a.name for a in node.names] == ["_harness"], path.name
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n and n.startswith("experiments.") and n != "experiments._harness"
                               for n in names), path.name
