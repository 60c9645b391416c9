"""The science of one domain, amorphous silicon (RePAP generator), in plain Python without AiiDA.

:mod:`.md` runs the melt-and-quench molecular dynamics (LAMMPS, through :mod:`aiida_physgen.lammps`) that makes
the training frames, :mod:`.quality` measures structures (radial distribution, bond angles, coordination, close
contacts) and :mod:`.report` compares generated sets with held-out frames. The calcfunctions in
:mod:`aiida_physgen.calculations.amorphous` and the ``aiida-physgen amorphous`` commands use them.
"""
