import csv
import io
import json

import numpy as np
import pytest
from matplotlib.image import imread

from ecomrl_jax.logging import (PROGRESS_CHUNKS, MetricsWriter, ProgressBar, chunk_sizes,
                                plot_learning_curve)

SEEDS = 2


def chunk(first_update: int, n: int) -> dict:
    """Metrics of `n` updates vmapped over seeds, as `run_updates` returns them."""
    updates = np.arange(first_update, first_update + n)
    returns = np.stack([updates * 1.0, updates * 1.0 + 2.0]).astype(np.float32)
    returns[1, 0] = np.nan  # a seed that finished no episode in this update
    return {"episode_return": returns,
            "env_steps": np.tile((updates + 1) * 100, (SEEDS, 1)).astype(np.int32),
            "loss": np.full((SEEDS, n), 0.1, np.float32)}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_continues_across_writes_and_reopened_writer(tmp_path):
    writer = MetricsWriter(tmp_path)
    writer.write(chunk(0, 3), first_update=0)
    writer.write(chunk(3, 2), first_update=3)
    writer.close()
    writer = MetricsWriter(tmp_path)  # a resumed run
    writer.write(chunk(5, 2))
    writer.close()

    text = (tmp_path / "metrics.csv").read_text()
    assert text.count("update") == 1
    rows = read_csv(tmp_path / "metrics.csv")
    assert list(rows[0]) == ["update", "seed", "env_steps", "episode_return", "loss"]
    expected = [(u, s) for u in range(7) for s in range(SEEDS)]
    assert [(int(r["update"]), int(r["seed"])) for r in rows] == expected
    assert [int(r["env_steps"]) for r in rows[::SEEDS]] == [100 * (u + 1) for u in range(7)]
    assert rows[0]["loss"] == "0.1"  # shortest float32 form


def test_resume_from_older_checkpoint_replaces_later_rows(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write(chunk(0, 4), first_update=0)
    writer.close()
    writer = MetricsWriter(tmp_path, tensorboard=False)  # crashed after update 3, checkpoint at 2
    writer.write(chunk(2, 3), first_update=2)
    updates = [int(r["update"]) for r in read_csv(tmp_path / "metrics.csv")]
    assert updates == [u for u in range(5) for _ in range(SEEDS)]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["update"] for line in lines] == updates


def test_jsonl_parses_with_nan_as_null(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write(chunk(0, 3))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3 * SEEDS
    assert records[1] == {"update": 0, "seed": 1, "env_steps": 100, "episode_return": None, "loss": 0.1}
    assert records[2]["episode_return"] == 1.0


def test_single_run_metrics_have_no_seed_column(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write({k: v[0] for k, v in chunk(0, 3).items()})
    assert list(read_csv(tmp_path / "metrics.csv")[0]) == ["update", "env_steps", "episode_return", "loss"]


def test_bad_metrics_are_refused(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    with pytest.raises(ValueError, match="share one shape"):
        writer.write({"a": np.zeros((2, 3)), "b": np.zeros(3)})
    writer.write(chunk(0, 1))
    with pytest.raises(ValueError, match="columns changed"):
        writer.write({"episode_return": np.zeros((SEEDS, 1))})


def test_tensorboard_event_file(tmp_path):
    writer = MetricsWriter(tmp_path)
    writer.write(chunk(0, 3))
    writer.close()
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0


def test_plot_learning_curve_from_csv_and_rows(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write(chunk(0, 5))
    png = tmp_path / "curve.png"
    plot_learning_curve(tmp_path / "metrics.csv", png, title="test", baselines={"random": 1.5, "oracle": 4.0})
    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0

    rows = [{"update": u, "episode_return": float(u)} for u in range(4)]  # one seed, no env_steps
    plot_learning_curve(rows, tmp_path / "single.png")
    assert (tmp_path / "single.png").stat().st_size > 0
    with pytest.raises(ValueError, match="no 'revenue' to plot"):
        plot_learning_curve(rows, tmp_path / "x.png", metric="revenue")


def test_progress_bar_line(monkeypatch):
    clock = iter([10.0, 12.0, 13.0])  # construction, then two updates
    monkeypatch.setattr("ecomrl_jax.logging.time.perf_counter", lambda: next(clock))
    stream = io.StringIO()
    bar = ProgressBar(10, steps_per_unit=100, num_runs=4, initial=2, label="PPO", stream=stream)
    bar.update(5, chunk(0, 2))
    bar.update(10, {"episode_return": np.full((SEEDS, 1), np.nan)})
    first, second = stream.getvalue().splitlines()
    assert first.startswith("PPO [") and "5/10 updates" in first and "50.0%" in first
    assert "600 env steps/s" in first  # 3 updates x 100 steps per seed in 2 s, 4 seeds
    assert "ETA 0m03s" in first and "episode_return 2 " in first + " "  # seeds' latest returns 1, 3
    assert "100.0%" in second and "2,000 env steps/s" in second and "episode_return n/a" in second


def test_progress_bar_writes_tenths_to_a_file_and_nothing_when_quiet():
    stream = io.StringIO()
    bar = ProgressBar(50, stream=stream)
    for done in range(1, 51):
        bar.update(done)
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [f"{5 * k}/50" for k in range(1, 11)]
    quiet = io.StringIO()
    line = ProgressBar(4, stream=quiet, quiet=True).update(4)
    assert quiet.getvalue() == "" and "4/4 updates" in line


def test_chunk_sizes_give_one_size_where_a_divisor_allows_else_a_shorter_last():
    assert list(chunk_sizes(12, count=4)) == [3, 3, 3, 3]
    assert list(chunk_sizes(256, count=20)) == [16] * 16  # 13 does not divide 256, 16 does
    assert list(chunk_sizes(11, count=4)) == [3, 3, 3, 2]  # 11 is prime: a shorter last chunk
    assert list(chunk_sizes(3, count=50)) == [1, 1, 1]
    assert list(chunk_sizes(11, done=6, count=4)) == [3, 2]  # resumed at a chunk boundary
    assert list(chunk_sizes(10, done=10)) == []
    for total in (1, 7, 49, 50, 51, 488, 10_001):
        sizes = list(chunk_sizes(total))
        assert sum(sizes) == total and len(set(sizes[:-1])) <= 1 and sizes[-1] <= sizes[0]
        assert sizes[0] <= 2 * -(-total // PROGRESS_CHUNKS) and len(sizes) <= PROGRESS_CHUNKS


def test_progress_bar_redraws_one_line_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = ProgressBar(3, stream=stream)
    for done in (1, 2, 3):
        bar.update(done)
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "1/3 updates" in text and "3/3 updates" in text
