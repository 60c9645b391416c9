"""Layers that hold ``K`` independent models side by side, so an ensemble trains in one pass.

Each member's weights are separate leaf tensors (so every member can sit in its own optimiser
parameter group with its own learning rate, and can be cut out as a stand-alone model); the
forward pass runs one matrix product per member (see :meth:`EnsembleLinear.forward` for why not
one batched product) inside a single module. :meth:`EnsembleMLP.select` gives a view of some
members that holds the same parameter objects: a trainer runs each member through a one-member view
so that it computes exactly what it would alone.

:class:`MemberNets` holds ``K`` networks of any architecture (convolutional, recurrent...) the same way,
one per member, each initialised from the member's own stream (:func:`seeded`), with the same
one-member views and stand-alone copies.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

__all__ = [
    "EnsembleLinear",
    "EnsembleMLP",
    "MemberNets",
    "Stream",
    "member_seed",
    "torch_seeded",
    "seeded",
    "eval_mode",
]

T = TypeVar("T")


class Stream(enum.IntEnum):
    """The random streams of one ensemble member. Each purpose draws from its own stream, seeded from
    the member's seed alone, so a member trains the same whether it is alone or one of many, and
    changing how one stream is used never shifts another."""

    GENERATOR = 0  # initial generator weights
    CRITIC = 1  # initial critic weights
    DATA = 2  # data augmentation (LoGAN's rattled copies)
    LOOP = 3  # the training loop: real-sample draws, latent draws, penalty interpolation
    SAMPLE = 4  # latent draws when generating


def member_seed(seed: int, stream: int) -> int:
    """A reproducible seed for one purpose (``stream``) of one member, independent of the ensemble."""
    return int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, np.uint64)[0] % (2**62))


@contextlib.contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """Torch's global generator seeded with ``seed`` inside the block and restored after it: what a member
    builds (initial weights) or draws (dropout masks) there comes from its own stream, the global one untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def seeded(seed: int, build: Callable[[], T]) -> T:
    """``build()`` inside :func:`torch_seeded` ``(seed)``."""
    with torch_seeded(seed):
        return build()


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block (no dropout, batch norm on its running statistics), back in
    the mode it had after it."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def attributes(obj: Any, names: Sequence[str]) -> dict[str, Any]:
    """``{name: obj.name}`` for every name: a module's ``architecture()`` from the constructor arguments it keeps."""
    return {name: getattr(obj, name) for name in names}


class EnsembleLinear(nn.Module):
    """``K`` linear maps ``(K, B, in) -> (K, B, out)``, initialised like ``nn.Linear`` per member."""

    def __init__(self, in_features: int, out_features: int, generators: Sequence[torch.Generator]):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(in_features, out_features).uniform_(-bound, bound, generator=g))
            for g in generators
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.empty(out_features).uniform_(-bound, bound, generator=g)) for g in generators
        )

    @property
    def n_models(self) -> int:
        return len(self.weights)

    def select(self, members: Sequence[int]) -> EnsembleLinear:
        """The ``members`` of this layer as a layer of their own that holds the *same* parameter
        objects (no copy): training the selection trains this layer."""
        view = EnsembleLinear.__new__(EnsembleLinear)
        nn.Module.__init__(view)
        view.in_features, view.out_features = self.in_features, self.out_features
        view.weights = nn.ParameterList([self.weights[k] for k in members])
        view.biases = nn.ParameterList([self.biases[k] for k in members])
        view.train(self.training)
        return view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one matrix product per member rather than one batched product: BLAS picks its kernel (and
        # so its summation order) from the batch shape, e.g. gemv for a single member with one output.
        # Even so, a member's rows inside a stacked (K, B, in) tensor start at an offset, and MKL's small
        # GEMM kernels round differently on operands that are not 16-byte aligned (measured: the
        # gradient g @ W^T of a (3, 8) slice at an odd offset differs in the last bit); trainers that
        # need a member to train bit for bit as it does alone therefore run it through a one-member
        # view (:meth:`select`), where every tensor is an allocation of its own
        if len(self.weights) == 1:
            return torch.addmm(self.biases[0], x[0], self.weights[0]).unsqueeze(0)
        return torch.stack([torch.addmm(b, h, w) for h, w, b in zip(x, self.weights, self.biases)])


class EnsembleMLP(nn.Module):
    """``K`` multilayer perceptrons with leaky-ReLU hidden layers and a linear output layer."""

    def __init__(
        self,
        sizes: Sequence[int],
        seeds: Sequence[int],
        negative_slope: float = 0.2,
        dropout: float = 0.0,
    ):
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected input and output sizes at least, got {list(sizes)}")
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.sizes = list(sizes)
        self.negative_slope = negative_slope
        self.layers = nn.ModuleList(
            EnsembleLinear(n_in, n_out, generators) for n_in, n_out in zip(sizes[:-1], sizes[1:])
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    @property
    def n_models(self) -> int:
        return self.layers[0].n_models

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``(K, ..., in)``; the middle axes are flattened for the matmul."""
        k, *middle, n_in = x.shape
        last = len(self.layers) - 1
        if k == 1 and self.n_models == 1:  # one member: plain 2-D products, no per-layer stacking
            h = x.reshape(-1, n_in)
            for i, layer in enumerate(self.layers):
                h = torch.addmm(layer.biases[0], h, layer.weights[0])
                if i < last:
                    h = nn.functional.leaky_relu(h, self.negative_slope)
                    if self.dropout is not None:
                        h = self.dropout(h)
            return h.reshape(k, *middle, h.shape[-1])
        h = x.reshape(k, -1, n_in)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last:
                h = nn.functional.leaky_relu(h, self.negative_slope)
                if self.dropout is not None:
                    h = self.dropout(h)
        return h.reshape(k, *middle, h.shape[-1])

    def input_gradient(self, x: torch.Tensor) -> torch.Tensor:
        """``d(sum of outputs)/dx`` for an MLP with one output, shape of ``x`` ``(K, ..., in)``, as a graph
        differentiable with respect to the parameters (what a gradient penalty needs).

        The value of ``torch.autograd.grad(self(x).sum(), x, create_graph=True)``, for less work: the
        forward pass runs without a graph, since only the sign pattern of each leaky ReLU's input
        enters the gradient (its slope is piecewise constant). Through autograd, the penalty's
        backward would push zeros through every matrix product of that forward pass again, about a
        sixth of the arithmetic of a WGAN-GP critic update.
        """
        if self.sizes[-1] != 1:
            raise ValueError(f"input_gradient: needs one output per sample, this MLP has {self.sizes[-1]}")
        if self.dropout is not None and self.training:
            raise ValueError("input_gradient: dropout masks are random; use autograd on forward() instead")
        k, *middle, n_in = x.shape
        rows = x.reshape(k, -1, n_in)
        members = []
        for m in range(k):
            with torch.no_grad():
                pre, h = [], rows[m]
                for layer in self.layers[:-1]:
                    pre.append(torch.addmm(layer.biases[m], h, layer.weights[m]))
                    h = nn.functional.leaky_relu(pre[-1], self.negative_slope)
            g = self.layers[-1].weights[m].t().expand(h.shape[0], -1)
            for layer, before in zip(reversed(self.layers[:-1]), reversed(pre)):
                g = torch.ops.aten.leaky_relu_backward(g, before, self.negative_slope, False)
                g = g @ layer.weights[m].t()
            members.append(g)
        grad = members[0].unsqueeze(0) if k == 1 else torch.stack(members)
        return grad.reshape(x.shape)

    def select(self, members: Sequence[int]) -> EnsembleMLP:
        """The ``members`` as an ensemble of their own sharing this one's parameter objects (no copy)."""
        view = EnsembleMLP.__new__(EnsembleMLP)
        nn.Module.__init__(view)
        view.sizes = list(self.sizes)
        view.negative_slope = self.negative_slope
        view.layers = nn.ModuleList(layer.select(members) for layer in self.layers)
        view.dropout = nn.Dropout(self.dropout.p) if self.dropout is not None else None
        view.train(self.training)
        return view

    def member_parameters(self) -> list[list[nn.Parameter]]:
        return [[p for layer in self.layers for p in (layer.weights[k], layer.biases[k])] for k in range(self.n_models)]

    def copy_member_into(self, k: int, other: EnsembleMLP) -> None:
        """Copy member ``k`` of this ensemble into the single-member ``other``."""
        with torch.no_grad():
            for mine, theirs in zip(self.layers, other.layers):
                theirs.weights[0].copy_(mine.weights[k])
                theirs.biases[0].copy_(mine.biases[k])


class MemberNets(nn.Module):
    """``K`` networks side by side in :attr:`nets`, one per ensemble member, each built by ``build()`` from the
    member's own ``stream`` (:func:`seeded`); one-member views (:meth:`member_view`, for training a member
    alone) and stand-alone copies (:meth:`member`, a trained model).

    A subclass keeps its hyper-parameters as plain attributes (views and copies share them) and implements
    ``member_forward(k, *inputs)``, member ``k`` on one member's inputs; :meth:`forward` stacks the members.
    """

    def __init__(self, seeds: Sequence[int], stream: Stream, build: Callable[[], nn.Module]):
        super().__init__()
        self.seeds = [int(s) for s in seeds]
        self.nets = nn.ModuleList(seeded(member_seed(s, stream), build) for s in self.seeds)

    @property
    def n_models(self) -> int:
        return len(self.nets)

    def member_forward(self, k: int, *inputs: torch.Tensor) -> torch.Tensor:
        """Member ``k`` on one member's inputs (each ``(B, ...)``): what a subclass implements."""
        raise NotImplementedError(f"{type(self).__name__} does not implement member_forward(k, *inputs)")

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Every member on its own inputs: each input ``(K, B, ...)``, the output ``(K, B, ...)``."""
        if len(inputs[0]) != self.n_models:
            raise ValueError(f"inputs: {len(inputs[0])} members of input for {self.n_models} networks")
        if self.n_models == 1:
            return self.member_forward(0, *(x[0] for x in inputs)).unsqueeze(0)
        return torch.stack([self.member_forward(k, *(x[k] for x in inputs)) for k in range(self.n_models)])

    def member_parameters(self) -> list[list[nn.Parameter]]:
        """The parameters of every member (one optimiser group each)."""
        return [list(net.parameters()) for net in self.nets]

    def _one(self, net: nn.Module, k: int):
        single = copy.copy(self)  # shares the hyper-parameters...
        for table in ("_modules", "_parameters", "_buffers"):  # ...but not the module's own tables
            setattr(single, table, dict(getattr(self, table)))
        single.nets = nn.ModuleList([net])
        single.seeds = [self.seeds[k]]
        return single

    def member_view(self, k: int):
        """Member ``k`` as a one-member ensemble holding member ``k``'s own network (a view, for training)."""
        return self._one(self.nets[k], k).train(self.training)

    def member(self, k: int):
        """Member ``k`` as an independent one-member copy on the CPU, in eval mode."""
        return self._one(copy.deepcopy(self.nets[k]).cpu(), k).eval()
