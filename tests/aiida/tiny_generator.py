"""A minimal generator family for tests that must not depend on a real generator implementation."""

from __future__ import annotations

import torch


class TinyGenerator(torch.nn.Module):
    """Maps a latent vector to Cartesian positions of ``len(config['symbols'])`` atoms."""

    def __init__(self, n_atoms: int, latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.n_atoms = n_atoms
        self.latent_dim = latent_dim
        self.net = torch.nn.Sequential(
            torch.nn.Linear(latent_dim, hidden),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, 3 * n_atoms),
        )

    @classmethod
    def from_config(cls, config: dict) -> "TinyGenerator":
        hyper = config["hyperparameters"]
        return cls(len(config["symbols"]), int(hyper["latent_dim"]), int(hyper["hidden"]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(-1, self.n_atoms, 3)
