"""The worker processes themselves: what they load before their first job."""

from __future__ import annotations

import sys

from sweep.data.problems import load_problem
from sweep.spec import EchoFirstProblem
from sweep.train.pool import RepeatPool


def loaded_modules() -> set[str]:
    """The top-level modules this process has imported (run in a worker)."""
    return {name.split(".")[0] for name, module in sys.modules.items() if module is not None}


def test_workers_leave_out_what_tensorflow_would_import_for_nothing() -> None:
    dataset = load_problem(EchoFirstProblem(kind="echo-first", length=4, n_train=4, n_test=2, seed=0))
    with RepeatPool(dataset, n_workers=1) as pool:
        loaded = pool._executor.submit(loaded_modules).result(timeout=120)
    assert {"tensorflow", "keras"} <= loaded  # the worker is started, TensorFlow and Keras with it
    assert not loaded & {"jax", "pandas", "pyarrow", "IPython"}
