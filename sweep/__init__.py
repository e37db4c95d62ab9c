"""sweep: grid search over truncated-BPTT subsequence lengths for LSTMs, 30 repeats per point.

From Python, :class:`Study` does what the ``sweep`` command does (see the README's "From Python").
"""

from sweep.api import RunOutcome, Study, StudySummary, describe_data, list_studies
from sweep.errors import DataError, SpecError, StorageError, SweepError
from sweep.export.predicting import Export, load_export
from sweep.run.runner import Progress
from sweep.spec import Spec, apply_overrides, load_spec, spec_from_dict
from sweep.store.connection import Liveness
from sweep.store.record import Results

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "Export",
    "Liveness",
    "Progress",
    "Results",
    "RunOutcome",
    "Spec",
    "SpecError",
    "StorageError",
    "Study",
    "StudySummary",
    "SweepError",
    "apply_overrides",
    "describe_data",
    "list_studies",
    "load_export",
    "load_spec",
    "spec_from_dict",
]
