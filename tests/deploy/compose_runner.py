"""Runs a compose file's services as local processes: commands, environments, healthchecks."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import yaml  # type: ignore[import-untyped]

# --- This project's layout ---------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
COMPOSE_FILE = REPO / "docker-compose.yml"
CPU_OVERRIDE = REPO / "docker-compose.cpu.yml"
GPUS_OVERRIDE = REPO / "docker-compose.gpus.yml"
# The images' Python environments, synced from the lock by their own `uv sync` lines. Kept
# between runs (a re-sync only checks) in var/, which git ignores and `make clean` removes.
IMAGE_ENVIRONMENTS = REPO / "var" / "image-envs"

# --- Loading: compose's YAML tags, interpolation and merge ------------------------------------


class _Reset:
    """`!reset`: in an override file, removes the value it replaces."""


_RESET = _Reset()


@dataclass(frozen=True)
class _Override:
    """`!override`: in an override file, replaces a value instead of merging into it."""

    value: Any


class _ComposeLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML with compose's merge tags."""


_ComposeLoader.add_constructor("!reset", lambda _loader, _node: _RESET)


def _construct_override(loader: yaml.SafeLoader, node: yaml.Node) -> _Override:
    if isinstance(node, yaml.MappingNode):
        return _Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return _Override(loader.construct_sequence(node, deep=True))
    assert isinstance(node, yaml.ScalarNode)
    return _Override(loader.construct_scalar(node))


_ComposeLoader.add_constructor("!override", _construct_override)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", "-", ":?", "?", ":+", "+")


class InterpolationError(ValueError):
    """A `${VAR:?message}` whose variable is unset or empty, or a malformed expression."""


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Substitute `$VAR`, `${VAR}`, `${VAR:-default}` and the other forms compose accepts.

    `$$` stands for a literal `$`. As in compose, an unset variable without a default is empty,
    and defaults and alternatives may themselves contain expressions.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            end = _closing_brace(text, i + 2)
            out.append(_expand_braced(text[i + 2 : end], variables))
            i = end + 1
        elif match := _NAME.match(text, i + 1):
            out.append(variables.get(match.group(), ""))
            i = match.end()
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"unclosed ${{ in {text!r}")


def _expand_braced(body: str, variables: Mapping[str, str]) -> str:
    match = _NAME.match(body)
    if match is None:
        raise InterpolationError(f"invalid expression ${{{body}}}")
    name, rest = match.group(), body[match.end() :]
    if not rest:
        return variables.get(name, "")
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise InterpolationError(f"invalid expression ${{{body}}}")
    argument = rest[len(operator) :]
    value = variables.get(name)
    present = value is not None and (value != "" or not operator.startswith(":"))
    if operator.endswith("-"):
        return value if present and value is not None else interpolate(argument, variables)
    if operator.endswith("?"):
        if not present or value is None:
            raise InterpolationError(f"required variable {name} is missing: {argument}")
        return value
    return interpolate(argument, variables) if present else ""


def _interpolate_tree(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, variables) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(item, variables) for item in node]
    if isinstance(node, _Override):
        return _Override(_interpolate_tree(node.value, variables))
    return node


# Sequences that an override replaces rather than extends (compose's merge rules).
_REPLACED_SEQUENCES = frozenset({"command", "entrypoint", "test", "dns", "dns_search"})


def _normalize_environment(value: Any) -> Any:
    """`["A=1", "B"]` becomes `{"A": "1", "B": None}`; a mapping stays a mapping."""
    if not isinstance(value, list):
        return value
    pairs = (entry.split("=", 1) for entry in value)
    return {pair[0]: pair[1] if len(pair) == 2 else None for pair in pairs}


def _merge(base: Any, override: Any, key: str | None = None) -> Any:
    if isinstance(override, _Override):
        return _strip_tags(override.value)
    if key in ("environment", "labels"):
        base, override = _normalize_environment(base), _normalize_environment(override)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            if value is _RESET:
                merged.pop(name, None)
            elif name in merged:
                merged[name] = _merge(merged[name], value, name)
            else:
                merged[name] = _strip_tags(value)
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in _REPLACED_SEQUENCES:
        return base + [item for item in _strip_tags(override) if item not in base]
    return _strip_tags(override)


def _strip_tags(node: Any) -> Any:
    if isinstance(node, _Override):
        return _strip_tags(node.value)
    if isinstance(node, dict):
        return {key: _strip_tags(value) for key, value in node.items() if value is not _RESET}
    if isinstance(node, list):
        return [_strip_tags(item) for item in node if item is not _RESET]
    return node


def _read(path: Path, variables: Mapping[str, str]) -> dict[str, Any]:
    loader = _ComposeLoader(path.read_text())
    try:
        document: dict[str, Any] = loader.get_single_data()
    finally:
        loader.dispose()
    interpolated: dict[str, Any] = _interpolate_tree(document, variables)
    return interpolated


# What `extends` never takes from the service it extends (Compose Specification).
_NOT_EXTENDED = frozenset({"depends_on", "volumes_from"})


def _extended(
    service: Any, siblings: Mapping[str, Any], directory: Path, variables: Mapping[str, str]
) -> Any:
    """A service with its `extends` resolved: the extended service (from `file`, or from the
    same file), less `depends_on`, with this service's own keys merged over it."""
    if not isinstance(service, dict) or "extends" not in service:
        return service
    reference = service["extends"]
    if isinstance(reference, str):
        reference = {"service": reference}
    if "file" in reference:
        source = directory / reference["file"]
        siblings, directory = _read(source, variables)["services"], source.parent
    base = _extended(siblings[reference["service"]], siblings, directory, variables)
    inherited = {key: value for key, value in _strip_tags(base).items() if key not in _NOT_EXTENDED}
    return _merge(inherited, {key: value for key, value in service.items() if key != "extends"})


def load_compose(files: Sequence[Path], variables: Mapping[str, str]) -> dict[str, Any]:
    """The compose model of `files` merged in order, as `docker compose -f a -f b config` builds it.

    Covers what this project's files use: anchors and merge keys, interpolation, `extends` (of
    a service in the same or another file), `!reset` and `!override`, mappings merged key by
    key, environments given as lists or mappings.
    """
    model: dict[str, Any] = {}
    for path in files:
        document = _read(path, variables)
        services = document.get("services") or {}
        document["services"] = {
            name: _extended(service, services, path.parent, variables)
            for name, service in services.items()
        }
        model = _merge(model, document)
    return model


# --- Images: what a service inherits from its Dockerfile --------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """The final stage's ENV, WORKDIR, HEALTHCHECK test and CMD."""

    env: dict[str, str]
    workdir: str | None
    healthcheck: tuple[str, ...] | None
    cmd: tuple[str, ...] | None


def dockerfile_instructions(dockerfile: Path) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comment lines dropped."""
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line:
            instruction, _, arguments = line.partition(" ")
            yield instruction.upper(), arguments.strip()


def _exec_form(arguments: str) -> tuple[str, ...]:
    if arguments.startswith("["):
        return tuple(str(item) for item in json.loads(arguments))
    return ("/bin/sh", "-c", arguments)


def read_image(dockerfile: Path, base_env: Mapping[str, str]) -> ImageConfig:
    """What a container of the image built from `dockerfile` starts with.

    ENV values may refer to earlier ENV and ARG values (`PATH=/app/.venv/bin:$PATH`), ARGs
    taking their defaults; references the file does not define, which the base image would,
    come from `base_env`.
    """
    env: dict[str, str] = {}
    build_args: dict[str, str] = {}
    workdir: str | None = None
    healthcheck: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    for instruction, arguments in dockerfile_instructions(dockerfile):
        if instruction == "FROM":
            env, build_args, workdir, healthcheck, cmd = {}, {}, None, None, None
        elif instruction in ("ARG", "ENV"):
            target = build_args if instruction == "ARG" else env
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                target[name] = interpolate(value, {**base_env, **build_args, **env})
        elif instruction == "WORKDIR":
            workdir = arguments
        elif instruction == "HEALTHCHECK":
            test = re.sub(r"^(--\S+\s+)*", "", arguments)
            if test.upper() != "NONE":
                assert test.startswith("CMD "), f"unreadable HEALTHCHECK {arguments!r}"
                healthcheck = _exec_form(test[len("CMD ") :].strip())
        elif instruction == "CMD":
            cmd = _exec_form(arguments)
    return ImageConfig(env=env, workdir=workdir, healthcheck=healthcheck, cmd=cmd)


# --- Plans: a service's process on this machine -----------------------------------------------


@dataclass(frozen=True)
class ServicePlan:
    """One service as a local process: what runs, with which environment, and how it is checked."""

    name: str
    argv: tuple[str, ...]
    environment: dict[str, str]
    cwd: Path
    healthcheck: tuple[str, ...] | None
    stop_grace_s: float
    depends_on: tuple[str, ...]


def _duration_s(value: str | None, default_s: float) -> float:
    """Compose durations such as `1m30s`, `150s`, `500ms`."""
    if value is None:
        return default_s
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert "".join(number + unit for number, unit in parts) == value, f"bad duration {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def _command(value: Any) -> tuple[str, ...]:
    # Compose splits a string command with shell-like quoting, without running a shell.
    return tuple(shlex.split(value)) if isinstance(value, str) else tuple(str(v) for v in value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _rewrite_paths(text: str, paths: Mapping[str, Path]) -> str:
    """Container paths (a mount target, the WORKDIR) become the host folders standing for them.

    One pass, the longest path first, so that a host folder is never rewritten again.
    """
    if not paths:
        return text
    alternatives = "|".join(re.escape(path) for path in sorted(paths, key=len, reverse=True))
    pattern = rf"(?<![\w./-])({alternatives})(?=[/:\s'\"]|$)"
    return re.sub(pattern, lambda match: paths[match.group(1)].as_posix(), text)


def _rewrite_hosts(value: str, hosts: Mapping[str, str]) -> str:
    """An environment value naming a service, alone or as a URL's host, gets its address."""
    if value in hosts:
        return hosts[value]
    if "://" in value:
        for service, address in hosts.items():
            # redis://:secret@redis:6379/0
            value = re.sub(rf"(?:(?<=//)|(?<=@)){re.escape(service)}(?=[:/]|$)", address, value)
    return value


def dockerfile_of(service: Mapping[str, Any], project_dir: Path) -> Path | None:
    """The Dockerfile a service is built from, None for a service that pulls its image.

    The build context is taken to be the Dockerfile's folder, as it is in this project.
    """
    build = service.get("build")
    if build is None or (isinstance(build, dict) and "dockerfile_inline" in build):
        return None
    if isinstance(build, str):
        build = {"context": build}
    context: Path = project_dir / build.get("context", ".")
    dockerfile: Path = context / build.get("dockerfile", "Dockerfile")
    assert dockerfile.parent == context, f"{dockerfile} lies outside its build context"
    return dockerfile


def sync_image_environment(dockerfile: Path, destination: Path) -> Path:
    """Install an image's Python environment at `destination` with the image's own command.

    Runs the Dockerfile's `uv sync ...` (its flags: extras, groups, --frozen) in the build
    context with this machine's uv and Python, so that a service runs on exactly the packages
    its image installs, not on the development environment. uv links from its cache; a second
    run only checks.
    """
    commands = [
        arguments[arguments.index("uv sync") :].split("&&")[0]
        for instruction, arguments in dockerfile_instructions(dockerfile)
        if instruction == "RUN" and "uv sync" in arguments
    ]
    assert len(commands) == 1, f"{dockerfile.name}: expected one `uv sync`, found {commands}"
    environment = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(destination),
        "UV_PYTHON": sys.executable,
    }
    result = subprocess.run(
        shlex.split(commands[0]),
        cwd=dockerfile.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{commands[0]} failed:\n{result.stderr}"
    return destination


def plan_service(
    compose: Mapping[str, Any],
    name: str,
    *,
    project_dir: Path,
    volumes: Mapping[str, Path],
    hosts: Mapping[str, str],
    base_env: Mapping[str, str],
    scratch_dir: Path,
    python_env: Path | None = None,
) -> ServicePlan:
    """The local process for service `name` of a loaded compose model.

    A built image's WORKDIR is its build context (which holds the code), and its Python
    environment (UV_PROJECT_ENVIRONMENT) is `python_env` when given; a named volume is the
    folder `volumes[name]`; a service name used as a host (an environment value, or the host of
    a URL) becomes `hosts[name]`; a config given by its `content` is a file under `scratch_dir`.
    The environment is `base_env` under the image's ENV under the service's `environment`, as
    in a container; an `entrypoint` comes before the command. Services without a build run in
    `scratch_dir`.
    """
    service = compose["services"][name]
    image = ImageConfig(env={}, workdir=None, healthcheck=None, cmd=None)
    paths: dict[str, Path] = {}
    dockerfile = dockerfile_of(service, project_dir)
    if dockerfile is not None:
        image = read_image(dockerfile, base_env)
        if image.workdir is not None:
            paths[image.workdir] = dockerfile.parent
        if python_env is not None:
            paths[image.env["UV_PROJECT_ENVIRONMENT"]] = python_env
    for mount in service.get("volumes", []):
        source, target = (mount.split(":")[:2] if isinstance(mount, str)
                          else (mount["source"], mount["target"]))  # fmt: skip
        paths[target] = volumes[source]
    for config in service.get("configs", []):
        source, target = (config, f"/{config}") if isinstance(config, str) else (
            config["source"], config.get("target", f"/{config['source']}"))  # fmt: skip
        folder = scratch_dir / "configs" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / source).write_text(compose["configs"][source]["content"])
        paths[target] = folder / source

    environment = {**base_env, **image.env}
    for key, value in _normalize_environment(service.get("environment", {})).items():
        if value is not None:
            environment[key] = _scalar(value)
    environment = {
        key: _rewrite_paths(_rewrite_hosts(value, hosts), paths)
        for key, value in environment.items()
    }

    command = service.get("command")
    argv = _command(command) if command is not None else image.cmd
    entrypoint = service.get("entrypoint")
    if entrypoint is not None:
        argv = (*_command(entrypoint), *(argv or ()))
    assert argv, f"service {name} has no command"

    check = service.get("healthcheck", {})
    test = check.get("test")
    if check.get("disable"):
        healthcheck = None
    elif test is None:
        healthcheck = image.healthcheck
    elif isinstance(test, str):
        healthcheck = ("/bin/sh", "-c", test)
    elif test[0] == "CMD-SHELL":
        healthcheck = ("/bin/sh", "-c", test[1])
    elif test[0] == "NONE":
        healthcheck = None
    else:
        healthcheck = tuple(test[1:])

    cwd = dockerfile.parent if dockerfile is not None else scratch_dir
    depends = service.get("depends_on", [])
    return ServicePlan(
        name=name,
        argv=tuple(_rewrite_paths(arg, paths) for arg in argv),
        environment=environment,
        cwd=cwd,
        healthcheck=tuple(_rewrite_paths(arg, paths) for arg in healthcheck)
        if healthcheck
        else None,
        stop_grace_s=_duration_s(service.get("stop_grace_period"), 10.0),
        depends_on=tuple(depends),
    )


def default_services(compose: Mapping[str, Any]) -> list[str]:
    """The services `docker compose up` starts (no profile), dependencies first."""
    services: Mapping[str, Any] = compose["services"]
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name not in ordered:
            for dependency in services[name].get("depends_on", []):
                visit(dependency)
            ordered.append(name)

    for name, service in services.items():
        if not service.get("profiles"):
            visit(name)
    return ordered


# --- Processes --------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port that was free on the loopback a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None], *, timeout_s: float, what: str, interval_s: float = 0.5
) -> T:
    """Poll `check` until it returns something other than None; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


@dataclass
class RunningService:
    """A started service: its plan, its process (leader of its own process group) and log."""

    plan: ServicePlan
    process: subprocess.Popen[bytes]
    log_path: Path
    prefix: tuple[str, ...] = field(default=())
    stopped: bool = False

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of its output, for failure messages."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class ServiceFailed(RuntimeError):
    """A service exited, or never became healthy; the message carries its log."""


class LocalDeployment:
    """Service processes started in order and all stopped on exit, like `docker compose down`.

    Each process leads its own process group. Stopping sends SIGTERM to the main process, waits
    the service's stop_grace_period, then SIGKILLs the group, as docker does with a container.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.services: dict[str, RunningService] = {}

    def __enter__(self) -> Self:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self, plan: ServicePlan, *, key: str | None = None, prefix: Sequence[str] = ()
    ) -> RunningService:
        """Start `plan` (under `key`, default its name), its command prefixed by `prefix`."""
        key = key or plan.name
        log_path = self.log_dir / f"{key}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*prefix, *plan.argv],
                cwd=plan.cwd,
                env=plan.environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running = RunningService(plan, process, log_path, tuple(prefix))
        self.services[key] = running
        return running

    def failure(self, key: str, message: str) -> ServiceFailed:
        """An error naming service `key`, with the tail of its log."""
        return ServiceFailed(
            f"{key}: {message}\n--- {key} log ---\n{self.services[key].log_tail()}"
        )

    def wait_healthy(self, key: str, timeout_s: float) -> None:
        """Run the service's healthcheck until it passes; fail if the process exits first."""
        running = self.services[key]
        test = running.plan.healthcheck
        assert test is not None, f"{key} has no healthcheck"
        argv = [*running.prefix, *test]

        def healthy() -> bool | None:
            if running.process.poll() is not None:
                raise self.failure(key, f"exited with {running.process.returncode}")
            try:
                result = subprocess.run(
                    argv,
                    cwd=running.plan.cwd,
                    env=running.plan.environment,
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return None
            return True if result.returncode == 0 else None

        try:
            wait_for(healthy, timeout_s=timeout_s, what=f"{key} to be healthy", interval_s=1.0)
        except TimeoutError as error:
            raise self.failure(key, str(error)) from None

    def kill(self, key: str) -> None:
        """SIGKILL the service's whole process group, as when its host dies."""
        self._end(self.services[key])

    def _end(self, running: RunningService) -> None:
        if not running.stopped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait(timeout=30)
            running.stopped = True

    def stop(self, key: str) -> RunningService:
        """SIGTERM, the stop grace period, then SIGKILL of the group; the stopped service."""
        self._stop_together([key])
        return self.services[key]

    def _stop_together(self, keys: Sequence[str]) -> None:
        running = [self.services[key] for key in keys if not self.services[key].stopped]
        for service in running:
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        errors: list[BaseException] = []
        for service in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(timeout=service.plan.stop_grace_s)
            try:
                # Whatever the main process left behind in its group goes too.
                self._end(service)
            except (OSError, subprocess.SubprocessError) as error:
                errors.append(error)
        if errors:
            raise errors[0]

    def stop_all(self) -> None:
        """Stop every service as `docker compose down` does: all at once, except that a service
        stops only after the services that depend on it."""
        errors: list[BaseException] = []
        remaining = [key for key, service in self.services.items() if not service.stopped]
        while remaining:
            needed = {dep for key in remaining for dep in self.services[key].plan.depends_on}
            batch = [key for key in remaining if self.services[key].plan.name not in needed]
            batch = batch or remaining  # a dependency cycle: stop the rest together
            try:
                self._stop_together(batch)
            except (OSError, subprocess.SubprocessError) as error:
                errors.append(error)
            remaining = [key for key in remaining if key not in batch]
        if errors:
            raise errors[0]


# --- A whole stack, and the service's HTTP API ------------------------------------------------


def plan_stack(
    files: Sequence[Path],
    variables: Mapping[str, str],
    *,
    project_dir: Path,
    root: Path,
    environments_dir: Path | None = None,
    hosts: Mapping[str, str] | None = None,
) -> dict[str, ServicePlan]:
    """Plans for the services `docker compose up` starts, dependencies first.

    Named volumes become folders under `root/volumes`. With `environments_dir`, each built
    service runs on its image's own Python environment, synced there (see
    sync_image_environment); without, on the checkout's. Service names resolve to `hosts`
    (default: every service on 127.0.0.1). The processes get a clean environment: this
    machine's PATH, a HOME of their own and a UTF-8 locale, then what the image and the service
    define.
    """
    compose = load_compose(files, variables)
    volumes = {name: root / "volumes" / name for name in compose.get("volumes", {})}
    for folder in (*volumes.values(), root / "home", root / "scratch"):
        folder.mkdir(parents=True, exist_ok=True)
    base_env = {"PATH": os.environ["PATH"], "HOME": str(root / "home"), "LANG": "C.UTF-8"}
    addresses = hosts if hosts is not None else dict.fromkeys(compose["services"], "127.0.0.1")
    plans = {}
    for name in default_services(compose):
        dockerfile = dockerfile_of(compose["services"][name], project_dir)
        python_env = None
        if dockerfile is not None and environments_dir is not None:
            destination = environments_dir / dockerfile.name.lower().replace(".", "-")
            python_env = sync_image_environment(dockerfile, destination)
        plans[name] = plan_service(
            compose,
            name,
            project_dir=project_dir,
            volumes=volumes,
            hosts=addresses,
            base_env=base_env,
            scratch_dir=root / "scratch",
            python_env=python_env,
        )
    return plans


def normalized_words(text: str) -> str:
    """Lower case, punctuation dropped, single spaces: for comparing transcripts."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def submit_audio(client: httpx.Client, audio: Path, engine: str) -> str:
    """POST /transcribe with `audio`; the job id."""
    with audio.open("rb") as file:
        response = client.post(
            "/transcribe", files={"file": (audio.name, file)}, data={"engine": engine}
        )
    assert response.status_code in (200, 202), response.text
    job_id: str = response.json()["job_id"]
    return job_id


def wait_for_job(
    client: httpx.Client, job_id: str, statuses: frozenset[str], *, timeout_s: float
) -> dict[str, Any]:
    """Poll GET /status/{job_id} until its status is one of `statuses` (or `failed`)."""

    def state() -> dict[str, Any] | None:
        response = client.get(f"/status/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] in statuses | {"failed"} else None

    return wait_for(state, timeout_s=timeout_s, what=f"job {job_id} to reach {sorted(statuses)}")
