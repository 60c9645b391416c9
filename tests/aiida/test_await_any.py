"""``AwaitAnyMixin``: a work chain step waits for the FIRST of several child processes to end.

Real CalcJobs (``core.arithmetic.add`` through bash on localhost) that sleep for different times; the chain
records, when it resumes, which of them had terminated."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import ToContext, WorkChain, run_get_node, while_
from aiida.engine.runners import Runner

from aiida_physgen.workflows.await_any import ANY_PREFIX, AwaitAnyMixin, wait_for_any


class _SleepersWorkChain(AwaitAnyMixin, WorkChain):
    """Submit one job per entry of ``sleeps`` (seconds), then wait for any one again and again until all have
    ended; the extra ``rounds`` lists, per resumption, the jobs (by their sleep) that had terminated."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("code", valid_type=orm.AbstractCode)
        spec.input("sleeps", valid_type=orm.List)
        spec.outline(cls.submit_all, while_(cls.some_running)(cls.wait_for_one))

    def submit_all(self):
        self.ctx.jobs = {}
        for seconds in self.inputs.sleeps.get_list():
            builder = self.inputs.code.get_builder()
            builder.x, builder.y = orm.Int(seconds), orm.Int(1)
            builder.metadata.options.prepend_text = f"sleep {seconds}"
            builder.metadata.options.resources = {"num_machines": 1}
            self.ctx.jobs[str(seconds)] = self.submit(builder).pk
        self.ctx.rounds = []

    def some_running(self):
        return any(not orm.load_node(pk).is_terminated for pk in self.ctx.jobs.values())

    def wait_for_one(self):
        if self.ctx.get("waited"):
            ended = sorted(int(s) for s, pk in self.ctx.jobs.items() if orm.load_node(pk).is_terminated)
            self.ctx.rounds.append(ended)
            self.node.base.extras.set("rounds", self.ctx.rounds)
            assert all(self.ctx[key].pk in self.ctx.jobs.values() for key in self.ctx if key.startswith(ANY_PREFIX))
            for key in [key for key in self.ctx if key.startswith(ANY_PREFIX)]:
                del self.ctx[key]
        running = [orm.load_node(pk) for pk in self.ctx.jobs.values() if not orm.load_node(pk).is_terminated]
        if not running:
            return None
        self.ctx.waited = True
        return ToContext(**wait_for_any(running))


@pytest.fixture
def bash_add(aiida_code_installed):
    return aiida_code_installed(
        label="bash-add", default_calc_job_plugin="core.arithmetic.add", filepath_executable="/bin/bash"
    )


@pytest.mark.slow
def test_the_chain_resumes_when_the_first_job_ends_not_the_last(bash_add, monkeypatch):
    registered = []
    original = Runner.call_on_process_finish

    def counting(self, pk, callback):
        registered.append(pk)
        return original(self, pk, callback)

    monkeypatch.setattr(Runner, "call_on_process_finish", counting)
    _, node = run_get_node(_SleepersWorkChain, code=bash_add, sleeps=orm.List([12, 0, 5]))
    assert node.is_finished_ok, node.exit_message
    rounds = node.base.extras.get("rounds")
    # resumed as each job ended, shortest first: the 0 s job, then the 5 s one while the 12 s job still ran
    # (the last wait, on the 12 s job alone, ends the loop)
    assert rounds == [[0], [0, 5]], rounds
    assert all(c.is_finished_ok for c in node.called)
    # one termination callback per job, however often the chain waited on it
    jobs = [c.pk for c in node.called]
    assert sorted(pk for pk in registered if pk in jobs) == sorted(jobs), registered


def test_wait_for_any_needs_a_process():
    with pytest.raises(ValueError, match="expected at least one process"):
        wait_for_any([])
