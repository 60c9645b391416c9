"""Port declarations that the calculations and work chains share.

Most ports of this plug-in are either optional or carry a default of a base type; these helpers declare those two
kinds in one line each, so that a chain's ``define`` reads as the list of what it takes. Anything with a validator,
a dynamic namespace or a non-trivial default is declared with ``spec.input`` directly.
"""

from __future__ import annotations

from typing import Any

from aiida import orm

__all__ = [
    "dynamic_inputs",
    "dynamic_outputs",
    "expose_inputs_under",
    "expose_outputs_under",
    "input_with_default",
    "optional_input",
    "optional_output",
]


def optional_input(spec, name: str, valid_type, help: str) -> None:  # noqa: A002 - the port keyword
    """Declare the optional input ``name`` of type ``valid_type``."""
    spec.input(name, valid_type=valid_type, required=False, help=help)


def optional_output(spec, name: str, valid_type, help: str) -> None:  # noqa: A002 - the port keyword
    """Declare the optional output ``name`` of type ``valid_type``."""
    spec.output(name, valid_type=valid_type, required=False, help=help)


def input_with_default(spec, name: str, node_class: type[orm.Data], value: Any, help: str) -> None:  # noqa: A002
    """Declare the input ``name`` of type ``node_class`` whose default is a new ``node_class(value)`` node."""
    spec.input(name, valid_type=node_class, default=lambda: node_class(value), help=help)


def dynamic_inputs(spec, name: str, valid_type, help: str, required: bool = True) -> None:  # noqa: A002
    """Declare the input namespace ``name`` that takes any number of ``valid_type`` nodes by label."""
    spec.input_namespace(name, valid_type=valid_type, dynamic=True, required=required, help=help)


def dynamic_outputs(spec, name: str, valid_type, help: str, required: bool = True) -> None:  # noqa: A002
    """Declare the output namespace ``name`` that holds any number of ``valid_type`` nodes by label."""
    spec.output_namespace(name, valid_type=valid_type, dynamic=True, required=required, help=help)


def expose_inputs_under(spec, process_class, namespace: str, help: str, **options) -> None:  # noqa: A002
    """Expose the inputs of ``process_class`` in ``namespace`` (``options``: include or exclude)."""
    spec.expose_inputs(process_class, namespace=namespace, namespace_options={"help": help}, **options)


def expose_outputs_under(spec, process_class, namespace: str, help: str, **options) -> None:  # noqa: A002
    """Expose the outputs of ``process_class`` in ``namespace`` (``options``: include or exclude)."""
    spec.expose_outputs(process_class, namespace=namespace, namespace_options={"help": help}, **options)
