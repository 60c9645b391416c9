"""The ``aiida-physgen`` command (also ``python -m aiida_physgen``).

``train``, ``generate``, ``select``, ``plot``, ``sheets``, ``label``, ``predict``, ``check-labels``,
``families``, ``protocols`` and the ``crystals`` group work on plain files and
need no AiiDA profile: they never import AiiDA (the training CalcJob runs ``train`` on computers
without a database). ``report`` and the ``data`` group (``data show``, ``data export``; also
``verdi data physgen``) read the AiiDA database and import AiiDA lazily; ``probe-broker`` talks to a
profile's broker.

Exit codes, the same for every command:

====  =====================================================================================
0     done
1     an output could not be written although it was checked (e.g. a full disk): a message,
      nothing was written; otherwise an unexpected error (a Python traceback)
2     bad input: the message names the option or field (usage errors, refused settings,
      targets, files)
3     ``train``: the training diverged (a loss became NaN or infinite, or a critic loss grew beyond
      1e8); no model was written
75    ``train``: stopped by SIGTERM / SIGINT or ``--max-seconds`` after writing its checkpoint;
      run the same command again to resume
====  =====================================================================================
"""

from __future__ import annotations

import click

from . import crystal_funnel  # noqa: F401 - registers `crystals funnel`
from ._common import EXIT_DIVERGED, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK
from .amorphous import amorphous
from .broker import probe_broker
from .crystals import crystals
from .data import data
from .files import generate, plot, select
from .graphene import check_labels, label, predict, sheets
from .info import families, protocols, report
from .train import train

__all__ = ["main", "EXIT_OK", "EXIT_INPUT", "EXIT_DIVERGED", "EXIT_INTERRUPTED"]


#: every option with a default shows it in the help ("[default: ...]"), in every command below ``main``
CONTEXT_SETTINGS = {"show_default": True}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="aiida-physgen")
def main():
    """Train generative models of atomic structures, generate and select candidates (LoGAN and friends)."""


for _command in (
    train,
    generate,
    select,
    plot,
    sheets,
    label,
    predict,
    check_labels,
    families,
    protocols,
    report,
    data,
    crystals,
    amorphous,
    probe_broker,
):
    main.add_command(_command)
