"""Click options that several commands declare alike: the files and folders a command writes, the AiiDA profile."""

from __future__ import annotations

import click

__all__ = ["output_file_option", "output_folder_option", "profile_option"]

#: the names of the option that says where a command writes its result
OUTPUT = ("--output", "-o")


def output_file_option(*names: str, default: str | None = None, help: str | None = None):
    """A file the command writes, ``--output``/``-o`` unless ``names`` (with the parameter's name) say otherwise;
    check it with :func:`~._common.check_output_file`."""
    return click.option(*(names or OUTPUT), type=click.Path(dir_okay=False), default=default, help=help)


def output_folder_option(*names: str, default: str | None = None, help: str | None = None):
    """A folder the command creates or writes into, ``--output``/``-o`` unless ``names`` say otherwise;
    check it with :func:`~._common.check_output_dir`."""
    return click.option(*(names or OUTPUT), type=click.Path(file_okay=False), default=default, help=help)


#: ``--profile``/``-p`` of the commands that load an AiiDA profile themselves
profile_option = click.option("--profile", "-p", help="AiiDA profile (default: the default profile).")
