"""The data contract of an export: ``sweep.json``, what a user needs besides ``model.keras`` to
turn raw data into the network's inputs and its outputs back into labels or units, without sweep.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sweep.errors import SweepError

__all__ = ["CONTRACT_FILE", "FORMAT", "MODEL_FILE", "Contract", "ExportError", "read_contract"]

FORMAT = 1  # the version of sweep.json's layout; a reader refuses a newer one
CONTRACT_FILE = "sweep.json"
MODEL_FILE = "model.keras"
README_FILE = "README.md"


class ExportError(SweepError):
    """An export that cannot be made or read: the message says why and what to do."""


@dataclass(frozen=True)
class Contract:
    """Everything about an exported network besides its weights.

    `window` says how a sequence becomes the model's input: with mode "stateful" the whole
    sequence is one input (the state carries across the windows the network was trained on);
    with "stateless" the sequence is cut into windows of `window["width"]` steps every
    `window["stride"]` steps, each an input of its own starting from a zero state.
    """

    study: str
    point: str
    settings: dict[str, Any]
    task: str  # "classification" or "regression"
    target: str  # "per sequence" or "per step"
    features: list[str]
    window: dict[str, Any]  # mode, length (k1), backward (k2 or None), width, stride
    problem: dict[str, Any]  # the study's problem settings: kind, columns, horizon, ...
    repeat: int | None  # the exported repeat (None: a refit)
    seed: int
    why: str  # one line: why this repeat (or refit)
    scores: dict[str, dict[str, float]]  # "test" (and "validation"): the scores it should reproduce
    classes: list[Any] = field(default_factory=list)  # classification: the label of output 0, 1, ...
    standardization: dict[str, list[float]] = field(default_factory=dict)  # input_mean/std, target_mean/std
    sequence_length: int | None = None  # the longest sequence the study trained on
    refit: dict[str, Any] | None = None  # a refit: its seed and the data it was trained on
    format: int = FORMAT

    def write(self, folder: Path) -> None:
        (folder / CONTRACT_FILE).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        (folder / README_FILE).write_text(self.readme())

    def readme(self) -> str:
        window = self.window
        if window["mode"] == "stateful":
            cut = "the whole sequence is one input: the state carries from step to step, as in training"
        else:
            cut = (
                f"each sequence is cut into windows of {window['width']} steps every {window['stride']} steps, "
                "from its end backwards (front-padded); each window is an input of its own, from a zero state"
            )
        output = (
            f"the class probabilities of {self.classes}" if self.task == "classification" and len(self.classes) > 2
            else f"the probability of class {self.classes[1]!r}" if self.task == "classification"
            else "the standardized target; multiply by target_std and add target_mean"
        )
        return _README.format(
            study=self.study, point=self.point, why=self.why, features=", ".join(self.features) or "(none named)",
            n_features=len(self.features), cut=cut, output=output,
            target="the last step of the (last) input" if self.target == "per sequence" else "every step",
        )


def read_contract(folder: Path) -> Contract:
    """The contract of an export folder; ExportError for a folder that is none or a newer format."""
    path = Path(folder) / CONTRACT_FILE
    if not path.is_file() or not (Path(folder) / MODEL_FILE).is_file():
        raise ExportError(f"{folder} is not an export (no {CONTRACT_FILE} and {MODEL_FILE}); make one with: sweep export STUDY -o {folder}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportError(f"{path} is not readable JSON ({error}); export the study again") from None
    version = data.get("format") if isinstance(data, dict) else None
    if not isinstance(version, int) or version > FORMAT:
        raise ExportError(f"{path} has format {version!r}, newer than this sweep reads ({FORMAT}); upgrade sweep")
    try:
        return Contract(**data)
    except TypeError as error:
        raise ExportError(f"{path} is damaged ({error}); export the study again") from None


_README = """# {study}: {point}

Exported by sweep: {why}.

## Load it with Keras alone

```python
import json, keras, numpy as np

model = keras.models.load_model("model.keras")
contract = json.load(open("sweep.json"))
outputs = model.predict({{"x": x, "mask": mask}})
```

## Input

- `x`: float32, (inputs, steps, {n_features}): the features {features}, in that order, each
  standardized as `(value - input_mean) / input_std` (sweep.json, `standardization`) where given;
- `mask`: bool, (inputs, steps): True on real steps. Shorter sequences are padded at the front
  with zeros and False, as in training.

How a sequence becomes inputs: {cut}.

## Output

(inputs, steps, outputs): {output}. The prediction is read at {target}.

`sweep.json` holds the point's settings, the window, the study's problem settings, the classes in
output order, the standardization, and the scores on the study's test (and validation) data that
this network reproduces.
"""
