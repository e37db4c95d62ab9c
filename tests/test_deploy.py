"""deploy/: the Kubernetes kustomization rendered and every object validated strictly against
Kubernetes' own schemas (offline), and the Slurm scripts checked by bash and run here with the
variables Slurm sets."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
SLURM = ROOT / "deploy" / "slurm"


def rendered(tmp_path: Path, *, pgbouncer: bool = False) -> tuple[Path, list[dict]]:
    """The kustomization as `kubectl apply -k` would send it (a throwaway password file beside it)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (it renders the kustomization)")
    folder = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, folder)
    (folder / "db_password.txt").write_text("not-a-real-password")
    if pgbouncer:
        kustomization = folder / "kustomization.yaml"
        text = kustomization.read_text().replace("# components:\n#   - components/pgbouncer", "components:\n  - components/pgbouncer")
        assert "components:\n  - components/pgbouncer" in text
        kustomization.write_text(text)
    output = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert output.returncode == 0, output.stderr
    path = tmp_path / "rendered.yaml"
    path.write_text(output.stdout)
    return path, [document for document in yaml.safe_load_all(output.stdout) if document]


def validate_strictly(path: Path) -> subprocess.CompletedProcess:
    validator = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run([str(validator), "--strict", "--quiet", str(path)], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("pgbouncer", [False, True], ids=["direct", "pgbouncer"])
def test_the_kustomization_validates_strictly(tmp_path: Path, pgbouncer: bool) -> None:
    path, objects = rendered(tmp_path, pgbouncer=pgbouncer)
    checked = validate_strictly(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    kinds = sorted(f"{o['kind']}/{o['metadata']['name'].rsplit('-', 1)[0] if o['kind'] == 'Secret' else o['metadata']['name']}" for o in objects)
    expected = ["Deployment/dashboard", "Job/sweep-create", "Job/sweep-worker", "Namespace/sweep", "Secret/sweep-db",
                "Service/dashboard", "Service/db", "StatefulSet/db"]
    if pgbouncer:
        expected += ["Deployment/pgbouncer", "Service/pgbouncer"]
    assert kinds == sorted(expected)


@pytest.mark.slow
def test_strict_validation_refuses_a_field_kubernetes_does_not_know(tmp_path: Path) -> None:
    path, _ = rendered(tmp_path)
    path.write_text(path.read_text().replace("  backoffLimit: 20\n", "  backoffLimit: 20\n  retryForever: true\n"))
    assert validate_strictly(path).returncode != 0


def by_kind(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def pods(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Job", "Deployment", "StatefulSet")}


@pytest.mark.slow
def test_every_pod_runs_as_non_root_with_limits_pinned_images_and_the_secret(tmp_path: Path) -> None:
    _, objects = rendered(tmp_path, pgbouncer=True)
    compose_image = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["x-sweep"]["image"]
    secret = next(o["metadata"]["name"] for o in objects if o["kind"] == "Secret")
    for name, pod in pods(objects).items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), (name, image)
            assert container["resources"]["requests"] and container["resources"]["limits"], (name, container["name"])
            if image.startswith("sweep:"):
                assert image == compose_image, (name, image)  # the image the Dockerfile builds
        referenced = [v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v] + [
            e["valueFrom"]["secretKeyRef"]["name"] for c in pod["containers"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})
        ]
        assert referenced == [secret], name

    worker = by_kind(objects, "Job", "sweep-worker")["spec"]
    assert worker["parallelism"] >= 2 and worker["backoffLimit"] > 0
    env = {e["name"]: e for e in worker["template"]["spec"]["containers"][0]["env"]}
    assert env["SWEEP_STORAGE"]["value"] == "postgresql+psycopg://sweep@pgbouncer:6432/sweep"
    assert env["SWEEP_WORKERS"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    database = by_kind(objects, "StatefulSet", "db")["spec"]
    assert database["volumeClaimTemplates"] and database["serviceName"] == "db"
    assert by_kind(objects, "Service", "db")["spec"]["clusterIP"] == "None"
    assert by_kind(objects, "Service", "dashboard")["spec"]["type"] == "ClusterIP"


def test_the_slurm_scripts_are_valid_bash() -> None:
    for script in ("submit.sh", "worker.sbatch"):
        checked = subprocess.run(["bash", "-n", str(SLURM / script)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


def test_submit_creates_the_study_first_and_starts_the_array_after_it(tmp_path: Path) -> None:
    """With an `sbatch` that records what it is given: the array depends on the create job."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> {calls}\nwc -l < {calls} | tr -d " "\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "SWEEP_STORAGE": "sqlite:///x.db"}
    submitted = subprocess.run(["bash", str(SLURM / "submit.sh"), "studies/echo_first.toml", "echo-first", "8"],
                               capture_output=True, text=True, env=env, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    create, workers = calls.read_text().splitlines()
    assert "--wrap=sweep create 'studies/echo_first.toml' --name 'echo-first'" in create
    assert "--dependency=afterok:1" in workers and "--array=0-7" in workers and "SWEEP_STUDY=echo-first" in workers
    assert workers.endswith("worker.sbatch")
    assert "create job 1, worker array 2 (8 tasks)" in submitted.stdout


@pytest.mark.slow
def test_a_worker_task_runs_here_with_the_variables_slurm_sets(tmp_path: Path, tiny_study: Path, sqlite_url: str) -> None:
    created = subprocess.run([sys.executable, "-m", "sweep", "create", str(tiny_study), "--storage", sqlite_url],
                             capture_output=True, text=True, timeout=300)
    assert created.returncode == 0, created.stderr
    env = {
        **os.environ, "SWEEP_STUDY": "tiny", "SWEEP_STORAGE": sqlite_url, "SLURM_CPUS_PER_TASK": "1",
        "SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_JOB_ID": "4242", "SLURM_JOB_ID": "4245", "TMPDIR": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    task = subprocess.run(["bash", str(SLURM / "worker.sbatch")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert task.returncode == 0, task.stderr
    assert "task 3 of job 4242" in task.stdout and "1 training processes" in task.stdout
    assert "1 worker, storage" in task.stdout  # SWEEP_WORKERS from the allocation, not the machine's CPU count
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
