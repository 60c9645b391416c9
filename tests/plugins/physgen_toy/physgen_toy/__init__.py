"""physgen-toy: one plug-in of every kind aiida-physgen's screening takes, written as a third party would.

Nothing in aiida_physgen names this package; it is found through the entry points of its own
``pyproject.toml`` only: the ``toy`` family (:mod:`.family`), the ``toy_compact`` validity check
(:mod:`.validity`), the ``toy_emt`` cheap engine (:mod:`.engine`) and the ``toy_energy`` assessor
(:mod:`.assessor`). ``docs/extending.md`` shows these files as the examples of each contract.
"""
