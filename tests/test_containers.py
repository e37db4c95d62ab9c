"""The container files: docker-compose.yml and the Dockerfile read statically (there is no Docker
engine here), and the exact commands the containers run, with the compose file's environment,
run against the local PostgreSQL."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import socket
import subprocess
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState

from sweep.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
SWEEP_SERVICES = ("init", "worker", "dashboard")
SECRET_MOUNT = "/run/secrets/db_password"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def interpolate(value: str, environment: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message}, as `docker compose` expands them."""

    def expand(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
        given = environment.get(name)
        if operator == ":-":
            return given if given else argument
        if operator == ":?" and not given:
            raise KeyError(f"{name}: {argument}")
        return given or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", expand, value)


def service_environment(service: dict, environment: dict[str, str]) -> dict[str, str]:
    return {key: interpolate(str(value), environment) for key, value in service.get("environment", {}).items()}


def service_command(service: dict, environment: dict[str, str]) -> list[str]:
    """The command line the container runs: the image's entry point, then the service's command."""
    return ["sweep", *(interpolate(str(part), environment) for part in service["command"])]


# docker-compose.yml


def test_compose_has_a_database_a_study_creator_scalable_workers_and_a_dashboard(compose: dict) -> None:
    assert set(compose["services"]) == {"db", *SWEEP_SERVICES}
    worker = compose["services"]["worker"]
    # A fixed container name or host port would stop `--scale worker=N`.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["restart"] == "on-failure"
    assert compose["services"]["init"]["restart"] == "no"


def test_the_database_keeps_its_data_in_a_named_volume_and_has_a_health_check(compose: dict) -> None:
    db = compose["services"]["db"]
    volume, _, target = db["volumes"][0].partition(":")
    assert target == "/var/lib/postgresql/data"
    assert volume in compose["volumes"]
    test = db["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and test[1].startswith("pg_isready")
    # The check must run as written: here against the local server.
    assert subprocess.run(["sh", "-c", test[1]], capture_output=True).returncode == 0


def test_workers_wait_for_a_healthy_database_and_the_created_study(compose: dict) -> None:
    services = compose["services"]
    assert services["worker"]["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "init": {"condition": "service_completed_successfully"},
    }
    for name in ("init", "dashboard"):
        assert services[name]["depends_on"]["db"] == {"condition": "service_healthy"}


def test_the_dashboard_port_is_published(compose: dict) -> None:
    dashboard = compose["services"]["dashboard"]
    published = [interpolate(port, {}) for port in dashboard["ports"]]
    assert published == ["127.0.0.1:8080:8080"]
    command = service_command(dashboard, {})
    assert command[:2] == ["sweep", "dashboard"]
    assert command[command.index("--port") + 1] == "8080" and command[command.index("--host") + 1] == "0.0.0.0"


def test_every_sweep_service_uses_the_same_storage_and_the_password_comes_from_a_secret(compose: dict) -> None:
    services = compose["services"]
    environments = [service_environment(services[name], {}) for name in SWEEP_SERVICES]
    urls = {environment["SWEEP_STORAGE"] for environment in environments}
    assert len(urls) == 1
    url = sqlalchemy.engine.make_url(urls.pop())
    assert url.host == "db" and url.password is None
    assert url.username == services["db"]["environment"]["POSTGRES_USER"]
    assert url.database == services["db"]["environment"]["POSTGRES_DB"]
    assert all(environment["SWEEP_STORAGE_PASSWORD_FILE"] == SECRET_MOUNT for environment in environments)
    assert services["db"]["environment"]["POSTGRES_PASSWORD_FILE"] == SECRET_MOUNT
    assert "POSTGRES_PASSWORD" not in services["db"]["environment"]
    for name in ("db", *SWEEP_SERVICES):
        assert services[name]["secrets"] == ["db_password"]
    secret_file = interpolate(compose["secrets"]["db_password"]["file"], {})
    assert secret_file == "./db_password.txt"
    ignored = subprocess.run(["git", "check-ignore", "-q", secret_file], cwd=ROOT)
    assert ignored.returncode == 0, "the password file must be ignored by git"


def test_the_default_study_file_is_in_the_image_and_named_as_the_workers_expect(compose: dict) -> None:
    init = service_command(compose["services"]["init"], {})
    worker = service_command(compose["services"]["worker"], {})
    assert init[:2] == ["sweep", "create"]
    assert (ROOT / init[2]).is_file() and init[2].startswith("studies/")
    load_spec(ROOT / init[2])
    assert init[init.index("--name") + 1] == worker[2] == "echo-first"


# Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context: the last matching rule wins."""
    excluded = False
    for rule in (ROOT / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negated, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            excluded = not negated
    return excluded


def test_the_image_is_pinned_slim_and_runs_sweep_as_a_user_without_root() -> None:
    instructions = dockerfile_instructions()
    bases = [argument for kind, argument in instructions if kind == "FROM"]
    assert len(bases) == 1
    image, _, tag = bases[0].partition(":")
    assert image == "python" and "slim" in tag and tag != "latest" and re.match(r"\d+\.\d+\.\d+", tag)
    users = [argument for kind, argument in instructions if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [kind for kind, _ in instructions].index("USER") > max(
        i for i, (kind, _) in enumerate(instructions) if kind == "RUN"
    ), "the last RUN must come before the switch to the unprivileged user"
    entrypoints = [json.loads(argument) for kind, argument in instructions if kind == "ENTRYPOINT"]
    assert entrypoints == [["sweep"]]
    assert "sweep" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_the_image_holds_no_secret() -> None:
    for kind, argument in dockerfile_instructions():
        if kind in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"PASSWORD|SECRET|TOKEN|KEY", argument, re.IGNORECASE), argument
    assert not re.search(r"://[^@/\s]+:[^@/\s]+@", (ROOT / "Dockerfile").read_text()), "a URL with a password"


def test_every_copied_file_exists_and_reaches_the_build() -> None:
    copied = []
    for kind, argument in dockerfile_instructions():
        if kind == "COPY":
            *sources, _ = shlex.split(argument)
            copied += [source for source in sources if not source.startswith("--")]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not dockerignored(source), f"COPY {source}: .dockerignore leaves it out"
    assert dockerignored("tests/test_containers.py") and dockerignored("sweep.db") and dockerignored(".git")


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    steps = [(kind, argument) for kind, argument in dockerfile_instructions() if kind in ("COPY", "RUN")]
    install = next(i for i, (kind, argument) in enumerate(steps) if kind == "RUN" and "docker-requirements.txt" in argument)
    source = next(i for i, (kind, argument) in enumerate(steps) if kind == "COPY" and argument.startswith("sweep"))
    assert install < source
    assert any(kind == "RUN" and "--no-deps" in argument for kind, argument in steps[source:])


def test_the_pinned_requirements_cover_every_dependency_with_the_cpu_build_of_tensorflow() -> None:
    pins = {}
    for line in (ROOT / "docker-requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{line}: not pinned"
            pins[name] = version
    assert "tensorflow-cpu" in pins and "tensorflow" not in pins
    for dependency in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", dependency).group(0).lower().replace("_", "-")
        assert ("tensorflow-cpu" if name == "tensorflow" else name) in pins, f"{name} is not pinned"


# The containers' commands, run here


def container_environment(service: dict, settings: dict[str, str], storage: str, password_file: Path) -> dict[str, str]:
    """The service's environment as compose gives it, pointed at the local server instead of `db`."""
    environment = service_environment(service, settings)
    environment["SWEEP_STORAGE"] = storage
    environment["SWEEP_STORAGE_PASSWORD_FILE"] = str(password_file)
    return {**os.environ, **environment}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "db_password.txt"
    path.write_text("not-used-by-trust-auth\n")
    return path


def local_storage(compose: dict, postgres_url: str) -> str:
    """The compose file's storage URL, same driver, on the local server's test database."""
    url = sqlalchemy.engine.make_url(service_environment(compose["services"]["worker"], {})["SWEEP_STORAGE"])
    local = sqlalchemy.engine.make_url(postgres_url)
    assert url.drivername == local.drivername
    return url.set(host=local.host, port=local.port, username=local.username, database=local.database).render_as_string(
        hide_password=False
    )


@pytest.mark.slow
def test_the_default_init_command_creates_the_shipped_study(compose: dict, postgres_url: str, password_file: Path) -> None:
    storage = local_storage(compose, postgres_url)
    init = compose["services"]["init"]
    environment = container_environment(init, {}, storage, password_file)
    for _ in range(2):  # a restarted stack runs init again; nothing is added twice
        done = subprocess.run(service_command(init, {}), cwd=ROOT, env=environment, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="echo-first", storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 12 and {t.state for t in trials} == {TrialState.WAITING}
    assert "sweep worker echo-first" in done.stdout


@pytest.fixture
def served(compose: dict, postgres_url: str, password_file: Path) -> Iterator[tuple[str, str, subprocess.Popen]]:
    port = free_port()
    dashboard = compose["services"]["dashboard"]
    command = service_command(dashboard, {})
    command[command.index("--port") + 1] = str(port)  # 8080 inside the container; any free port here
    storage = local_storage(compose, postgres_url)
    server = subprocess.Popen(
        command, env=container_environment(dashboard, {}, storage, password_file),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    # The database is empty: the dashboard waits for a study (it makes no table itself) and serves
    # once the init service has made one, in whichever order compose starts them.
    yield f"http://127.0.0.1:{port}", storage, server
    server.terminate()
    server.wait(timeout=20)


def wait_until_serving(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/studies", timeout=2)
            return
        except OSError:
            assert server.poll() is None, server.stdout.read()
            time.sleep(0.5)
    raise AssertionError(f"the dashboard did not serve {url} within 60 s")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_two_scaled_workers_finish_a_study_that_the_dashboard_serves(
    compose: dict, served: tuple[str, str, subprocess.Popen], tiny_study: Path, password_file: Path
) -> None:
    url, storage, server = served
    services = compose["services"]
    settings = {"SWEEP_STUDY_FILE": str(tiny_study), "SWEEP_STUDY": "tiny"}
    init = subprocess.run(
        service_command(services["init"], settings),
        cwd=ROOT, env=container_environment(services["init"], settings, storage, password_file),
        capture_output=True, text=True,
    )
    assert init.returncode == 0, init.stderr
    wait_until_serving(url, server)
    worker_environment = container_environment(services["worker"], settings, storage, password_file)
    assert worker_environment["SWEEP_WORKERS"] == "2"
    workers = [
        subprocess.Popen(
            service_command(services["worker"], settings), cwd=ROOT, env=worker_environment,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        _, errors = worker.communicate(timeout=600)
        assert worker.returncode == 0, errors

    study = optuna.load_study(study_name="tiny", storage=storage)
    current = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    assert len(current) == 4 and all(len(t.intermediate_values) == 3 for t in current)

    listed = {s["study_name"]: s for s in get_json(f"{url}/api/studies")["study_summaries"]}
    assert "tiny" in listed
    detail = get_json(f"{url}/api/studies/{listed['tiny']['study_id']}?after=0")
    served_trials = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert len(served_trials) == 4
    assert all(len(t["intermediate_values"]) == 3 for t in served_trials)
    # The workers keep the study's note up to date as points finish.
    assert "Grid of 4 points: 4 done, 0 running, 0 waiting, 0 failed" in detail["note"]["body"]
    assert "**Best point: L=" in detail["note"]["body"]
