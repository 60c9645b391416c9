"""Wait in a work chain step until ANY ONE of several child processes has terminated.

aiida-core's ``ToContext`` resumes a work chain once every process it was given has terminated; it has no
"first of these". A throttled screening needs that: with N relaxations in flight, the next one should be
submitted as soon as any of them ends, not when the oldest does (a slot then sits idle while the oldest,
slow job runs). :class:`AwaitAnyMixin` adds it::

    class MyWorkChain(AwaitAnyMixin, WorkChain):
        def step(self):
            ...
            return ToContext(**wait_for_any(running_nodes))   # resumes when the first of them ends

What it does: awaitables whose context key starts with :data:`ANY_PREFIX` form one group; when one of its
processes terminates, every awaitable of the group is resolved (each key then holds its node, finished or
not) and the chain resumes. Each process is watched by one callback for the life of the work chain instance,
however many times the chain waits on it (otherwise every round of a long throttled screening would add a
broadcast subscriber and a polling loop for every process still in flight). Nothing new is persisted: the
group is the awaitables themselves, which aiida-core checkpoints, so a chain reloaded by another daemon worker
waits on the same group.

This overrides two internal methods of aiida-core's ``WorkChain`` (``_action_awaitables``, which registers
the callbacks, and the resolution of awaitables); it is checked against aiida-core 2.9 by
``tests/aiida/test_await_any.py``. Awaitables outside the group are handled exactly as aiida-core does.
"""

from __future__ import annotations

import functools
import typing as t

from aiida import orm
from plumpy.process_states import ProcessState

__all__ = ["ANY_PREFIX", "AwaitAnyMixin", "wait_for_any"]

#: context keys of the "any one of" group
ANY_PREFIX = "any_of_"


def wait_for_any(nodes: t.Iterable[orm.ProcessNode]) -> dict[str, orm.ProcessNode]:
    """The ``ToContext`` keywords that make the step wait for the first of ``nodes`` to terminate."""
    out = {f"{ANY_PREFIX}{node.pk}": node for node in nodes}
    if not out:
        raise ValueError("wait_for_any: expected at least one process to wait for")
    return out


class AwaitAnyMixin:
    """Mix into a ``WorkChain`` (before it in the bases) to give steps :func:`wait_for_any`."""

    def _physgen_watched(self) -> set[int]:
        # the PKs with a live termination callback in THIS instance; deliberately not persisted (a reloaded
        # instance has no callbacks yet, and _action_awaitables registers them again)
        return self.__dict__.setdefault("_physgen_watched_pks", set())

    def _action_awaitables(self) -> None:
        watched = self._physgen_watched()
        for awaitable in self._awaitables:
            if awaitable.key.startswith(ANY_PREFIX):
                if awaitable.pk not in watched:
                    watched.add(awaitable.pk)
                    callback = functools.partial(self.call_soon, self._physgen_any_finished, awaitable.pk)
                    self.runner.call_on_process_finish(awaitable.pk, callback)
            else:  # as aiida-core's WorkChain._action_awaitables
                callback = functools.partial(self.call_soon, self._on_awaitable_finished, awaitable)
                self.runner.call_on_process_finish(awaitable.pk, callback)

    def _physgen_any_finished(self, pk: int) -> None:
        """Process ``pk`` of the group has terminated: resolve the whole group and resume."""
        self._physgen_watched().discard(pk)
        group = [awaitable for awaitable in self._awaitables if awaitable.key.startswith(ANY_PREFIX)]
        if not any(awaitable.pk == pk for awaitable in group):
            # nothing waits on it now (it ended between two waits); a later wait on it is answered at once,
            # because it is no longer watched and the runner sees it terminated when asked again
            return
        self.logger.info("process %d of a wait-for-any group of %d has terminated", pk, len(group))
        for awaitable in group:
            self._resolve_awaitable(awaitable, orm.load_node(awaitable.pk))
        if self.state == ProcessState.WAITING and not self._awaitables:
            self.resume()
