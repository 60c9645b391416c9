"""The AiiDA side of the production-stack tests, run in a process of its own on the PostgreSQL + RabbitMQ profile.

The pytest process keeps its temporary SQLite profile (tests/conftest.py); this script loads the production profile
(``AIIDA_PATH`` and ``-p`` given by tests/production/conftest.py), does one thing and prints one line
``RESULT {json}`` for the test to assert on:

    python driver.py -p PROFILE setup --workdir DIR      # the localhost computer and the GPAW code
    python driver.py -p PROFILE screening [--kill] [--reader]
    python driver.py -p PROFILE reader --stop-file F    # (started by ``screening --reader``)

It reuses the reliability suite's helpers (tests/reliability: daemon_tools, tiny_inputs, test_daemon_worker_kill).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RELIABILITY = Path(__file__).resolve().parents[1] / "reliability"
sys.path.insert(0, str(RELIABILITY))

CODE = "gpaw-python@localhost"


def result(payload: dict) -> None:
    print("RESULT " + json.dumps(payload, default=str), flush=True)


def setup(args) -> dict:
    """The localhost computer (direct scheduler, no minimum poll interval) and the GPAW code, as the test fixtures
    ``aiida_computer_local`` and ``gpaw_code`` (tests/conftest.py) make them on the SQLite profile."""
    from aiida import orm

    computer = orm.Computer(
        label="localhost",
        hostname="localhost",
        workdir=args.workdir,
        transport_type="core.local",
        scheduler_type="core.direct",
    ).store()
    computer.set_minimum_job_poll_interval(0)
    computer.set_default_mpiprocs_per_machine(1)
    computer.configure()
    orm.InstalledCode(
        label="gpaw-python",
        computer=computer,
        default_calc_job_plugin="physgen.gpaw",
        filepath_executable=sys.executable,
        prepend_text="export OMP_NUM_THREADS=1",
    ).store()
    return {"code": CODE}


def gpaw_jobs_running(node, number: int):
    """The GPAW calculations below ``node`` running under the scheduler, once there are ``number`` of them."""
    jobs = [
        c
        for c in node.called_descendants
        if c.process_label == "GpawCalculation" and not c.is_terminated and c.get_job_id() is not None
    ]
    return jobs if len(jobs) >= number else None


def screening(args) -> dict:
    """The tiny screening of the reliability suite, submitted to the daemon; with ``--kill`` one daemon worker is
    SIGKILLed once its GPAW relaxations run; with ``--reader`` a second process holds a QueryBuilder
    transaction open from the end of the first relaxation job until the screening has ended."""
    from aiida import orm
    from aiida.engine import submit
    from aiida.engine.daemon.client import get_daemon_client
    from daemon_tools import describe, kill_worker, wait_terminated, wait_until, worker_pids
    from test_daemon_worker_kill import minima_summary, relaxations_under_way
    from tiny_inputs import tiny_screening

    client = get_daemon_client()
    workers = worker_pids(client)
    start = time.monotonic()
    node = submit(tiny_screening(orm.load_code(CODE)))
    reader, killed = None, None
    stop_file = Path(args.workdir) / f"stop-reader-{node.pk}"
    if args.reader:
        # from the first finished GPAW job on: the snapshot holds finished calculations and running ones
        wait_until(
            lambda: any(c.process_label == "GpawCalculation" and c.is_terminated for c in node.called_descendants),
            300,
            "the first GPAW calculation to end",
            client,
            interval=0.2,
        )
        reader = subprocess.Popen(
            [sys.executable, __file__, "-p", args.profile, "reader", "--stop-file", str(stop_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
    if args.kill:
        # mid-screening: all three relaxations under way (as the SQLite test), or at least two GPAW jobs running
        # under the scheduler when the third was quick (a loaded machine spreads their starts)
        wait_until(
            lambda: relaxations_under_way(node, 3) or gpaw_jobs_running(node, 2),
            300,
            "the GPAW relaxations of the screening to be running",
            client,
            interval=0.05,
        )
        # the two workers share the screening's processes (RabbitMQ hands the tasks out in turn): kill the first
        killed = workers[0]
        workers = kill_worker(client, killed)
        assert not node.is_terminated, "the screening finished before the worker was killed"
    wait_terminated([node], 420, client)
    wall = time.monotonic() - start
    reader_result = None
    if reader is not None:
        stop_file.touch()
        out, _ = reader.communicate(timeout=120)
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        reader_result = json.loads(lines[-1][len("RESULT ") :]) if lines else {"error": out[-2000:]}
        reader_result["exit_code"] = reader.returncode
    node = orm.load_node(node.pk)
    finished_ok = node.is_finished_ok
    return {
        "pk": node.pk,
        "finished_ok": finished_ok,
        "exit_status": node.exit_status,
        "describe": describe(node),
        "minima": minima_summary(node) if finished_ok else None,
        "n_relaxed": node.outputs.report["n_relaxed"] if finished_ok else None,
        "relaxation_chains": sum(c.process_label == "GpawBaseWorkChain" for c in node.called_descendants),
        "left_running": [
            f"{c.process_label}<{c.pk}> {c.process_state}" for c in node.called_descendants if not c.is_terminated
        ],
        "wall_s": round(wall, 1),
        "killed_worker": killed,
        "workers_after": workers,
        "broker": str(get_daemon_client().profile.process_control_backend),
        "reader": reader_result,
    }


def reader(args) -> dict:
    """Hold ONE repeatable-read transaction open, iterating QueryBuilder queries slowly (a server-side cursor left
    open between rows), until ``--stop-file`` exists; the daemon workers write meanwhile.

    Consistent data: every pass of the snapshot sees the same nodes and process states; in it every finished
    calculation has its outputs (the workers commit outputs before the finished state); after the transaction a
    fresh query sees what the workers wrote meanwhile."""
    import sqlalchemy
    from aiida import orm
    from aiida.manage import get_manager

    storage = get_manager().get_profile_storage()
    session = storage.get_session()
    # the transaction begins here, with its isolation level; storage.transaction() below nests in it (a savepoint),
    # so QueryBuilder neither commits nor ends it
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    stop_file = Path(args.stop_file)
    views, rows_read, start = [], 0, time.monotonic()
    with storage.transaction():
        while not stop_file.exists() and time.monotonic() - start < args.max_seconds:
            rows = []
            query = orm.QueryBuilder().append(
                orm.ProcessNode, project=["id", "attributes.process_state", "attributes.exit_status"]
            )
            for row in query.iterall(batch_size=2):
                rows.append(tuple(row))
                time.sleep(0.02)
            rows_read += len(rows)
            views.append((orm.QueryBuilder().append(orm.Node).count(), sorted(rows, key=str)))
            time.sleep(0.2)
        finished = {
            pk
            for (pk,) in orm.QueryBuilder()
            .append(orm.CalcJobNode, filters={"attributes.process_state": "finished"}, project="id")
            .all()
        }
        with_outputs = {
            pk
            for (pk,) in orm.QueryBuilder()
            .append(orm.CalcJobNode, tag="calc", project="id")
            .append(orm.Data, with_incoming="calc", edge_filters={"type": "create"})
            .distinct()
            .all()
        }
        held = time.monotonic() - start
        # PostgreSQL's own word that this was one transaction all along
        transaction_age = session.execute(
            sqlalchemy.text(
                "SELECT EXTRACT(EPOCH FROM clock_timestamp() - xact_start) FROM pg_stat_activity "
                "WHERE pid = pg_backend_pid()"
            )
        ).scalar()
    session.rollback()
    session.close()
    nodes_after = orm.QueryBuilder().append(orm.Node).count()
    after = orm.QueryBuilder().append(
        orm.ProcessNode, project=["id", "attributes.process_state", "attributes.exit_status"]
    )
    snapshot_rows = set(views[0][1]) if views else set()
    return {
        "passes": len(views),
        "distinct_views": len({json.dumps(view, default=str) for view in views}),
        "snapshot_nodes": views[0][0] if views else None,
        "snapshot_processes": len(views[0][1]) if views else None,
        "rows_read": rows_read,
        "held_s": round(held, 1),
        "transaction_age_s": round(float(transaction_age), 1),
        "finished_calcjobs_in_snapshot": len(finished),
        "finished_without_outputs": sorted(finished - with_outputs),
        "nodes_after": nodes_after,
        "processes_after": orm.QueryBuilder().append(orm.ProcessNode).count(),
        # processes that are new or changed state (or exit status) since the snapshot: written meanwhile
        "processes_changed_after": sum(1 for row in after.all() if tuple(row) not in snapshot_rows),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--profile", required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    p_setup = commands.add_parser("setup")
    p_setup.add_argument("--workdir", required=True)
    p_screening = commands.add_parser("screening")
    p_screening.add_argument("--kill", action="store_true")
    p_screening.add_argument("--reader", action="store_true")
    p_screening.add_argument("--workdir", default="/tmp")
    p_reader = commands.add_parser("reader")
    p_reader.add_argument("--stop-file", required=True)
    p_reader.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args(argv)

    import aiida

    aiida.load_profile(args.profile)
    result({"setup": setup, "screening": screening, "reader": reader}[args.command](args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
