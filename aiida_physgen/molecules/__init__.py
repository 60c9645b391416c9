"""The molecules domain: validity and assessors for LoGAN molecules, in plain Python without AiiDA.

:mod:`.validity` holds the ``molecule`` validity check (graph sanity of generated, unrelaxed molecules:
no atoms on top of each other, one bonded fragment, optionally RDKit bond orders) and :mod:`.assessors`
the ``discovery`` assessor (distinct valid isomers found among the basins against a known list, at the
cheap tier and after DFT). Both are found by the screening through their entry points
(``aiida_physgen.validity`` and ``aiida_physgen.assessors``); the bond graph and the discovery counts
they read are :mod:`aiida_physgen.screening.basins` and :mod:`aiida_physgen.screening.metrics`.
"""
