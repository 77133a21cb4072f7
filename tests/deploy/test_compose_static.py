"""The compose files and Dockerfiles, read without a Docker engine: schema, lint and invariants."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from config import Settings
from tests.deploy.compose_runner import (
    COMPOSE_FILE,
    CPU_OVERRIDE,
    GPUS_OVERRIDE,
    REPO,
    InterpolationError,
    dockerfile_instructions,
    interpolate,
    load_compose,
    read_image,
)

BIN = Path(sys.executable).parent
DOCKERFILES = {"api": REPO / "Dockerfile.api", "worker": REPO / "Dockerfile.worker"}
# Variables a container reads that are not Settings fields: gunicorn's own.
NON_SETTINGS_ENV = frozenset({"PORT", "WEB_CONCURRENCY"})

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml with every variable at its default."""
    return load_compose([COMPOSE_FILE], {})


@pytest.fixture(scope="module")
def cpu_compose() -> dict[str, Any]:
    """The CPU variant: docker-compose.yml with docker-compose.cpu.yml merged in."""
    return load_compose([COMPOSE_FILE, CPU_OVERRIDE], {})


def _run(*argv: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )


def _check_compose_schema(path: Path) -> None:
    result = _run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_specification() -> None:
    _check_compose_schema(COMPOSE_FILE)


def test_cpu_variant_matches_the_compose_specification(
    cpu_compose: dict[str, Any], tmp_path: Path
) -> None:
    # check-jsonschema cannot parse compose's !reset tag, so the merged model is what it checks.
    merged = tmp_path / "docker-compose.cpu.merged.json"
    merged.write_text(json.dumps(cpu_compose))
    _check_compose_schema(merged)


def test_dockerfiles_pass_hadolint() -> None:
    result = _run(BIN / "hadolint", *DOCKERFILES.values())
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_inline_dockerfiles_pass_hadolint(compose: dict[str, Any]) -> None:
    inline = {
        name: service["build"]["dockerfile_inline"]
        for name, service in compose["services"].items()
        if isinstance(service.get("build"), dict) and "dockerfile_inline" in service["build"]
    }
    assert inline, "expected the rq-dashboard image to be built inline"
    for name, dockerfile in inline.items():
        result = _run(BIN / "hadolint", "-", stdin=dockerfile)
        assert (result.returncode, result.stdout + result.stderr) == (0, ""), name


def _flags(command: list[str]) -> dict[str, str]:
    return dict(zip(command[1::2], command[2::2], strict=False))


def test_redis_keeps_every_job(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    flags = _flags(redis["command"])
    assert redis["command"][0] == "redis-server"
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] == "everysec"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--requirepass"] == ""  # no password unless REDIS_PASSWORD is set
    assert "ports" not in redis
    assert redis["volumes"] == [f"redis-data:{flags['--dir']}"]
    assert redis["healthcheck"]["test"][0] == "CMD-SHELL"
    with_password = load_compose([COMPOSE_FILE], {"REDIS_PASSWORD": "s3cret"})
    assert _flags(with_password["services"]["redis"]["command"])["--requirepass"] == "s3cret"


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in service.get("environment", {}).items()}


def test_api_and_worker_settings_exist(compose: dict[str, Any]) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    for name in ("api", "worker"):
        unknown = set(_env(compose["services"][name])) - fields - NON_SETTINGS_ENV
        assert not unknown, f"{name} sets variables config.Settings does not read: {unknown}"
        image = read_image(DOCKERFILES[name], {})
        settings_like = {key for key in image.env if not key.startswith(("UV_", "PYTHON"))}
        unknown = settings_like - fields - NON_SETTINGS_ENV - {"PATH", "XDG_CACHE_HOME"}
        assert not unknown, f"Dockerfile.{name} sets variables no one reads: {unknown}"


def test_uploads_and_models_are_volumes_where_the_settings_point(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mounts = {
        name: dict(reversed(mount.split(":")[:2]) for mount in services[name]["volumes"])
        for name in ("api", "worker")
    }
    for name in ("api", "worker"):
        upload_dir = _env(services[name])["UPLOAD_DIR"]
        assert mounts[name][upload_dir] == "uploads"
        assert read_image(DOCKERFILES[name], {}).env["UPLOAD_DIR"] == upload_dir
    model_cache_dir = _env(services["worker"])["MODEL_CACHE_DIR"]
    assert mounts["worker"][model_cache_dir] == "models"
    worker_image = read_image(DOCKERFILES["worker"], {})
    assert worker_image.env["XDG_CACHE_HOME"].startswith(model_cache_dir + "/")
    assert set(compose["volumes"]) == {
        "redis-data", "uploads", "models", "prometheus-data", "grafana-data",
    }  # fmt: skip


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"write durations in seconds: {duration!r}"
    return float(match.group(1))


def test_worker_reserves_a_gpu_and_scales(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert worker["restart"] == "unless-stopped"
    # --scale needs no fixed name, host name or host port.
    assert not {"container_name", "hostname", "ports"} & set(worker)
    grace_s = float(_env(worker)["SHUTDOWN_GRACE_S"])
    assert _seconds(worker["stop_grace_period"]) >= grace_s + 30


def test_cpu_variant_drops_the_gpu(cpu_compose: dict[str, Any]) -> None:
    worker = cpu_compose["services"]["worker"]
    assert "devices" not in worker["deploy"]["resources"]["reservations"]
    assert _env(worker)["DEVICE"] == "cpu"
    assert _env(worker)["COMPUTE_TYPE"] == "int8"


MONITORING = REPO / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "transcribe.json"


def test_monitoring_is_an_opt_in_profile(compose: dict[str, Any]) -> None:
    dashboard = compose["services"]["rq-dashboard"]
    assert dashboard["profiles"] == ["monitoring"]
    assert "--json" in dashboard["command"].split()  # the queue's JSONSerializer
    profiled = {name for name, service in compose["services"].items() if service.get("profiles")}
    assert profiled == {"rq-dashboard", "prometheus", "grafana"}
    for name in profiled:
        service = compose["services"][name]
        assert service["profiles"] == ["monitoring"]
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), name
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts {source}, which is missing"


def test_prometheus_config_passes_promtool_and_scrapes_the_compose_ports(
    compose: dict[str, Any],
) -> None:
    result = _run("promtool", "check", "config", MONITORING / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api_port = _env(compose["services"]["api"])["PORT"]
    assert jobs["api"]["static_configs"] == [{"targets": [f"api:{api_port}"]}]
    (workers,) = jobs["worker"]["dns_sd_configs"]
    assert workers["names"] == ["worker"]  # every replica's address
    assert str(workers["port"]) == _env(compose["services"]["worker"])["WORKER_METRICS_PORT"]


def _metric_names() -> set[str]:
    """Every metric name the code defines (families, and a histogram's series)."""
    sources = ("api/http/metrics.py", "worker/metrics.py", "common/metrics.py")
    defined = re.compile(r'(?:Counter|Gauge|Histogram|GaugeMetricFamily)\(\s*"(transcribe_\w+)"')
    names = {name for path in sources for name in defined.findall((REPO / path).read_text())}
    assert len(names) > 20, names
    return names | {f"{name}_{part}" for name in names for part in ("bucket", "sum", "count")}


def test_the_dashboard_loads_and_asks_only_for_metrics_that_exist(
    compose: dict[str, Any],
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    provider = yaml.safe_load(
        (MONITORING / "grafana/provisioning/dashboards/transcribe.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    assert f"./monitoring/grafana/dashboards:{path}:ro" in compose["services"]["grafana"]["volumes"]
    datasource = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    titles = {panel["title"] for panel in dashboard["panels"]}
    for wanted in ("Queue depth", "Throughput", "Job duration", "Failures", "Real-time", "GPU"):
        assert any(title.startswith(wanted) for title in titles), wanted
    known = _metric_names()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            asked = set(re.findall(r"\btranscribe_\w+", target["expr"]))
            assert asked, target["expr"]
            assert asked <= known, f"{panel['title']}: unknown {asked - known}"
    readme = (REPO / "README.md").read_text()
    undocumented = {name for name in known if not name.endswith(("_bucket", "_sum", "_count"))
                    and f"`{name}`" not in readme}  # fmt: skip
    assert not undocumented, f"the README's metrics table lacks {sorted(undocumented)}"


def test_the_gpu_override_pins_one_worker_to_each_of_four_gpus(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    merged = load_compose([COMPOSE_FILE, GPUS_OVERRIDE], {})
    path = tmp_path / "docker-compose.gpus.merged.json"
    path.write_text(json.dumps(merged))
    _check_compose_schema(path)
    base = compose["services"]["worker"]
    services = merged["services"]
    workers = {name: services[name] for name in services if name.startswith("worker")}
    assert sorted(workers) == ["worker", "worker-gpu1", "worker-gpu2", "worker-gpu3"]
    pinned = []
    for name, worker in workers.items():
        (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
        assert "count" not in device, name
        pinned.extend(device["device_ids"])
        assert (worker["command"], worker["environment"]) == (base["command"], base["environment"])
        assert worker["depends_on"] == base["depends_on"]
        assert worker["stop_grace_period"] == base["stop_grace_period"]
        if name != "worker":  # found by Prometheus under the same name
            assert worker["networks"]["default"]["aliases"] == ["worker"]
    assert sorted(pinned) == ["0", "1", "2", "3"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_are_pinned_non_root_and_cache_friendly(name: str) -> None:
    instructions = list(dockerfile_instructions(DOCKERFILES[name]))
    for base in (args for op, args in instructions if op == "FROM"):
        assert re.search(r":\S*\d+\.\d+", base), f"unpinned base image {base}"
    for source in re.findall(r"--from=(\S+)", DOCKERFILES[name].read_text()):
        assert re.search(r":\d+\.\d+\.\d+$", source), f"unpinned image {source}"
    user = [args for op, args in instructions if op == "USER"][-1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), f"run as a numeric non-root user: {user}"
    steps = [(op, args) for op, args in instructions if op in ("COPY", "RUN")]
    sync = next(i for i, (op, args) in enumerate(steps) if "uv sync" in args)
    copied_before = [args for op, args in steps[:sync] if op == "COPY"]
    assert all(
        "--from=" in args or args.split()[:-1] == ["pyproject.toml", "uv.lock"]
        for args in copied_before
    ), f"only the lock may come before the dependency layer: {copied_before}"
    assert "--no-install-project" in steps[sync][1]
    assert any(op == "HEALTHCHECK" for op, _ in instructions)


def test_compose_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "image" in service:
            # A full version, with or without the `v` some projects tag with (prom/prometheus).
            assert re.search(r":v?\d+\.\d+\.\d+", service["image"]), (
                f"{name}: pin {service['image']}"
            )


def _first_party() -> set[str]:
    return {path.parent.name for path in REPO.glob("*/__init__.py")} | {
        path.stem for path in REPO.glob("*.py")
    }


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_hold_the_code_they_import(name: str) -> None:
    copied = {
        Path(args.split()[0]).parts[0].removesuffix(".py")
        for op, args in dockerfile_instructions(DOCKERFILES[name])
        if op == "COPY" and "--from=" not in args
    } & _first_party()
    assert name in copied
    files = [
        path
        for package in copied
        for path in ([REPO / f"{package}.py"] if (REPO / f"{package}.py").exists() else [])
        + sorted((REPO / package).rglob("*.py"))
    ]
    missing = {
        f"{path.relative_to(REPO)} imports {module}"
        for path in files
        for module in _imports(path) & _first_party() - copied
    }
    assert not missing, f"Dockerfile.{name} does not copy: {sorted(missing)}"


def test_dockerignore_keeps_what_the_images_copy() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv"} <= set(patterns)
    for dockerfile in DOCKERFILES.values():
        for op, args in dockerfile_instructions(dockerfile):
            if op == "COPY" and "--from=" not in args:
                for source in args.split()[:-1]:
                    ignored = [p for p in patterns if fnmatch.fnmatch(source.rstrip("/"), p)]
                    assert not ignored, f"{dockerfile.name} copies {source}, ignored by {ignored}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${A}", "a"),
        ("$A/x", "a/x"),
        ("${UNSET}", ""),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET-${A}}", "a"),
        ("${A:+set}", "set"),
        ("${EMPTY:+set}", ""),
        ("${EMPTY+set}", "set"),
        ("$$A and $${A}", "$A and ${A}"),
        ('[ -n "$$X" ] || unset X', '[ -n "$X" ] || unset X'),
    ],
)
def test_interpolation_follows_compose(text: str, expected: str) -> None:
    assert interpolate(text, {"A": "a", "EMPTY": ""}) == expected


def test_interpolation_enforces_required_variables() -> None:
    with pytest.raises(InterpolationError, match="needed"):
        interpolate("${UNSET:?needed}", {})
    assert interpolate("${A:?needed}", {"A": "a"}) == "a"
