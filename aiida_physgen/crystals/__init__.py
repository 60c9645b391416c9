"""The science of one domain, crystals (the crystal GAN's candidates), in plain Python without AiiDA.

:mod:`.properties` holds what is specific to crystals: validity (closest pair, density, charge balance),
formation energies against elemental references, and uniqueness and novelty against the training set.
The calcfunctions in :mod:`aiida_physgen.calculations.crystals` and the ``aiida-physgen crystals`` commands use it.
"""
