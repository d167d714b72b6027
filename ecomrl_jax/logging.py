"""Training metrics to CSV, JSON Lines and TensorBoard; learning-curve plots; progress of chunked runs.

Metrics come from `run_updates` as a dict of arrays indexed by update: shape `(num_updates,)` for
one run, `(num_seeds, num_updates)` for a run vmapped over seeds. Files hold one row per seed and
update (a `seed` column, the index in the vmapped batch, appears only for the 2-D case), so no
information is averaged away; plots and TensorBoard show the mean over seeds.
"""

import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

CSV_NAME = "metrics.csv"
JSONL_NAME = "metrics.jsonl"


def metric_rows(metrics: dict, first_update: int) -> list[dict]:
    """One dict per (update, seed): `update`, `seed` (2-D metrics only), `env_steps`, then the metrics."""
    arrays = {name: np.asarray(value) for name, value in metrics.items()}
    arrays = {name: a.astype(np.int64) if a.dtype == bool else a for name, a in arrays.items()}
    shapes = {array.shape for array in arrays.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) not in (1, 2):
        raise ValueError("metrics must all share one shape, (num_updates,) or (num_seeds, num_updates); "
                         f"got {({name: array.shape for name, array in arrays.items()})}")
    names = ["env_steps"] * ("env_steps" in arrays) + [name for name in arrays if name != "env_steps"]
    seeded = len(next(iter(shapes))) == 2
    if not seeded:
        arrays = {name: array[None] for name, array in arrays.items()}
    num_seeds, num_updates = next(iter(arrays.values())).shape
    rows = []
    for i in range(num_updates):
        for seed in range(num_seeds):
            row = {"update": first_update + i} | ({"seed": seed} if seeded else {})
            rows.append(row | {name: _python(arrays[name][seed, i]) for name in names})
    return rows


def _python(x: np.generic):
    """A Python number; floats keep their shortest decimal form (0.1, not 0.10000000149011612)."""
    return float(str(x)) if isinstance(x, np.floating) else x.item()


def _seed_mean(values) -> np.ndarray:
    """Mean over the seed axis of a 2-D metric, ignoring NaN (a seed that finished no episode)."""
    values = np.asarray(values, np.float64)
    if values.ndim == 1:
        return values
    finite = np.isfinite(values)
    count = finite.sum(0)
    return np.where(count > 0, np.where(finite, values, 0.0).sum(0) / np.maximum(count, 1), np.nan)


def _json_value(value):
    """JSON has no NaN/inf: write them as null so every JSON reader accepts the file."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsWriter:
    """Appends metric rows to `metrics.csv` and `metrics.jsonl` in `out_dir`, and to TensorBoard.

    Reopening the same directory continues the files. Writing from an update already in the files
    (a run resumed from a checkpoint older than its last metrics) first drops those later rows, so
    the files stay one continuous, duplicate-free record. TensorBoard gets the mean over seeds,
    stepped by `env_steps` when present, else by update.
    """

    def __init__(self, out_dir, tensorboard: bool = True):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out_dir / CSV_NAME
        self.jsonl_path = self.out_dir / JSONL_NAME
        self.tensorboard = tensorboard
        self._tb = None
        self.columns, rows = _read_csv(self.csv_path)
        self.next_update = rows[-1]["update"] + 1 if rows else 0

    def write(self, metrics: dict, first_update: int | None = None) -> None:
        """Append one chunk; `first_update` (default: continue the files) numbers its first update."""
        first = self.next_update if first_update is None else first_update
        rows = metric_rows(metrics, first)
        if not rows:
            return
        if self.columns is None:
            self.columns = list(rows[0])
            with self.csv_path.open("w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        elif set(rows[0]) != set(self.columns):
            raise ValueError(f"metric columns changed: {self.csv_path} has {self.columns}, "
                             f"got {list(rows[0])}")
        if first < self.next_update:
            self._drop_from(first)
        with self.csv_path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerows(rows)
        with self.jsonl_path.open("a") as f:
            f.writelines(json.dumps({k: _json_value(v) for k, v in row.items()}) + "\n" for row in rows)
        self.next_update = rows[-1]["update"] + 1
        if self.tensorboard:
            self._write_tensorboard(metrics, first)

    def _drop_from(self, update: int) -> None:
        """Remove rows numbered `update` or later from both files."""
        _, rows = _read_csv(self.csv_path)
        with self.csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(row for row in rows if row["update"] < update)
        if self.jsonl_path.exists():
            lines = self.jsonl_path.read_text().splitlines(keepends=True)
            self.jsonl_path.write_text("".join(line for line in lines if json.loads(line)["update"] < update))

    def _write_tensorboard(self, metrics: dict, first: int) -> None:
        means = {name: _seed_mean(value) for name, value in metrics.items()}
        steps = means["env_steps"].astype(np.int64) if "env_steps" in means else first + np.arange(
            len(next(iter(means.values()))))
        if self._tb is None:
            from tensorboardX import SummaryWriter

            # purge_step hides events a crashed run logged past the point it resumes from
            self._tb = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=int(steps[0]))
        for name, values in means.items():
            if name != "env_steps":
                for step, value in zip(steps, values):
                    if math.isfinite(value):
                        self._tb.add_scalar(name, float(value), int(step))
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _read_csv(path: Path) -> tuple[list[str] | None, list[dict]]:
    """Header and rows of a metrics CSV (numbers parsed); `(None, [])` if it does not exist yet."""
    if not path.exists() or path.stat().st_size == 0:
        return None, []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [{k: _number(v) for k, v in row.items()} for row in reader]
        return list(reader.fieldnames), rows


def _number(text: str):
    return int(text) if text.lstrip("-").isdigit() else float(text)


def plot_learning_curve(source, png_path, metric: str = "episode_return", x: str = "env_steps",
                        title: str | None = None, baselines: dict[str, float] | None = None) -> None:
    """Plot `metric` against `x` (falls back to `update`) from a metrics CSV path or a list of rows.

    With a `seed` column the line is the mean over seeds and the band spans min to max;
    `baselines` (name -> value) are drawn as dashed horizontal lines.
    """
    rows = _read_csv(Path(source))[1] if isinstance(source, (str, Path)) else list(source)
    if not rows or metric not in rows[0]:
        raise ValueError(f"no {metric!r} to plot; columns are {list(rows[0]) if rows else []}")
    x = x if x in rows[0] else "update"
    by_update = {}
    for row in rows:
        by_update.setdefault(row["update"], []).append(row)
    updates = sorted(by_update)
    xs = np.array([np.mean([float(r[x]) for r in by_update[u]]) for u in updates])
    ys = [np.array([float(r[metric]) for r in by_update[u]]) for u in updates]
    num_seeds = max(len(y) for y in ys)

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    finite = [y[np.isfinite(y)] for y in ys]  # NaN: no episode finished; all-NaN updates are gaps
    mean, low, high = ([f(y) if y.size else np.nan for y in finite] for f in (np.mean, np.min, np.max))
    label = f"mean over {num_seeds} seeds" if num_seeds > 1 else metric
    ax.plot(xs, mean, color="C0", label=label)
    if num_seeds > 1:
        ax.fill_between(xs, low, high, color="C0", alpha=0.25, label="min-max over seeds")
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, color=f"C{i + 1}", ls="--", label=name)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(metric.replace("_", " "))
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)


PROGRESS_CHUNKS = 50  # progress reports per run: a few seconds each for a run of minutes


def chunk_sizes(num_updates: int, done: int = 0, count: int = PROGRESS_CHUNKS):
    """Yield the sizes of the chunks that run updates `done..num_updates` with progress between
    them: `s = ceil(num_updates / count)` each, or the first divisor of `num_updates` in
    [s, 2s] so that every chunk has one size and a chunked run compiles one chunk function;
    without such a divisor the last chunk is shorter (two functions). A run resumed at a chunk boundary gets the same sizes."""
    size = max(1, -(-num_updates // count))
    size = next((d for d in range(size, 2 * size + 1) if num_updates % d == 0), size)
    while done < num_updates:
        yield min(size, num_updates - done)
        done += size


class ProgressBar:
    """A one-line text progress report on stderr, updated from the host between chunks of a run.

    Shows `unit` done of total, percent, env steps/s over the last chunk (`steps_per_unit` env
    steps per unit and run, summed over `num_runs` runs, e.g. vmapped seeds), time left and the
    latest value of `metric` (mean over runs). On a terminal the line is redrawn in place; to a
    file or pipe a line is written at each tenth of the run. `quiet` writes nothing.
    """

    def __init__(self, total: int, steps_per_unit: int = 1, num_runs: int = 1, initial: int = 0,
                 label: str = "", unit: str = "updates", metric: str = "episode_return",
                 stream=None, quiet: bool = False, width: int = 20):
        self.total, self.steps_per_unit, self.num_runs = total, steps_per_unit, num_runs
        self.label, self.unit, self.metric = label, unit, metric
        self.stream = stream or sys.stderr
        self.quiet, self.width = quiet, width
        self._last = (initial, time.perf_counter())
        self._next_tenth = initial * 10 // max(total, 1) + 1

    def update(self, done: int, metrics: dict | None = None) -> str:
        """Report `done` units and the chunk's metrics; returns the line (written unless quiet)."""
        now = time.perf_counter()
        rate = (done - self._last[0]) / max(now - self._last[1], 1e-9)  # units per second
        self._last = (done, now)
        frac = min(done / self.total, 1.0) if self.total else 1.0
        filled = round(frac * self.width)
        line = (f"{self.label + ' ' if self.label else ''}[{'#' * filled}{'.' * (self.width - filled)}] "
                f"{done:,}/{self.total:,} {self.unit} {frac:6.1%}  "
                f"{rate * self.steps_per_unit * self.num_runs:,.0f} env steps/s")
        if rate > 0 and done < self.total:
            line += f"  ETA {_duration((self.total - done) / rate)}"
        if metrics is not None and self.metric in metrics:
            latest = _seed_mean(metrics[self.metric])[-1]
            line += f"  {self.metric} {latest:.4g}" if math.isfinite(latest) else f"  {self.metric} n/a"
        if not self.quiet:
            self._write(line, done >= self.total, frac)
        return line

    def _write(self, line: str, finished: bool, frac: float) -> None:
        if self.stream.isatty():
            self.stream.write("\r" + line + "\033[K" + ("\n" if finished else ""))
        elif finished or frac * 10 >= self._next_tenth:
            self.stream.write(line + "\n")
            self._next_tenth = int(frac * 10) + 1
        self.stream.flush()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
