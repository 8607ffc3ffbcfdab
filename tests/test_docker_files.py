"""Static checks of the Dockerfile, .dockerignore and docker-compose.yml.

No Docker engine runs here (nor in CI), so the container files are checked by reading them: the
image is a slim Python, runs as a fixed non-root user, carries no secret, installs only the
package, keeps its state on volumes and answers its health check; compose serves OpenRouter with
keys taken from the environment. The health check's own command is also run against a live
gateway, the way Docker would run it inside the container.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Secret-looking names: none may get a value in the image (ENV or ARG, both end up in it).
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)
# An OpenRouter/OpenAI-style key literal.
KEY_LITERAL = re.compile(r"sk-[A-Za-z0-9_-]{8,}")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case, e.g. "RUN"
    args: str  # the rest, continuation lines joined
    stage: int  # 0 for the first FROM's stage, and so on


@cache
def instructions() -> tuple[Instruction, ...]:
    """The Dockerfile's instructions: comments dropped, `\\` continuations joined."""
    result = []
    stage = -1
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker also allows comment lines inside a continuation
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        result.append(Instruction(keyword.upper(), args.strip(), stage))
    assert not pending, "the Dockerfile ends inside a continuation line"
    return tuple(result)


def final_stage() -> list[Instruction]:
    last = instructions()[-1].stage
    return [i for i in instructions() if i.stage == last]


def only(keyword: str, stage: list[Instruction] | None = None) -> Instruction:
    found = [i for i in (stage or final_stage()) if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def env(stage: list[Instruction] | None = None) -> dict[str, str]:
    """ENV of a stage, the final one by default (`KEY=value` form, several per instruction)."""
    values = {}
    for instruction in final_stage() if stage is None else stage:
        if instruction.keyword == "ENV":
            for token in shlex.split(instruction.args):
                name, equals, value = token.partition("=")
                assert equals, f"use ENV KEY=value: {instruction.args}"
                values[name] = value
    return values


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) command: no shell, so signals reach the process itself."""
    command = json.loads(args)
    assert isinstance(command, list) and all(isinstance(a, str) for a in command), args
    return command


def cmd() -> list[str]:
    return exec_form(only("CMD").args)


def healthcheck() -> list[str]:
    options, separator, command = only("HEALTHCHECK").args.partition("CMD ")
    assert separator, "HEALTHCHECK needs a CMD (HEALTHCHECK NONE disables it)"
    assert all(o.startswith("--") for o in options.split()), options
    return exec_form(command)


def run_commands(among: list[Instruction] | None = None) -> list[str]:
    """Every shell command of every RUN (of all stages by default), split at `&&` and `;`."""
    commands = []
    for instruction in instructions() if among is None else among:
        if instruction.keyword == "RUN":
            commands += [c.strip() for c in re.split(r"&&|;", instruction.args) if c.strip()]
    return commands


def copy_sources() -> list[str]:
    """What COPY takes from the build context (not `--from` another stage)."""
    sources = []
    for instruction in instructions():
        if instruction.keyword in ("COPY", "ADD"):
            parts = shlex.split(instruction.args)
            if any(p.startswith("--from") for p in parts):
                continue
            sources += [p for p in parts if not p.startswith("--")][:-1]
    return sources


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(name: str = "gateway") -> dict[str, Any]:
    services = compose()["services"]
    assert set(services) == {"gateway", "redis", "replica", "lb"}
    found = services[name]
    assert isinstance(found, dict)
    return found


def compose_env(name: str = "gateway") -> dict[str, str]:
    environment = service(name)["environment"]
    if isinstance(environment, list):  # the `- KEY=value` form
        environment = dict(item.partition("=")[::2] for item in environment)
    return {str(k): str(v) for k, v in environment.items()}


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go `filepath.Match` plus `**`) as a regular expression."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(path: str) -> bool:
    """Whether the build context leaves `path` out: patterns match from the context root, a
    match on a folder covers what is inside, and the last matching pattern (`!` = keep) wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for pattern in dockerignore():
        keep = pattern.startswith("!")
        regex = _pattern(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            result = not keep
    return result


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def duration_seconds(value: str) -> float:
    """A compose duration such as `15s`, `1m30s` or `500ms`."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


# --- Dockerfile ---------------------------------------------------------------------------------


def test_every_stage_starts_from_a_slim_python() -> None:
    stages = [i for i in instructions() if i.keyword == "FROM"]
    assert stages
    for stage in stages:
        image = stage.args.split()[0]
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image


def test_the_image_runs_as_a_fixed_non_root_user() -> None:
    stage = final_stage()
    user = only("USER")
    assert stage.index(user) < stage.index(only("CMD")), "USER must come before CMD"
    name, _, group = user.args.partition(":")
    assert name not in ("root", "0") and group not in ("root", "0")
    # Numeric, so the uid is the same on every build and orchestrators can see it is not root.
    assert name.isdigit() and int(name) >= 1000, user.args
    useradd = [c for c in run_commands() if re.search(rf"useradd .*--uid {name}\b", c)]
    assert useradd, f"no RUN creates the user with uid {name}"
    # Without it, useradd grows /var/log/lastlog and faillog in proportion to the uid.
    assert "--no-log-init" in useradd[0].split()


def test_logs_and_benchmarks_are_volumes_the_user_owns() -> None:
    values = env()
    dirs = [values["GATEWAY_LOG_DIR"], values["GATEWAY_BENCHMARKS_DIR"]]
    assert all(d.startswith("/") for d in dirs), dirs
    volume = only("VOLUME")
    assert sorted(exec_form(volume.args)) == sorted(dirs)
    # Content and ownership set after VOLUME would be discarded, so both come before it.
    stage = final_stage()
    commands = [shlex.split(c) for c in run_commands(stage[: stage.index(volume)])]
    made = {arg for c in commands if c[0] == "mkdir" for arg in c[1:] if not arg.startswith("-")}
    uid = only("USER").args.split(":")[0]
    names = {c[-1] for c in commands if c[0] == "useradd" and uid in c}  # useradd ... NAME
    chowns = [[a for a in c[1:] if not a.startswith("-")] for c in commands if c[0] == "chown"]
    owners = {args[0].split(":")[0] for args in chowns}  # chown [-R] OWNER[:GROUP] PATH...
    assert owners and owners <= names | {uid}, f"the volumes' owner is not the USER ({uid})"
    # The folder itself, or (with -R) one it is in.
    chowned = {path for args in chowns for path in args[1:]}
    for directory in dirs:
        assert directory in made, f"{directory} is not created"
        assert chowned & {directory, *map(str, Path(directory).parents)}, f"{directory} not chowned"


def test_the_health_check_calls_health_with_python() -> None:
    command = healthcheck()
    assert command[:2] == ["python", "-c"], "slim images have no curl or wget"
    assert "urllib.request" in command[2]
    # 127.0.0.1, not localhost: that may resolve to ::1, where a server on 0.0.0.0 is not.
    assert "http://127.0.0.1:8000/health" in command[2], command


def test_cmd_serves_port_8000_on_all_interfaces_with_the_console_script() -> None:
    assert cmd() == ["llm-gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert "llm-gateway" in pyproject()["project"]["scripts"]
    assert "8000" in only("EXPOSE").args.split()


def test_pip_installs_only_the_project_without_dev_extras() -> None:
    installs = [c for c in run_commands() if re.search(r"\bpip3? install\b", c)]
    assert installs, "the image does not install the package"
    for command in installs:
        arguments = shlex.split(command.split(" install ", 1)[1])
        assert not {"-e", "--editable", "-r", "--requirement"} & set(arguments), command
        assert "--no-cache-dir" in arguments, "pip's cache would stay in the layer"
        assert [a for a in arguments if not a.startswith("-")] == ["."], command


def test_no_secret_is_baked_into_the_image() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert not KEY_LITERAL.search(text)
    every_stage = list(instructions())
    assert not [name for name in env(every_stage) if SECRET_NAME.search(name)]
    for instruction in every_stage:
        if instruction.keyword == "ARG":
            assert not SECRET_NAME.search(instruction.args), instruction
        assert instruction.keyword != "ADD", "ADD can fetch URLs and unpack archives; use COPY"
    # Named sources only: with `COPY . .`, keeping .env out would rest on .dockerignore alone.
    assert not [s for s in copy_sources() if s == "." or Path(s).name.startswith(".env")]


# --- .dockerignore ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [".env", ".env.local", "deploy/.env"])
def test_env_files_never_enter_the_build_context(path: str) -> None:
    assert ignored(path)


@pytest.mark.parametrize(
    "path", [".venv/bin/python", ".git/config", "logs/server_logs.txt", "benchmarks/x/a.csv"]
)
def test_local_state_stays_out_of_the_build_context(path: str) -> None:
    assert ignored(path)


def test_what_the_image_copies_is_in_the_build_context() -> None:
    sources = copy_sources()
    project = pyproject()
    # What `pip install .` reads: pyproject.toml, the readme it names, the package folders.
    needed = [
        "pyproject.toml",
        project["project"]["readme"],
        *project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"],
    ]
    for path in needed:
        assert any(path == s or path.startswith(s.rstrip("/") + "/") for s in sources), path
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source), source
    package = ROOT / "src" / "llm_gateway"
    files = [p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert any(p.suffix != ".py" for p in files)  # templates and py.typed must come along
    assert not [p for p in files if ignored(p.relative_to(ROOT).as_posix())]


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_builds_the_gateway_and_serves_openrouter() -> None:
    gateway = service()
    assert "profiles" not in gateway  # `docker compose up` runs the one gateway
    assert gateway["build"] == "."
    assert compose_env()["GATEWAY_UPSTREAM"] == "openrouter"
    assert gateway["restart"] == "unless-stopped"
    assert "8000:8000" in [str(port) for port in gateway["ports"]]


@pytest.mark.parametrize("service_name", ["gateway", "replica"])
@pytest.mark.parametrize("name", ["OPENROUTER_API_KEY", "GATEWAY_API_KEYS"])
def test_compose_takes_keys_from_the_environment_and_requires_them(
    name: str, service_name: str
) -> None:
    # `${NAME:?message}`: compose stops with the message when the variable is unset or empty.
    assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", compose_env(service_name)[name])


def test_compose_holds_no_key_literal() -> None:
    assert not KEY_LITERAL.search((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    for service_name in ("gateway", "replica"):
        for name, value in compose_env(service_name).items():
            if SECRET_NAME.search(name):
                assert value.startswith("${"), name


def test_the_scaled_profile_runs_replicas_with_workers_on_one_redis_behind_nginx() -> None:
    redis, replica, lb = service("redis"), service("replica"), service("lb")
    assert redis["profiles"] == replica["profiles"] == lb["profiles"] == ["scaled"]
    assert redis["image"].startswith("redis:")
    assert replica["build"] == "." and replica["deploy"]["replicas"] >= 2
    replica_env = compose_env("replica")
    assert replica_env["GATEWAY_UPSTREAM"] == "openrouter"
    assert int(replica_env["GATEWAY_WORKERS"]) >= 2
    assert replica_env["GATEWAY_REDIS_URL"] == "redis://redis:6379/0"
    assert "redis" in replica["depends_on"]
    # Run files on the volume every replica shares; no port of its own (nginx is the way in).
    mounts = dict(str(v).split(":", 1)[::-1] for v in replica["volumes"])
    assert mounts[env()["GATEWAY_BENCHMARKS_DIR"]] == "benchmarks"
    assert "ports" not in replica
    grace = float(replica_env["GATEWAY_SHUTDOWN_GRACE"])
    assert duration_seconds(str(replica["stop_grace_period"])) > grace
    assert lb["image"].startswith("nginx:") and "8080:8080" in lb["ports"]
    conf_mount = next(v for v in lb["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro"))
    conf = (ROOT / conf_mount.split(":")[0]).read_text(encoding="utf-8")
    assert "server replica:8000;" in conf and "proxy_buffering off;" in conf


def test_compose_mounts_named_volumes_where_the_image_writes() -> None:
    mounts = dict(str(v).split(":", 1)[::-1] for v in service()["volumes"])
    assert set(mounts) == {env()["GATEWAY_LOG_DIR"], env()["GATEWAY_BENCHMARKS_DIR"]}
    assert set(mounts.values()) <= set(compose()["volumes"]), "not named volumes"


def test_compose_gives_open_streams_their_grace_before_killing() -> None:
    grace = float(compose_env()["GATEWAY_SHUTDOWN_GRACE"])
    assert duration_seconds(str(service()["stop_grace_period"])) > grace


# --- The health check's command, run for real ----------------------------------------------------


def _probe(base_url: str) -> subprocess.CompletedProcess[str]:
    """Run the HEALTHCHECK's command with the gateway's port in place of the container's."""
    command = healthcheck()
    code = command[2].replace("http://127.0.0.1:8000", base_url)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )


def test_the_health_check_passes_on_a_live_gateway(gateway: str) -> None:
    assert _probe(gateway).returncode == 0


def test_the_health_check_fails_when_nothing_answers() -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    assert _probe("http://127.0.0.1:9").returncode != 0
