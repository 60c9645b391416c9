"""Load test of aiida-physgen on AiiDA's engine: one screening, 1,000 candidates → 200 relaxations, daemon with
2 workers, at most N relaxations in flight, one worker SIGKILLed mid-run; PostgreSQL + RabbitMQ (the production
stack), PostgreSQL + ZeroMQ and SQLite + ZeroMQ side by side.

    python benchmarks/load_test.py                          # all three, the defaults below (about 25 min here)
    python benchmarks/load_test.py --backends sqlite --relaxations 50 --candidates 200   # a short one
    python benchmarks/load_test.py --no-kill --max-in-flight 10

Each backend runs in its own profile, made on first use and kept: ``physgen-load-rmq``
(``scripts/postgres_profile.sh --rabbitmq``: PostgreSQL 15 and RabbitMQ 3.10, started if needed),
``physgen-load-pg`` (``scripts/postgres_profile.sh``: PostgreSQL 15, the built-in ZeroMQ broker) and
``physgen-load-sqlite`` (``verdi presto``: SQLite, ZeroMQ). None becomes the default profile. Relaxations are
never reused (``reuse_relaxations=False``), so every run does the whole work again.

The relaxation engine is the cheapest real one through the whole CalcJob path: aiida-physgen's VASP engine
(``VaspRelaxWorkChain`` → aiida-vasp's ``VaspCalculation``: upload, direct scheduler, retrieve, parse) with the
test suite's fake VASP executable (``tests/vasp/fake_vasp.py``: ASE's EMT, about a second per job), so the
engine's own cost is what is measured, not DFT.

Reported per backend:

* wall time of the screening, processes terminated per second, relaxations per second in the relaxation phase;
* nodes stored (all kinds) and per relaxation;
* the AiiDA overhead per relaxation: CPU seconds of the daemon (workers, circus), the broker and the database
  server during the relaxation phase, divided by the relaxations (the fake executable's own CPU is not in it);
  and the mean wall time of a relaxation work chain beside the fake executable's mean elapsed time;
* the most relaxations seen in flight (must be ≤ N), and the processes lost (left non-terminal), excepted or
  failed: the test passes only with none lost, none excepted, every relaxation finished OK.

Exit status 1 when any backend lost, excepted or failed a process, or went over the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROFILES = {"rabbitmq": "physgen-load-rmq", "postgres": "physgen-load-pg", "sqlite": "physgen-load-sqlite"}
#: the column heads of the table
LABELS = {"rabbitmq": "PG+RabbitMQ", "postgres": "PG+ZeroMQ", "sqlite": "SQLite+ZeroMQ"}
TERMINAL = ("finished", "excepted", "killed")
# LoGAN on water-like molecules: short enough to train in seconds, long enough that the candidates are molecules
SETTINGS = {
    "loop": {"steps": 150, "batch_size": 8},
    "rattle_copies": 0,
    "hidden": [32, 16],
    "critic_hidden": [16],
    "descriptor": {"r_cut": 3.0, "n_max": 2, "l_max": 2, "max_neighbours": 8},
}


def ensure_profile(backend: str) -> str:
    """The profile of ``backend``, made if missing, never left as the default."""
    name = PROFILES[backend]
    if subprocess.run(["verdi", "profile", "show", name], capture_output=True).returncode == 0:
        return name
    default = subprocess.run(["verdi", "profile", "list"], capture_output=True, text=True).stdout
    previous = next((line.split()[-1] for line in default.splitlines() if line.strip().startswith("*")), None)
    if backend == "sqlite":
        # --use-zeromq: without it verdi presto takes RabbitMQ whenever one runs on the machine
        presto = ["verdi", "presto", "--use-zeromq", "--profile-name", name]
        subprocess.run(presto, check=True, stdout=subprocess.DEVNULL)
    else:
        broker = ["--rabbitmq"] if backend == "rabbitmq" else []
        script = str(ROOT / "scripts" / "postgres_profile.sh")
        subprocess.run(["bash", script, *broker, name], check=True, stdout=subprocess.DEVNULL)
    if previous:
        subprocess.run(["verdi", "profile", "set-default", previous], check=True, stdout=subprocess.DEVNULL)
    return name


def _engine_processes(profile: str, backend: str) -> list:
    """The processes whose CPU is the engine's: this profile's daemon (circus, workers) and broker, for
    PostgreSQL the database server, and for RabbitMQ its Erlang VM."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if profile in cmdline and ("daemon" in cmdline or "broker" in cmdline or "worker" in cmdline):
            found.append(proc)
        elif backend in ("postgres", "rabbitmq") and proc.info["name"] == "postgres":
            found.append(proc)
        elif backend == "rabbitmq" and proc.info["name"] == "beam.smp":
            found.append(proc)
    return found


class CpuMeter:
    """Summed user+system CPU of a changing set of processes; a process that dies keeps its last reading."""

    def __init__(self, profile: str, backend: str):
        self.profile, self.backend = profile, backend
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def sample(self, baseline: bool = False) -> None:
        import psutil

        for proc in _engine_processes(self.profile, self.backend):
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            value = times.user + times.system + times.children_user + times.children_system
            if proc.pid not in self.first:
                self.first[proc.pid] = value if baseline else 0.0
            self.last[proc.pid] = value

    def used(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def stop_daemon(client, profile: str) -> None:
    """Stop the profile's daemon; circus answers slowly on a loaded 2-core machine, so wait generously."""
    if not client.is_daemon_running:
        return
    try:
        client.stop_daemon(wait=True, timeout=120)
    except Exception:  # DaemonTimeoutException and the like: the command line retries with its own client
        subprocess.run(["verdi", "-p", profile, "daemon", "stop"], capture_output=True, timeout=300)


def _relaxations(node) -> list[tuple]:
    """(pk, process_state, ctime, mtime) of the relaxation processes (call links ``relax_*``) of the screening:
    called by its relaxation set (``physgen.relax_set``, call link ``relax``), or by the screening itself."""
    from aiida import orm

    project = ["id", "attributes.process_state", "ctime", "mtime"]
    relax = {"label": {"like": "relax_%"}}
    direct = (
        orm.QueryBuilder()
        .append(orm.WorkChainNode, filters={"id": node.pk}, tag="screening")
        .append(orm.ProcessNode, with_incoming="screening", edge_filters=relax, project=project)
    )
    through_set = (
        orm.QueryBuilder()
        .append(orm.WorkChainNode, filters={"id": node.pk}, tag="screening")
        .append(orm.WorkChainNode, with_incoming="screening", edge_filters={"label": "relax"}, tag="set")
        .append(orm.ProcessNode, with_incoming="set", edge_filters=relax, project=project)
    )
    return direct.all() + through_set.all()


def run_backend(backend: str, args) -> dict:
    """One load test on one backend (this process loads that profile)."""
    import aiida
    from aiida import orm
    from aiida.engine import submit
    from aiida.engine.daemon.client import get_daemon_client
    from ase.build import molecule

    profile = ensure_profile(backend)
    aiida.load_profile(profile, allow_switch=True)
    from aiida_physgen.broker import probe_dead_workers
    from aiida_physgen.launch import screening_builder

    sys.path.insert(0, str(ROOT / "tests" / "vasp"))
    from fixtures import fake_potcar_family, fake_vasp_code

    try:
        computer = orm.load_computer("localhost")
    except Exception:  # a PostgreSQL profile starts with no computer
        computer = orm.Computer(
            label="localhost",
            hostname="localhost",
            transport_type="core.local",
            scheduler_type="core.direct",
            workdir=str(Path.home() / ".aiida-physgen" / "work"),
        )
        computer.store()
        computer.configure()
    computer.set_minimum_job_poll_interval(0.5)
    code = fake_vasp_code(computer)
    family = fake_potcar_family(Path.home() / ".aiida-physgen" / "fake_potcars")

    builder = screening_builder(
        [molecule("H2O"), molecule("H2O2"), molecule("H2O")],
        "H2O",
        box=5.0,
        engine="vasp",
        code=code,
        relax_overrides={"potential_family": family},
        seeds=[0],
        settings=SETTINGS,
        count=args.candidates,
        n_clusters=args.relaxations,
        n_components=4,
        funnel=False,
        dos=False,
        max_concurrent_relaxations=args.max_in_flight,
        reuse_relaxations=False,
        selection_settings={"min_distance": 0.7},
    )
    client = get_daemon_client(profile)
    stop_daemon(client, profile)
    client.start_daemon(number_workers=args.workers)
    deadline = time.monotonic() + 60
    while len(client.get_worker_info().get("info", {})) < args.workers and time.monotonic() < deadline:
        time.sleep(0.5)

    nodes_before = orm.QueryBuilder().append(orm.Node).count()
    meter = CpuMeter(profile, backend)
    start = time.perf_counter()
    node = submit(builder)
    max_in_flight, killed, relax_start = 0, None, None
    probes, last_progress_state, last_progress = [], None, time.perf_counter()
    while not node.is_terminated and time.perf_counter() - start < args.timeout:
        rows = _relaxations(node)
        if rows and relax_start is None:
            relax_start = time.perf_counter()
            meter.sample(baseline=True)
        elif relax_start is not None:
            meter.sample()
        in_flight = sum(state not in TERMINAL for _, state, _, _ in rows)
        done = len(rows) - in_flight
        max_in_flight = max(max_in_flight, in_flight)
        now = time.perf_counter()
        progress = (len(rows), done, node.mtime)  # the screening's mtime moves with each of its steps
        if progress != last_progress_state:
            last_progress_state, last_progress = progress, now
        elif killed is not None and now - last_progress > args.stall:
            # aiida-core 2.9's ZeroMQ broker can keep a dead worker's tasks (aiida_physgen.broker): count and probe;
            # RabbitMQ requeues a dead consumer's tasks itself (probe_dead_workers does nothing): counted all the same
            probed = probe_dead_workers()
            probes.append(round(now - start, 1))
            print(
                f"[{backend}] nothing moved for {args.stall:.0f} s after the kill: "
                + ("probed the broker for dead workers" if probed else "stall (not a ZeroMQ broker: not probed)"),
                flush=True,
            )
            last_progress = now
        if args.kill and killed is None and done >= args.relaxations // 3:
            pid = sorted(int(p) for p in client.get_worker_info().get("info", {}))[0]
            os.kill(pid, signal.SIGKILL)
            killed = {"pid": pid, "after_s": round(time.perf_counter() - start, 1), "relaxations_done": done}
            print(
                f"[{backend}] SIGKILLed daemon worker {pid} with {done} relaxations done, {in_flight} in flight",
                flush=True,
            )
        time.sleep(0.5)
    meter.sample()
    wall = time.perf_counter() - start
    stop_daemon(client, profile)

    rows = _relaxations(node)
    relax_nodes = [orm.load_node(pk) for pk, *_ in rows]
    descendants = node.called_descendants
    lost = [d for d in [node, *descendants] if not d.is_terminated]
    excepted = [d for d in [node, *descendants] if d.is_excepted]
    failed = [r for r in relax_nodes if not r.is_finished_ok]
    elapsed = []
    for relax in relax_nodes:
        for calc in relax.called_descendants:
            misc = (
                calc.outputs.misc.get_dict()
                if calc.process_label == "VaspCalculation" and "misc" in calc.outputs
                else {}
            )
            if "run_stats" in misc and "elapsed_time" in misc["run_stats"]:
                elapsed.append(misc["run_stats"]["elapsed_time"])
    relax_wall = (
        (max(r.mtime for r in relax_nodes) - min(r.ctime for r in relax_nodes)).total_seconds() if relax_nodes else 0
    )
    n = len(relax_nodes)
    return {
        "backend": backend,
        "profile": profile,
        "exit_status": node.exit_status,
        "candidates": node.outputs.generation.candidates.count if "generation" in node.outputs else None,
        "relaxations": n,
        "finished_ok": n - len(failed),
        "wall_s": round(wall, 1),
        "processes": len(descendants) + 1,
        "processes_per_s": round((len(descendants) + 1) / wall, 2),
        "relax_phase_s": round(relax_wall, 1),
        "relaxations_per_s": round(n / relax_wall, 3) if relax_wall else None,
        "nodes_stored": orm.QueryBuilder().append(orm.Node).count() - nodes_before,
        "engine_cpu_s_per_relaxation": round(meter.used() / n, 3) if n else None,
        "mean_relaxation_wall_s": round(sum((r.mtime - r.ctime).total_seconds() for r in relax_nodes) / n, 2)
        if n
        else None,
        "mean_executable_s": round(sum(elapsed) / len(elapsed), 2) if elapsed else None,
        "max_in_flight": max_in_flight,
        "limit": args.max_in_flight,
        "killed_worker": killed,
        "broker_probes_at_s": probes,
        "lost": len(lost),
        "excepted": len(excepted),
        "failed": len(failed),
        "screening_pk": node.pk,
    }


TABLE = [
    ("relaxations (finished OK)", lambda r: f"{r['relaxations']} ({r['finished_ok']})"),
    ("candidates", lambda r: r["candidates"]),
    ("wall time (s)", lambda r: r["wall_s"]),
    ("processes", lambda r: r["processes"]),
    ("processes / s", lambda r: r["processes_per_s"]),
    ("relaxation phase (s)", lambda r: r["relax_phase_s"]),
    ("relaxations / s", lambda r: r["relaxations_per_s"]),
    ("nodes stored", lambda r: r["nodes_stored"]),
    ("nodes per relaxation", lambda r: round(r["nodes_stored"] / max(r["relaxations"], 1), 1)),
    ("engine CPU s per relaxation", lambda r: r["engine_cpu_s_per_relaxation"]),
    ("mean relaxation wall (s)", lambda r: r["mean_relaxation_wall_s"]),
    ("mean fake-VASP run (s)", lambda r: r["mean_executable_s"]),
    ("most in flight (limit)", lambda r: f"{r['max_in_flight']} ({r['limit']})"),
    ("worker killed after (s)", lambda r: (r["killed_worker"] or {}).get("after_s", "-")),
    ("broker probes (stalls)", lambda r: len(r.get("broker_probes_at_s", []))),
    ("lost / excepted / failed", lambda r: f"{r['lost']} / {r['excepted']} / {r['failed']}"),
]


def print_table(results: list[dict]) -> None:
    width = max(len(name) for name, _ in TABLE)
    print(f"| {'':{width}} | " + " | ".join(f"{LABELS[r['backend']]:>13}" for r in results) + " |")
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * 15 for _ in results) + "|")
    for name, value in TABLE:
        print(f"| {name:{width}} | " + " | ".join(f"{str(value(r)):>13}" for r in results) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        default="rabbitmq,postgres,sqlite",
        help="comma-separated: rabbitmq (PostgreSQL + RabbitMQ), postgres (PostgreSQL + ZeroMQ), "
        "sqlite (SQLite + ZeroMQ)",
    )
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--relaxations", type=int, default=200)
    parser.add_argument("--max-in-flight", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument(
        "--stall",
        type=float,
        default=60,
        help="after the kill, probe the broker for dead workers when nothing moved for this "
        "many seconds (an aiida-core 2.9 race; counted in the table)",
    )
    parser.add_argument("--no-kill", dest="kill", action="store_false", help="do not SIGKILL a worker mid-run")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one backend in this process
    args = parser.parse_args(argv)
    if args.candidates < args.relaxations or args.relaxations < 1 or args.max_in_flight < 1 or args.workers < 1:
        parser.error("expected candidates >= relaxations >= 1, max-in-flight >= 1, workers >= 1")
    if args.one:
        print("RESULT " + json.dumps(run_backend(args.one, args)), flush=True)
        return 0
    results = []
    for backend in args.backends.split(","):
        if backend not in PROFILES:
            parser.error(f"--backends: unknown {backend!r}; expected rabbitmq, postgres or sqlite")
        # one process per backend: a Python process holds one AiiDA profile's storage
        child = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--one", backend]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(child, capture_output=True, text=True, env=env)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        for line in proc.stdout.splitlines():
            if not line.startswith("RESULT "):
                print(line)
        if proc.returncode or not lines:
            print(proc.stderr[-3000:], file=sys.stderr)
            print(f"{backend}: the load test did not complete (exit {proc.returncode})", file=sys.stderr)
            return 1
        results.append(json.loads(lines[-1][len("RESULT ") :]))
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    bad = [
        r["backend"]
        for r in results
        if r["lost"] or r["excepted"] or r["failed"] or r["max_in_flight"] > r["limit"] or r["exit_status"] != 0
    ]
    if bad:
        print(f"FAILED on {', '.join(bad)}: processes lost, excepted or failed, or the limit exceeded", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
