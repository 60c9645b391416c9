"""The science of one domain, porous graphene (RUGAN generator, EDNN surrogate), without AiiDA's processes.

:mod:`.reference_energy` labels sheets with a carbon potential (Tersoff, run by LAMMPS through
:mod:`aiida_physgen.lammps`) and compares it with DFT; :mod:`.surrogate` scores whole sets with the EDNN (the
screening's ``ednn`` cheap engine); :mod:`.validity` is the ``sheet`` validity check; :mod:`.label_check` tests
whether generated sheets have the energy labels they were asked for, and :mod:`.assessors` turns it into the
``label_consistency`` assessor of the screening's report. The calcfunctions in
:mod:`aiida_physgen.calculations.graphene`, the pre-step chain ``physgen.graphene``
(:mod:`aiida_physgen.workflows.graphene`) and the ``aiida-physgen`` graphene commands use them.
"""
