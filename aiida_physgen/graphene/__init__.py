"""The science of one domain, porous graphene (RUGAN generator, EDNN surrogate), without AiiDA's processes.

:mod:`.reference_energy` labels sheets with a carbon potential (Tersoff, run by LAMMPS through
:mod:`aiida_physgen.lammps`) and compares it with DFT, :mod:`.label_check` tests whether generated sheets have
the energy labels they were asked for, and :mod:`.report` prints a RUGAN run's report (from its AiiDA nodes). The calcfunctions in
:mod:`aiida_physgen.calculations.graphene` and the ``aiida-physgen graphene`` commands use them.
"""
