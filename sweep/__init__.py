"""sweep: grid search over truncated-BPTT subsequence lengths for LSTMs, 30 repeats per point.

From Python, :class:`Study` does what the ``sweep`` command does (see the README's "From Python").

The names below are imported when first asked for: a worker process, which imports
``sweep.train`` and ``sweep.data`` alone, then starts without the API's own imports (pandas,
Optuna, the exports), about 0.7 s sooner.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_HOMES = {
    "RunOutcome": "sweep.api",
    "Study": "sweep.api",
    "StudySummary": "sweep.api",
    "describe_data": "sweep.api",
    "list_studies": "sweep.api",
    "DataError": "sweep.errors",
    "SpecError": "sweep.errors",
    "StorageError": "sweep.errors",
    "SweepError": "sweep.errors",
    "Export": "sweep.export.predicting",
    "load_export": "sweep.export.predicting",
    "Progress": "sweep.run.runner",
    "Spec": "sweep.spec",
    "apply_overrides": "sweep.spec",
    "load_spec": "sweep.spec",
    "spec_from_dict": "sweep.spec",
    "Liveness": "sweep.store.connection",
    "Results": "sweep.store.record",
}

__all__ = sorted(_HOMES)

if TYPE_CHECKING:
    from sweep.api import RunOutcome, Study, StudySummary, describe_data, list_studies
    from sweep.errors import DataError, SpecError, StorageError, SweepError
    from sweep.export.predicting import Export, load_export
    from sweep.run.runner import Progress
    from sweep.spec import Spec, apply_overrides, load_spec, spec_from_dict
    from sweep.store.connection import Liveness
    from sweep.store.record import Results


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'sweep' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
