"""Print the container image's pinned dependencies: pyproject.toml's, resolved by pip, with
TensorFlow's CPU build in place of the full one (the image has no GPU libraries).

    python .ci/lock_docker_requirements.py > docker-requirements.txt

Run it on Linux x86_64 with the image's Python (3.11), so that pip resolves for that platform.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = """\
# The container image's dependencies, pinned: pyproject.toml's, with TensorFlow's CPU build.
# Regenerate on Linux x86_64 with Python 3.11 after changing pyproject.toml's dependencies:
#   python .ci/lock_docker_requirements.py > docker-requirements.txt"""


def wanted() -> list[str]:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d.replace("tensorflow", "tensorflow-cpu", 1) if d.startswith("tensorflow") else d for d in dependencies]


def resolved(requirements: list[str]) -> list[str]:
    with tempfile.TemporaryDirectory() as work:
        report = Path(work) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
             "--report", str(report), *requirements],
            check=True,
        )
        installs = json.loads(report.read_text())["install"]
    pins = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"] for item in installs}
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


if __name__ == "__main__":
    print(HEADER)
    print("\n".join(resolved(wanted())))
