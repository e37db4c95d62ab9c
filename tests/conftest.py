from __future__ import annotations

from pathlib import Path

import pytest

TINY_STUDY = """
name = "tiny"
repeats = 3
seed = 0

[problem]
kind = "echo-first"
length = 8
n_train = 40
n_test = 20
seed = 1

[grid]
lengths = [4, 8]
modes = ["stateless", "stateful"]

[model]
units = 4

[training]
epochs = 1
batch_size = 10

[objective]
metric = "accuracy"
per = "sample"
"""


@pytest.fixture
def tiny_study(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_STUDY)
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"
