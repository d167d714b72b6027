"""The README's Python quick start runs as written (it trains, so it is a slow test)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.slow
def test_quick_start_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python block"
    namespace = {}
    exec(compile(blocks[0], "README quick start", "exec"), namespace)
    assert namespace["metrics"]["episode_return"].shape[0] == 3
    assert namespace["metrics"]["episode_return"][:, -1].min() > 9.4  # above the myopic oracle
    assert len(capsys.readouterr().out.splitlines()) == 2
