"""Tiny settings shared by the AiiDA tests: seconds of training and of GPAW, not physics.

The test modules of this folder import them (``from tiny_settings import TINY, QUICK``); pytest puts the folder
on ``sys.path``.
"""

#: LoGAN settings of a few seconds: 3 steps, small networks, a short-range descriptor
TINY = {
    "loop": {"steps": 3, "batch_size": 4},
    "rattle_copies": 0,
    "hidden": [32, 16],
    "critic_hidden": [16],
    "descriptor": {"r_cut": 3.0, "n_max": 2, "l_max": 2, "max_neighbours": 8},
}
#: smaller still, for the launch checks and bad-input tables: 2 steps, one hidden layer
TINIEST = {
    "loop": {"steps": 2, "batch_size": 4},
    "rattle_copies": 0,
    "hidden": [16],
    "critic_hidden": [8],
    "descriptor": {"r_cut": 3.0, "n_max": 2, "l_max": 2, "max_neighbours": 8},
}
#: tiny LCAO settings: seconds per relaxation of a small molecule
QUICK = {
    "gpaw": {"parameters": {"basis": "sz(dzp)", "h": 0.3, "fmax": 0.3, "max_steps": 60, "dos_npts": 101}},
    "vacuum": 2.0,
}
