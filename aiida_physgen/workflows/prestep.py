"""What a domain's pre-step chain shares: the hand-over to the one screening.

A pre-step (``physgen.graphene``, ``physgen.amorphous``) makes what the screening cannot make itself (labelled
sheets and the EDNN; a melt-quench trajectory split into training and held-out frames), then submits the one
screening with those as inputs. It exposes the screening's inputs and outputs under ``screening`` and has no DFT,
no validator of candidates and no report of its own. :class:`ScreeningPreStep` holds the parts that do not depend
on the domain: the exposed outputs and shared exit codes, the screening's inputs from its protocol, the launch
check of the screening on stand-in training data, the submission and its inspection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain

from ..ports import expose_outputs_under
from .orphans import CalcfunctionSteps, how_it_ended
from .protocols import ProtocolMixin
from .screening import ScreeningWorkChain

__all__ = ["ScreeningPreStep", "check_screening_at_launch", "plain_inputs"]

NAMESPACE = "screening"


def plain_inputs(namespace) -> dict:
    """The values of a builder (namespace) as nested dictionaries, empty namespaces left out."""
    out = {}
    for key, value in namespace.items():
        if isinstance(value, Mapping) and not isinstance(value, orm.Data):
            value = plain_inputs(value)
            if not value:
                continue
        out[key] = value
    return out


class ScreeningPreStep(CalcfunctionSteps, ProtocolMixin, WorkChain):
    """Base of a domain's pre-step chain. A subclass sets :attr:`_validator` (its launch check, also the
    inputs validator) and :attr:`_default_label`, declares its own inputs and outline, exposes the screening's
    inputs with :meth:`expose_screening_inputs`, and calls :meth:`submit_screening` from its ``screen`` step."""

    #: the chain's launch check ``(inputs, ctx=None) -> message or None``
    _validator: Callable[..., str | None]
    #: the node's label when the user gives none
    _default_label = "screening"

    @classmethod
    def define(cls, spec):
        super().define(spec)
        expose_outputs_under(
            spec, ScreeningWorkChain, NAMESPACE, "Outputs of the screening (assessments, figures, minima...)."
        )
        spec.exit_code(300, "ERROR_INVALID_INPUT", message="invalid input: {message}")
        spec.exit_code(320, "ERROR_SUB_PROCESS_FAILED", message="the {process} step failed: {message}")
        spec.exit_code(401, "ERROR_SCREENING_FAILED", message="the screening failed: {message}")

    @classmethod
    def expose_screening_inputs(cls, spec, exclude: tuple[str, ...], given: str) -> None:
        """Expose the screening's inputs under ``screening`` but ``exclude``; ``given`` says in the help what this
        chain gives the screening itself. The chain's own validator checks them (with the data it will have)."""
        spec.expose_inputs(
            ScreeningWorkChain,
            namespace=NAMESPACE,
            exclude=exclude,
            namespace_options={
                "help": f"Inputs of the screening (physgen.screening), but {given}, which this chain gives it.",
                "validator": None,
            },
        )
        spec.inputs.validator = cls._validator

    @classmethod
    def screening_inputs_from_protocol(
        cls,
        domain: str,
        training,
        protocol: str | None,
        overrides: Mapping[str, Any] | None,
        prestep_keys: tuple[str, ...],
        **kwargs,
    ) -> dict:
        """The screening's inputs from ``domain``'s protocol file, the pre-step's keys taken out, without the
        training set (``training`` stands in for what the chain will make, for the screening's builder)."""
        screening = ScreeningWorkChain.get_builder_from_protocol(
            domain,
            training,
            protocol,
            {**dict(overrides or {}), **{key: None for key in prestep_keys}},
            **kwargs,
        )
        inputs = plain_inputs(screening)
        inputs.get("generation", {}).pop("training", None)
        return inputs

    # ------------------------------------------------------------------ steps
    def check_inputs(self):
        message = type(self)._validator(self.inputs)
        if message:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        if not self.node.label:
            self.node.label = self._default_label
        return None

    def screening_inputs(self) -> AttributeDict:
        """The exposed screening inputs, as given to this chain."""
        return AttributeDict(self.exposed_inputs(ScreeningWorkChain, namespace=NAMESPACE))

    def submit_screening(self, inputs: Mapping, description: str):
        """Submit the one screening with ``inputs``; the next step is :meth:`inspect_screening`."""
        inputs = AttributeDict(inputs)
        inputs.metadata = {"call_link_label": NAMESPACE, "label": NAMESPACE, "description": description}
        node = self.submit(ScreeningWorkChain, **inputs)
        self.report(f"screening: {node.process_label}<{node.pk}>")
        return ToContext(screening=node)

    def inspect_screening(self):
        node = self.ctx.screening
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_SCREENING_FAILED.format(message=how_it_ended(node))
        return None

    def expose_screening_outputs(self) -> None:
        self.out_many(self.exposed_outputs(self.ctx.screening, ScreeningWorkChain, namespace=NAMESPACE))


def check_screening_at_launch(screening: dict, generation: dict) -> str | None:
    """Run the screening's and the generation's launch checks on the inputs the screening will get (the
    pre-step has put stand-in training data in ``generation``); messages name the ports as the pre-step has
    them (``screening.…``)."""
    from .generation import validate_generation_inputs
    from .screening import validate_screening_inputs

    screening = {**screening, "generation": generation}
    message = validate_screening_inputs(screening)
    if message:
        own = tuple(ScreeningWorkChain.spec().inputs)
        return f"screening.{message}" if message.startswith(own) else message
    message = validate_generation_inputs(generation)
    if message:
        ports = tuple(name for name in ScreeningWorkChain.spec().inputs["generation"] if name != "training")
        return f"screening.generation.{message}" if message.startswith(ports) else f"screening.generation: {message}"
    return None
