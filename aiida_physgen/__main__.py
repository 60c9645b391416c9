"""``python -m aiida_physgen ...`` runs the ``aiida-physgen`` command."""

from aiida_physgen.cli import main

if __name__ == "__main__":
    main(prog_name="aiida-physgen")
