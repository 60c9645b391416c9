"""The production stack under test: PostgreSQL (``core.psql_dos``) and RabbitMQ (``core.rabbitmq``), as most AiiDA
users on clusters run it, with a daemon of two workers.

The session fixture runs ``scripts/postgres_profile.sh --rabbitmq`` (which starts PostgreSQL and RabbitMQ, installing
them if missing) for a fresh profile with its own database (``aiida_physgen_test_<random>``), in a temporary AiiDA
configuration folder (``AIIDA_PATH``), so that neither the user's profiles nor the temporary SQLite profile of the rest
of the suite (tests/conftest.py, loaded in this pytest process) are touched. Everything on the production profile runs
in processes of its own (``verdi -p``, tests/production/driver.py); the tests assert on what they print. At the end the
daemon is stopped, the database dropped and the profile's RabbitMQ queue deleted.

When PostgreSQL or RabbitMQ cannot be started the tests FAIL: they never skip.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "postgres_profile.sh"
DRIVER = Path(__file__).resolve().with_name("driver.py")


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join((text or "").splitlines()[-lines:])


@dataclass
class ProductionProfile:
    name: str
    database: str
    aiida_path: Path
    workdir: Path
    env: dict

    def run(self, command: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
        """Run ``command`` on this profile's configuration folder; fail the test (never skip) if it fails."""
        try:
            proc = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired as error:
            output = f"{_tail(str(error.stdout))}\n{_tail(str(error.stderr))}"
            pytest.fail(f"{what}: timed out after {timeout:.0f} s\n{output}")
        if proc.returncode:
            output = f"--- stdout ---\n{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}"
            pytest.fail(f"{what}: exit {proc.returncode}\n{output}")
        return proc

    def verdi(self, *args: str, timeout: float = 120) -> str:
        return self.run(["verdi", "-p", self.name, *args], timeout, f"verdi {' '.join(args)}").stdout

    def driver(self, *args: str, timeout: float = 600) -> dict:
        """Run tests/production/driver.py on this profile; its ``RESULT`` line as a dict."""
        proc = self.run(
            [sys.executable, str(DRIVER), "-p", self.name, *args, *(["--workdir", str(self.workdir)])],
            timeout,
            f"driver {' '.join(args)}",
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if not lines:
            pytest.fail(f"driver {' '.join(args)} printed no RESULT\n{_tail(proc.stdout)}\n{_tail(proc.stderr)}")
        return json.loads(lines[-1][len("RESULT ") :])

    def profile_uuid(self) -> str | None:
        try:
            config = json.loads((self.aiida_path / ".aiida" / "config.json").read_text())
            return config["profiles"][self.name]["PROFILE_UUID"]
        except (OSError, KeyError, ValueError):
            return None


def _as_postgres(sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(["su", "postgres", "-c", f'psql -qtAc "{sql}"'], capture_output=True, text=True, timeout=120)


def _cleanup(profile: ProductionProfile) -> list[str]:
    """Stop the daemon, drop the database, delete the profile's RabbitMQ queues; returns what went wrong."""
    problems = []
    stop = subprocess.run(
        ["verdi", "-p", profile.name, "daemon", "stop"], env=profile.env, capture_output=True, text=True, timeout=180
    )
    if stop.returncode:
        problems.append(f"verdi daemon stop: {_tail(stop.stdout + stop.stderr, 10)}")
    drop = _as_postgres(f"DROP DATABASE IF EXISTS {profile.database} WITH (FORCE)")
    if drop.returncode:
        problems.append(f"DROP DATABASE {profile.database}: {drop.stderr.strip()}")
    uuid = profile.profile_uuid()
    if uuid:
        queues = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True)
        for queue in queues.stdout.split():
            if uuid in queue:
                subprocess.run(["rabbitmqctl", "-q", "delete_queue", queue], capture_output=True, timeout=60)
    shutil.rmtree(profile.aiida_path, ignore_errors=True)
    return problems


@pytest.fixture(scope="session")
def production_profile(tmp_path_factory):
    """A fresh ``core.psql_dos`` + ``core.rabbitmq`` profile with a daemon of 2 workers and the GPAW code
    ``gpaw-python@localhost``; dropped at the end."""
    suffix = secrets.token_hex(3)
    aiida_path = tmp_path_factory.mktemp("production-aiida")
    workdir = tmp_path_factory.mktemp("production-work")
    env = {**os.environ, "AIIDA_PATH": str(aiida_path), "OMP_NUM_THREADS": "1"}
    env.pop("AIIDA_PROFILE", None)
    profile = ProductionProfile(
        name=f"physgen-test-{suffix}",
        database=f"aiida_physgen_test_{suffix}",
        aiida_path=aiida_path,
        workdir=workdir,
        env=env,
    )
    try:
        start = time.monotonic()
        profile.run(["bash", str(SCRIPT), "--rabbitmq", profile.name], 600, "scripts/postgres_profile.sh --rabbitmq")
        made = time.monotonic()
        profile.driver("setup")
        profile.verdi("daemon", "start", "2", timeout=180)
        # shown with pytest -rP: where the set-up time goes
        print(
            f"production profile {profile.name}: script {made - start:.1f} s, computer, code and daemon "
            f"{time.monotonic() - made:.1f} s"
        )
        yield profile
    finally:
        problems = _cleanup(profile)
        if problems:
            print("production profile clean-up:", *problems, sep="\n  ", file=sys.stderr)
