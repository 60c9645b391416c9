"""Reproduction: does a SIGKILLed daemon worker's process resume on its own with aiida-core's ZeroMQ broker?

Standalone: it needs aiida-core (2.9) only, no aiida_physgen. It makes a throw-away profile with the
built-in broker (``verdi presto --use-zeromq``, its own ``AIIDA_PATH`` in a temporary folder), starts a
daemon, and per trial:

1. submits ``core.arithmetic.add`` on a ``/bin/bash`` code of ``localhost`` whose job sleeps ``--sleep`` s
   (``metadata.options.prepend_text``), from a child process that exits at once (its broker connection
   is closed before the kill);
2. SIGKILLs the daemon worker(s) at ``--kill-at``: ``pickup`` (as soon as a worker has taken the process)
   ``job`` (once the job runs under the scheduler, i.e. the CalcJob waits for it) or ``upload`` (as soon as
   the CalcJob state is ``unstashing``: the upload is done, its ``remote_folder`` maybe not stored yet);
3. waits for circus to start the replacement(s), then up to ``--timeout`` s for the process to reach a
   terminal state, reading the SQLite file with ``sqlite3`` only: no ``verdi process list``, no
   ``verdi daemon status``, no communicator, nothing that connects to the broker;
4. if it is still not terminal: one client connects to the broker and leaves (``ZeromqBroker``
   ``get_communicator()`` + ``close()`` in a child process), and it waits again.

The broker requeues a dead worker's tasks when its ROUTER socket reports a disconnect and a ping to the
worker fails (``aiida/brokers/zeromq/server.py``, ``_handle_disconnect_event`` / ``_probe_workers``). If the
report comes before the router has dropped the dead peer, the ping "succeeds" and the task stays assigned
to the dead worker until the next client disconnects: in the table, "stuck" trials.

The last column says whether the finished CalcJob has its ``remote_folder`` output: a worker killed between
the upload (CalcJob state ``unstashing`` stored) and the next checkpoint leaves a CalcJob that finishes [0]
without it (``--kill-at upload``; aiida_physgen.workflows.restarts explains why).

    OMP_NUM_THREADS=1 python benchmarks/zeromq_worker_kill_race.py --trials 5
    OMP_NUM_THREADS=1 python benchmarks/zeromq_worker_kill_race.py --trials 5 --kill-at pickup --workers 2

With ``--workers 2`` every worker is killed at once (the one holding the process is not known without
asking the broker). ``--keep`` leaves the temporary folder (daemon and broker logs) in place.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TERMINAL = ("finished", "excepted", "killed")

SUBMIT = textwrap.dedent(
    """
    import sys
    from aiida import load_profile, orm
    from aiida.engine import submit
    load_profile(sys.argv[1])
    builder = orm.load_code(int(sys.argv[2])).get_builder()
    builder.x, builder.y = orm.Int(1), orm.Int(2)
    builder.metadata.options.prepend_text = f"sleep {sys.argv[3]}"
    builder.metadata.options.resources = {"num_machines": 1}
    print(submit(builder).pk)
    """
)

PROBE = textwrap.dedent(
    """
    import sys
    from aiida import load_profile
    from aiida.brokers import ZeromqBroker
    profile = load_profile(sys.argv[1])
    broker = ZeromqBroker(profile)
    broker.get_communicator()
    broker.close()
    """
)


def child(env, code: str, *args) -> str:
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"child process failed:\n{out.stderr}")
    return out.stdout.strip()


class Database:
    """Read a node's state straight from the profile's SQLite file."""

    def __init__(self, path: Path):
        self.path = path

    def state(self, pk: int) -> dict:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30) as connection:
            row = connection.execute(
                "SELECT json_extract(attributes, '$.process_state'), json_extract(attributes, '$.exit_status'), "
                "json_extract(attributes, '$.state'), json_extract(attributes, '$.job_id') FROM db_dbnode WHERE id=?",
                (pk,),
            ).fetchone()
        return dict(zip(("process_state", "exit_status", "calc_state", "job_id"), row or (None,) * 4))

    def has_remote_folder(self, pk: int) -> bool:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30) as connection:
            query = "SELECT count(*) FROM db_dblink WHERE input_id=? AND label='remote_folder'"
            return bool(connection.execute(query, (pk,)).fetchone()[0])


def wait_for(condition, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return None


def worker_pids(client) -> list[int]:
    return sorted(int(pid) for pid in client.get_worker_info().get("info", {}))


def trial(args, env, client, database: Database, code_pk: int) -> dict:
    before = wait_for(lambda: (lambda p: p if len(p) == args.workers else None)(worker_pids(client)), 60)
    pk = int(child(env, SUBMIT, env["AIIDA_PROFILE"], code_pk, args.sleep))
    submitted = time.monotonic()
    if args.kill_at == "pickup":
        ready = wait_for(lambda: database.state(pk)["process_state"] not in (None, "created"), 60, 0.02)
    elif args.kill_at == "upload":  # the upload is done, its remote_folder perhaps not stored yet
        ready = wait_for(lambda: database.state(pk)["calc_state"] == "unstashing", 60, 0.001)
    else:
        ready = wait_for(lambda: database.state(pk)["calc_state"] == "withscheduler", 60, 0.05)
    state = database.state(pk)
    if not ready or state["process_state"] in TERMINAL:
        return {"pk": pk, "outcome": f"not killed ({state['process_state']})"}
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    replaced = wait_for(
        lambda: (lambda p: p if len(p) == args.workers and not set(p) & set(before) else None)(worker_pids(client)), 60
    )
    row = {
        "pk": pk,
        "killed_after": killed - submitted,
        "state_at_kill": f"{state['process_state']}/{state['calc_state']}",
        "replaced_after": time.monotonic() - killed if replaced else None,
    }
    done = wait_for(lambda: database.state(pk)["process_state"] in TERMINAL, args.timeout, 0.5)
    if done:
        row.update(outcome="resumed alone", resumed_after=time.monotonic() - killed)
    else:
        child(env, PROBE, env["AIIDA_PROFILE"])
        nudged = time.monotonic()
        done = wait_for(lambda: database.state(pk)["process_state"] in TERMINAL, args.timeout, 0.5)
        row.update(
            outcome="stuck; resumed after 1 client" if done else "stuck, even after 1 client",
            resumed_after=time.monotonic() - killed if done else None,
            after_client=time.monotonic() - nudged if done else None,
        )
    final = database.state(pk)
    row["final"] = f"{final['process_state']} [{final['exit_status']}]"
    row["remote_folder"] = "yes" if database.has_remote_folder(pk) else "MISSING"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--kill-at", choices=("job", "pickup", "upload"), default="job")
    parser.add_argument("--sleep", type=float, default=15.0, help="seconds the job sleeps")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a resume on its own")
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIIDA_PATH (logs)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="zmq_race_"))
    env = {**os.environ, "AIIDA_PATH": str(root), "OMP_NUM_THREADS": "1", "AIIDA_PROFILE": "zmqrace"}
    os.environ.update(AIIDA_PATH=str(root), AIIDA_PROFILE="zmqrace")
    started = time.monotonic()
    subprocess.run(["verdi", "presto", "--use-zeromq", "-p", "zmqrace"], env=env, check=True, capture_output=True)

    import aiida
    from aiida import load_profile, orm
    from aiida.engine.daemon.client import get_daemon_client

    profile = load_profile("zmqrace")
    assert profile.process_control_backend == "core.zeromq", profile.process_control_backend
    database = Database(Path(profile.storage_config["filepath"]) / "database.sqlite")
    computer = orm.load_computer("localhost")
    code = orm.InstalledCode(
        label="bash", computer=computer, filepath_executable="/bin/bash", default_calc_job_plugin="core.arithmetic.add"
    ).store()
    client = get_daemon_client()
    rows = []
    try:
        client.start_daemon(number_workers=args.workers)
        for number in range(args.trials):
            rows.append(trial(args, env, client, database, code.pk))
            print(f"trial {number + 1}: {rows[-1]}", flush=True)
    finally:
        try:
            client.stop_daemon(wait=True)
        except Exception as error:  # noqa: BLE001
            print(f"(stopping the daemon: {error})")
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    def seconds(value):
        return "" if value is None else f"{value:.1f}"

    print()
    print(
        f"aiida-core {aiida.__version__}, core.zeromq + SQLite, {args.workers} worker(s), kill at '{args.kill_at}', "
        f"job sleeps {args.sleep:g} s, wait {args.timeout:g} s before one client connects "
        f"({time.monotonic() - started:.0f} s in all)"
    )
    header = [
        "trial",
        "pk",
        "state at kill",
        "kill after s",
        "replaced s",
        "outcome",
        "resumed after s",
        "final",
        "remote_folder",
    ]
    table = [
        [
            str(i + 1),
            str(r["pk"]),
            r.get("state_at_kill", ""),
            seconds(r.get("killed_after")),
            seconds(r.get("replaced_after")),
            r["outcome"] + (f" ({r['after_client']:.1f} s after it)" if r.get("after_client") is not None else ""),
            seconds(r.get("resumed_after")),
            r.get("final", ""),
            r.get("remote_folder", ""),
        ]
        for i, r in enumerate(rows)
    ]
    widths = [max(len(h), *(len(t[c]) for t in table)) if table else len(h) for c, h in enumerate(header)]
    for line in [header, ["-" * w for w in widths], *table]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)))
    killed = [r for r in rows if "killed_after" in r]
    alone = sum(r["outcome"] == "resumed alone" for r in killed)
    stuck = sum(r["outcome"].startswith("stuck") for r in killed)
    rescued = sum(r["outcome"] == "stuck; resumed after 1 client" for r in killed)
    print(
        f"\nkilled {len(killed)} of {len(rows)}: resumed on their own {alone}, stuck {stuck} "
        f"(of which resumed after one client connected and left: {rescued})"
    )


if __name__ == "__main__":
    main()
