"""The generic screening steps without AiiDA's processes: what every family's candidates go through.

:mod:`.selection` picks representatives (descriptors, PCA, k-means), :mod:`.cheap_relax` relaxes them at the
cheap tier (GFN2-xTB, CHGNet), :mod:`.funnel` chooses what goes to DFT, :mod:`.basins` groups relaxed structures
into distinct minima, :mod:`.metrics` scores a run (validity, uniqueness, novelty) and :mod:`.report` prints a
screening's report (the one module that reads AiiDA nodes). The calcfunctions in :mod:`aiida_physgen.calculations`
wrap these steps for the work chains; nothing here runs a process, and nothing here knows one domain in particular.
"""
