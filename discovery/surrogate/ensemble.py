"""A deep ensemble of heteroscedastic MLPs, trained together as stacked weights.

All ``M`` members live in one module: layer weights are stacked along a leading member axis, the
first layer is a single GEMM ``(n, d) @ (d, M·h)`` shared by all members (they see the same
inputs), the later layers are batched matmuls. Each member has its own initialization and its
own bootstrap (random row weights in the loss; Exponential(1) by default, the Bayesian
bootstrap), and predicts a Gaussian (mean, variance) per target. The ensemble prediction is the
mixture: mean of the member means, total variance = mean member variance + variance of the member
means.

Inputs are standardized. By default (``input_encoding="mixed"``) half the members take them as they
are and the other half take their piecewise-linear encoding over up to 8 bins (Gorishniy, Rubachev
and Babenko, NeurIPS 2022): a feature becomes up to 8 numbers, each the fraction of one bin the
value has passed, so the first layer sees on which side of a split a value lies, as a tree does,
and the MLP stays differentiable in its inputs. The bins' edges are the splits of a small
regression tree from the feature to the target (target-aware bins), so they fall where the target
changes (or, with ``bin_edges="quantile"``, the quantiles of the training values). The two halves
are two stacks of weights in one network; they err differently, so the mixture beats either. The
encoded members' wide first layer is one weight matrix shared by all of them, computed once per
row; each member scales its outputs by its own random signs and adds its own bias (the first-layer
adapter of BatchEnsemble, Wen et al., ICLR 2020), and every later layer is the member's own.
``"standard"`` and ``"piecewise_linear"`` give every member one kind. Indicator inputs such as the
fidelity also reach each member's mean through a linear term of their own (``additive_prefixes``),
so an offset between fidelities is learned from few rows.

Training minimizes the beta-NLL of Seitzer et al. (ICLR 2022, beta = 0.5), which keeps the mean
fit from being starved by the variance head, under a cosine learning-rate schedule. Early
stopping watches held-out ``battery_id`` groups (fine-tuning keeps the validation groups of the
model it starts from): by default the validation MAE of the ensemble mean, and the weights of its
best epoch are kept. A single scale per target then recalibrates the predicted standard
deviation so that 95 % of validation residuals fall inside ±1.96 σ (the split-conformal
quantile).
"""

from __future__ import annotations

__all__ = ["ENCODING_PRESETS", "NETWORK_SHAPE", "DeepEnsemble", "EnsembleConfig", "Prediction"]

import heapq
import io
import itertools
import json
import math
import pickle
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from discovery.data.splits import group_split
from discovery.errors import FeatureMismatchError, ModelFileError

_FORMAT = "discovery.deep-ensemble"
_FORMAT_VERSION = 1
_Z95 = 1.959963984540054
_MIN_VAR = 1e-6
#: Training encodes the inputs of at most this many rows once, up front (about 260 MB for the
#: shared data's 1,261 live encoded columns); larger tables are encoded batch by batch.
_ENCODE_ONCE_ROWS = 50_000


_STOP_CRITERIA = ("ensemble_mae", "mse", "nll")
_ENCODINGS = ("mixed", "piecewise_linear", "standard")
_BIN_EDGES = ("target", "quantile")
#: Fewest training rows in a leaf of the trees that place target-aware bin edges (fewer for
#: tables of under 16 rows per bin).
_TREE_LEAF_ROWS = 32
#: The :class:`EnsembleConfig` settings of each named input encoding (``discover train
#: --encoding``): the piecewise-linear one with its shared, wider first layer.
ENCODING_PRESETS: dict[str, dict[str, Any]] = {
    "standard": {"input_encoding": "standard"},
    "mixed": {"input_encoding": "mixed"},
    "piecewise_linear": {
        "input_encoding": "piecewise_linear",
        "shared_first_layer": True,
        "hidden": (256, 96, 96),
    },
}
#: Config fields that shape the network's weights (a fine-tuned model must share them).
NETWORK_SHAPE = (
    "members",
    "hidden",
    "activation",
    "input_encoding",
    "encoding_bins",
    "shared_first_layer",
    "encoded_first_width",
    "additive_prefixes",
)


@dataclass(frozen=True)
class EnsembleConfig:
    """Hyper-parameters of a :class:`DeepEnsemble`.

    Attributes:
        members: number of ensemble members M.
        hidden: widths of the hidden layers (SiLU activations).
        max_epochs: length of the cosine learning-rate schedule and upper bound on epochs.
        patience: epochs without validation improvement before training stops.
        batch_size: rows per optimizer step (shared by all members).
        learning_rate: initial AdamW learning rate, annealed to 0 over ``max_epochs`` (cosine).
        weight_decay: AdamW decoupled weight decay.
        beta_nll: exponent of the beta-NLL loss (0 = plain Gaussian NLL).
        val_fraction: fraction of rows (whole ``battery_id`` groups) held out for early stopping
            and recalibration.
        dropout: dropout probability on hidden activations during training.
        activation: hidden-layer nonlinearity, ``"silu"`` or ``"relu"``.
        input_encoding: ``"mixed"`` (the default): the first ``ceil(members / 2)`` members
            take the standardized features through ``hidden``; the others take their
            piecewise-linear encoding through a first layer of ``encoded_first_width`` units
            that they share (as ``shared_first_layer``) and then ``hidden[1:]``. The two kinds
            err differently, so their mixture is more accurate than either (docs/surrogate.md);
            with more than one member it needs ``stop_on="ensemble_mae"``, and one member is a
            standard one. ``"standard"``: every member on the standardized features.
            ``"piecewise_linear"``: every member on the encoding, in which each standardized
            feature becomes up to ``encoding_bins`` numbers, its piecewise-linear encoding over
            bins placed as ``bin_edges`` says.
        encoding_bins: bins per feature of the piecewise-linear encoding (at most).
        bin_edges: where the encoding's bins of a feature begin and end. ``"target"`` (the
            default): at the split points of a regression tree with at most ``encoding_bins``
            leaves grown from that feature alone to the training rows' standardized targets
            (Gorishniy et al.'s target-aware bins), so the bins are narrow where the target
            changes with the feature; more accurate on the shared data than ``"quantile"``: at
            the quantiles of the training values, equal edges merged (docs/surrogate.md).
        encoded_first_width: units of the encoded members' shared first layer with
            ``input_encoding="mixed"`` (unused otherwise).
        shared_first_layer: one first-layer weight matrix for all members (computed once per
            row), with a member-wise ±1 scale of its outputs and member-wise biases; needs
            ``stop_on="ensemble_mae"`` (shared weights keep the epoch all members keep). Meant
            for the wide piecewise-linear input, with a wide first layer such as
            ``hidden=(256, 96, 96)``.
        stop_on: validation criterion of early stopping. ``"ensemble_mae"`` (the default): the
            mean absolute error of the mixture mean, so every member keeps the weights of the
            epoch at which the ensemble did best. ``"mse"`` (each member's own mean squared
            error, every member stopping on its own) or ``"nll"`` (each member's Gaussian NLL):
            both stop members far too early on this data (a few outliers dominate a member's
            validation MSE; the NLL bottoms out before the mean has converged).
        additive_prefixes: features whose names start with one of these also reach each member's
            mean through a linear term of their own, beside the network: an offset per level
            that few rows pin down. The default takes the fidelity indicators
            (:mod:`discovery.features.fidelity`), whose offset (a proxy's systematic error) is
            additive; without the term the piecewise-linear members learned only 0.42 V of a
            0.6 V offset (docs/surrogate.md).
        exclude_prefixes: features whose names start with one of these are not used. The default
            drops the ``charge:`` block, an exact linear combination of ``discharge:`` and
            ``delta:`` that a linear first layer gains nothing from.
        bootstrap: give each member its own bootstrap: random row weights in the loss.
        bootstrap_weights: ``"exponential"`` (the default): Exponential(1) weights, Rubin's
            Bayesian bootstrap, which keeps every row in every member at a random weight;
            ``"poisson"``: Poisson(1) weights, the weighted form of resampling with replacement,
            which leaves about 37 % of the rows out of each member.
        calibrate: rescale the predicted std on the validation rows (95 % interval coverage).
        seed: seed of initialization, bootstrap, split and batch order.
    """

    members: int = 32
    hidden: tuple[int, ...] = (96, 96, 96)
    max_epochs: int = 80
    patience: int = 20
    batch_size: int = 512
    learning_rate: float = 8e-3
    weight_decay: float = 1e-4
    beta_nll: float = 0.5
    dropout: float = 0.0
    activation: str = "silu"
    stop_on: str = "ensemble_mae"
    exclude_prefixes: tuple[str, ...] = ("charge:",)
    val_fraction: float = 0.1
    bootstrap: bool = True
    bootstrap_weights: str = "exponential"
    calibrate: bool = True
    input_encoding: str = "mixed"
    encoding_bins: int = 8
    bin_edges: str = "target"
    shared_first_layer: bool = False
    encoded_first_width: int = 256
    additive_prefixes: tuple[str, ...] = ("fidelity=",)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ValueError(f"members must be >= 1, got {self.members}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must list positive widths, got {self.hidden}")
        if self.stop_on not in _STOP_CRITERIA:
            raise ValueError(f"stop_on must be one of {_STOP_CRITERIA}, got {self.stop_on!r}")
        if self.activation not in ("silu", "relu"):
            raise ValueError(f"activation must be 'silu' or 'relu', got {self.activation!r}")
        if self.bootstrap_weights not in ("poisson", "exponential"):
            raise ValueError(
                "bootstrap_weights must be 'poisson' or 'exponential', "
                f"got {self.bootstrap_weights!r}"
            )

        if self.input_encoding not in _ENCODINGS:
            raise ValueError(
                f"input_encoding must be one of {_ENCODINGS}, got {self.input_encoding!r}"
            )
        if not 2 <= self.encoding_bins <= 64:
            raise ValueError(f"encoding_bins must be in [2, 64], got {self.encoding_bins}")
        if self.bin_edges not in _BIN_EDGES:
            raise ValueError(f"bin_edges must be one of {_BIN_EDGES}, got {self.bin_edges!r}")
        if self.input_encoding == "mixed" and self.members > 1 and self.stop_on != "ensemble_mae":
            raise ValueError(
                "input_encoding='mixed' (the default) needs stop_on='ensemble_mae': its encoded "
                f"members share a first layer; for stop_on={self.stop_on!r} set "
                "input_encoding='standard'"
            )
        if self.encoded_first_width < 1:
            raise ValueError(f"encoded_first_width must be >= 1, got {self.encoded_first_width}")
        if self.shared_first_layer and self.stop_on != "ensemble_mae":
            raise ValueError(
                "shared_first_layer needs stop_on='ensemble_mae' (members that stop at their own "
                f"epochs cannot share weights), got stop_on={self.stop_on!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")


@dataclass(frozen=True)
class Prediction:
    """Ensemble prediction for n rows and T targets, in target units.

    Attributes:
        mean: mixture mean, shape (n, T).
        std: calibrated total standard deviation, shape (n, T).
        epistemic_std: calibrated spread of the member means, shape (n, T).
        target_names: the T target names.
    """

    mean: np.ndarray
    std: np.ndarray
    epistemic_std: np.ndarray
    target_names: tuple[str, ...]

    def column(self, target: str) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` of one target, each of shape (n,)."""
        t = self.target_names.index(target)
        return self.mean[:, t], self.std[:, t]


#: Standardized features are clipped to ±Z_CLIP standard deviations of the training data.
Z_CLIP = 10.0

_ACTIVATIONS = {"silu": nn.functional.silu, "relu": nn.functional.relu}


def _tree_edges(x: np.ndarray, y: np.ndarray, bins: int) -> np.ndarray:
    """Target-aware bin edges, (d, bins + 1): for each column of ``x`` (n, d) its smallest value,
    the split points of a regression tree with at most ``bins`` leaves grown on that column alone
    to ``y`` (n, T) (:func:`_tree_splits`), and its largest value, repeated to fill the row. A
    column of two values (an indicator) keeps one bin: a split between them would add a copy of
    it."""
    n = len(x)
    leaf = max(1, min(_TREE_LEAF_ROWS, n // (2 * bins)))
    y = y.reshape(n, -1).astype(np.float64)
    edges = np.empty((x.shape[1], bins + 1))
    for j, column in enumerate(x.T):
        order = np.argsort(column, kind="stable")
        v = column[order].astype(np.float64)
        distinct = 1 + int(np.count_nonzero(v[1:] != v[:-1]))  # v is sorted
        splits = _tree_splits(v, y[order], bins, leaf) if distinct > 2 else []
        edges[j] = np.concatenate([[v[0]], np.sort(splits), np.full(bins - len(splits), v[-1])])
    return edges


def _tree_splits(v: np.ndarray, y: np.ndarray, leaves: int, leaf: int) -> list[float]:
    """The split points of a regression tree with at most ``leaves`` leaves of at least ``leaf``
    rows, on the sorted values ``v`` (n,) with targets ``y`` (n, T) in the same order.

    The tree is grown best first, as scikit-learn's ``DecisionTreeRegressor(max_leaf_nodes=...,
    min_samples_leaf=...)`` grows it: the leaf whose best split most reduces the squared error
    (summed over the targets) is split next, at the midpoint between two distinct values.
    """
    prefix = np.concatenate([np.zeros((1, y.shape[1])), np.cumsum(y, axis=0)])
    heap: list[tuple[float, int, int, int]] = []  # (-reduction, first row, end, split row)

    def push(a: int, b: int) -> None:
        """Queue rows a..b-1's best split, if they have one."""
        at = np.arange(a + leaf, b - leaf + 1)
        at = at[v[at - 1] < v[at]]
        if len(at):
            left, right = prefix[at] - prefix[a], prefix[b] - prefix[at]
            fit = (left**2).sum(1) / (at - a) + (right**2).sum(1) / (b - at)
            k = int(np.argmax(fit))
            reduction = float(fit[k] - ((prefix[b] - prefix[a]) ** 2).sum() / (b - a))
            heapq.heappush(heap, (-reduction, a, b, int(at[k])))

    splits: list[float] = []
    push(0, len(v))
    while heap and len(splits) < leaves - 1:
        _, a, b, at = heapq.heappop(heap)
        splits.append(v[at - 1] / 2 + v[at] / 2)
        push(a, at)
        push(at, b)
    return splits


class _PiecewiseLinear(nn.Module):
    """Piecewise-linear encoding of d features over at most B bins each: (N, d) -> (N, d·B).

    Bin ``t`` of a feature with edges ``e_0 < ... < e_k`` (k <= B; ``fit`` merges equal edges)
    encodes ``(x - e_t) / (e_{t+1} - e_t)`` clipped to [0, 1]; the first bin is not clipped below
    and the last not above, so values outside the training range extrapolate linearly. Bins past
    ``k`` are 0. Each of the d·B columns is then standardized over the training rows (a column
    that is constant there gives 0) and clipped to ±:data:`Z_CLIP`.

    Only the *live* columns (:meth:`live`: those that vary over the training rows) are computed;
    the others are 0 on every row (bins past a feature's last edge; most of the d·B on the
    shared data, whose features mostly take few values), so a first layer keeps only the live
    rows of its weight (:meth:`forward` returns the live columns, in order).

    :meth:`forward` evaluates a live column as ``clamp(x_j - e_t, lo, hi) · k + shift``: the bin's
    clip and the ±Z_CLIP clip of the standardized value folded into one clip of the distance to
    the bin's lower edge (``lo``, ``hi``; a distance keeps full precision in a narrow bin, an
    edge position would not), the width and the standardization into one factor ``k``. Four
    passes over the rows instead of eight. These derived buffers are rebuilt by :meth:`fit` and
    on load, and not saved.
    """

    lower: Tensor  # (d, B) lower edge of each bin
    inv_width: Tensor  # (d, B) 1 / bin width; 0 for the bins past a feature's last
    floor: Tensor  # (d, B)
    ceiling: Tensor  # (d, B)
    center: Tensor  # (d·B,) training mean of each encoded column
    inv_scale: Tensor  # (d·B,) 1 / its training std, 0 for a constant column
    # derived by _derive(), one entry per live column (L,):
    cols: Tensor  # its feature
    bin_lower: Tensor  # its bin's lower edge
    factor: Tensor  # bin width and standardization in one factor
    shift: Tensor  # -center · inv_scale
    lo: Tensor  # clip bounds of the distance to the lower edge
    hi: Tensor

    def __init__(self, d: int, bins: int) -> None:
        super().__init__()
        self.register_buffer("lower", torch.zeros(d, bins))
        self.register_buffer("inv_width", torch.zeros(d, bins))
        self.register_buffer("floor", torch.zeros(d, bins))  # -inf on the first bin
        self.register_buffer("ceiling", torch.ones(d, bins))  # +inf on each feature's last bin
        self.register_buffer("center", torch.zeros(d * bins))
        self.register_buffer("inv_scale", torch.zeros(d * bins))  # none live before fit
        self._derive()

    def _derive(self) -> None:
        """Set :meth:`forward`'s buffers from the fitted ones: for each live column its
        feature, bin lower edge, factor, shift and the bounds ``lo <= x - lower edge <= hi``
        between which neither the bin's clip nor the ±Z_CLIP clip of the standardized value
        binds."""
        live = self.live()
        bins = self.lower.shape[1]
        inv_width = self.inv_width.flatten()[live]  # > 0 on a live column
        inv_scale = self.inv_scale[live]  # > 0 likewise
        center = self.center[live]
        lower = self.lower.flatten()[live]
        floor = torch.maximum(self.floor.flatten()[live], center - Z_CLIP / inv_scale)
        ceiling = torch.minimum(self.ceiling.flatten()[live], center + Z_CLIP / inv_scale)
        lo = floor / inv_width
        for name, value in (
            ("cols", live // bins),
            ("bin_lower", lower),
            ("factor", inv_width * inv_scale),
            ("shift", -center * inv_scale),
            ("lo", lo),
            ("hi", torch.maximum(ceiling / inv_width, lo)),
        ):
            self.register_buffer(name, value, persistent=False)

    def fit(self, x: Tensor, y: Tensor | None = None) -> None:
        """Set the bin edges from the training rows ``x`` (n, d): the split points of one
        regression tree per feature to the targets ``y`` (n, T; NaN counts as 0, the
        standardized mean), or without ``y`` the quantiles of each feature."""
        d, bins = self.lower.shape
        if y is None:
            levels = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
            quantiles = torch.quantile(x.double(), levels, dim=0).T.numpy()  # (d, bins + 1)
        else:
            quantiles = _tree_edges(x.numpy(), torch.nan_to_num(y).numpy(), bins)
        lower = np.zeros((d, bins))
        inv_width = np.zeros((d, bins))
        floor = np.zeros((d, bins))
        ceiling = np.ones((d, bins))
        floor[:, 0] = -np.inf
        for j in range(d):
            edges = np.unique(quantiles[j])
            k = len(edges) - 1
            if k == 0:  # constant in training: one bin of unit width
                edges, k = np.array([edges[0], edges[0] + 1.0]), 1
            lower[j, :k] = edges[:-1]
            inv_width[j, :k] = 1.0 / np.diff(edges)
            ceiling[j, k - 1] = np.inf
        self.lower.copy_(torch.from_numpy(lower))
        self.inv_width.copy_(torch.from_numpy(inv_width))
        self.floor.copy_(torch.from_numpy(floor))
        self.ceiling.copy_(torch.from_numpy(ceiling))
        encoded = self._bins(x)
        std, mean = torch.std_mean(encoded, dim=0, correction=0)
        self.center.copy_(mean)
        self.inv_scale.copy_(torch.where(std > 1e-6, 1.0 / std.clamp_min(1e-6), 0.0))
        self._derive()

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._derive()

    def _bins(self, x: Tensor) -> Tensor:
        z = (x.unsqueeze(-1) - self.lower) * self.inv_width
        return torch.minimum(torch.maximum(z, self.floor), self.ceiling).flatten(-2)

    def live(self) -> Tensor:
        """Indices of the encoded columns that vary over the training rows (the others are 0;
        before :meth:`fit`, none)."""
        return torch.nonzero(self.inv_scale).squeeze(1)

    def forward(self, x: Tensor) -> Tensor:
        """(N, d) -> the live encoded columns, (N, len(live))."""
        z = torch.clamp(x.index_select(-1, self.cols) - self.bin_lower, self.lo, self.hi)
        return torch.addcmul(self.shift, z, self.factor)


class _StackedMLP(nn.Module):
    """M MLPs ``d -> hidden... -> 2T`` whose weights are stacked on axis 0.

    With ``encoding_bins`` the inputs pass through a :class:`_PiecewiseLinear` encoding first.
    With ``shared_first`` the first layer's weight is one (1, d_in, h) matrix for all members,
    whose outputs each member multiplies by its own ±1 scale (``first_scale``, (M, h)).
    The input columns ``additive`` (indices into the d inputs) also reach each member's mean
    outputs through a linear term of its own (``additive_weight``, (M, k, T), starting at 0).
    Once the encoding is fitted (:meth:`fit_encoder`), the first layer's weight keeps only the
    rows of the live encoded columns (:meth:`_PiecewiseLinear.live`): the others meet zeros on
    every row.
    """

    def __init__(
        self,
        members: int,
        d_in: int,
        hidden: Sequence[int],
        n_out: int,
        dropout: float = 0.0,
        activation: str = "silu",
        encoding_bins: int = 0,
        shared_first: bool = False,
        additive: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.dropout = dropout
        self.additive: Tensor
        self.register_buffer("additive", torch.tensor(list(additive), dtype=torch.long), False)
        self.additive_weight = (
            nn.Parameter(torch.zeros(members, len(additive), n_out)) if len(additive) else None
        )
        self.activation = _ACTIVATIONS[activation]
        self.encoder = _PiecewiseLinear(d_in, encoding_bins) if encoding_bins else None
        widths = [d_in * max(encoding_bins, 1), *hidden, 2 * n_out]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(1 if shared_first and i == 0 else members, a, b))
            for i, (a, b) in enumerate(itertools.pairwise(widths))
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(members, b)) for b in widths[1:])
        self.first_scale = nn.Parameter(torch.empty(members, hidden[0])) if shared_first else None

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Member-wise initialization as ``nn.Linear`` does (uniform ±1/sqrt(fan_in)); the
        shared first layer's member scales are random signs."""
        with torch.no_grad():
            for w, b in zip(self.weights, self.biases):
                bound = 1.0 / math.sqrt(w.shape[1])
                w.uniform_(-bound, bound, generator=generator)
                b.uniform_(-bound, bound, generator=generator)
            if self.first_scale is not None:
                signs = torch.randint(0, 2, self.first_scale.shape, generator=generator)
                self.first_scale.copy_(signs * 2.0 - 1.0)

    def fit_encoder(self, x: Tensor, y: Tensor | None = None) -> None:
        """Fit the input encoding (if any) to the standardized training rows ``x`` (and their
        targets ``y`` for target-aware bins) and keep the first layer's rows of its live
        columns."""
        if self.encoder is not None:
            self.encoder.fit(x, y)
            w0 = self.weights[0]
            self.weights[0] = nn.Parameter(w0.detach()[:, self.encoder.live()].clone())

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        """Read files saved by earlier versions as well. The first layer takes the stored one's
        shape, the rows of the stored encoding's live columns, and a weight stored with a row
        for every encoded column (saved before the first layer kept only its live rows) is cut
        to them. A missing ``additive_weight`` (saved before the term) is zero: none learned."""
        if self.additive_weight is not None and prefix + "additive_weight" not in state_dict:
            state_dict[prefix + "additive_weight"] = torch.zeros_like(self.additive_weight)
        key, scale = prefix + "weights.0", state_dict.get(prefix + "encoder.inv_scale")
        w0 = state_dict.get(key)
        if self.encoder is not None and w0 is not None and scale is not None and w0.ndim == 3:
            live = torch.nonzero(scale).squeeze(1)
            if w0.shape[1] == len(scale) != len(live):
                state_dict[key] = w0 = w0[:, live]
            if w0.shape[1] == len(live):
                self.weights[0] = nn.Parameter(self.weights[0].new_empty(w0.shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def encode(self, x: Tensor) -> Tensor | None:
        """The encoded first-layer input of standardized rows ``x`` (None without an encoding),
        for :meth:`forward`'s ``encoded``: training encodes its rows once, not every epoch."""
        return None if self.encoder is None else self.encoder(x)

    def forward(self, x: Tensor, encoded: Tensor | None = None) -> Tensor:
        """``x``: (N, d) standardized inputs shared by all members -> (M, N, 2T) raw outputs;
        ``encoded``: their :meth:`encode`, if computed already."""
        offset = None
        if self.additive_weight is not None:
            offset = torch.matmul(x[:, self.additive], self.additive_weight)  # (M, N, T)
        w0, b0 = self.weights[0], self.biases[0]
        if self.encoder is not None:
            x = self.encoder(x) if encoded is None else encoded
        m, h = b0.shape
        if self.first_scale is not None:
            # One (N, d_in) @ (d_in, h) GEMM for all members, then each member's scale and bias.
            z = torch.addcmul(
                b0.unsqueeze(1), (x @ w0[0]).unsqueeze(0), self.first_scale.unsqueeze(1)
            )
        else:
            # One GEMM for all members' first layers, bias fused: (N, d) @ (d, M·h) -> (M, N, h).
            d = w0.shape[1]
            z = torch.addmm(b0.reshape(1, m * h), x, w0.permute(1, 0, 2).reshape(d, m * h))
            z = z.view(-1, m, h).transpose(0, 1)
        for w, b in zip(self.weights[1:], self.biases[1:]):
            # in place where no gradient is taken (prediction): z is not needed again
            a = self.activation(z, inplace=not torch.is_grad_enabled())
            if self.dropout > 0:
                a = nn.functional.dropout(a, self.dropout, self.training)
            z = torch.baddbmm(b.unsqueeze(1), a, w)
        if offset is not None:  # (M, N, T) onto the means, the first T outputs
            z = z + nn.functional.pad(offset, (0, z.shape[-1] - offset.shape[-1]))
        return z


class _Towers(nn.Module):
    """Several :class:`_StackedMLP` on the same inputs whose members are concatenated in order:
    (N, d) -> (sum of their M, N, 2T). ``input_encoding="mixed"`` uses two."""

    def __init__(self, towers: Sequence[_StackedMLP]) -> None:
        super().__init__()
        self.towers = nn.ModuleList(towers)  # registers their parameters (state_dict "towers.i.")

    def _stacks(self) -> list[_StackedMLP]:
        return [cast(_StackedMLP, tower) for tower in self.towers]

    def reset_parameters(self, generator: torch.Generator) -> None:
        for tower in self._stacks():
            tower.reset_parameters(generator)

    def fit_encoder(self, x: Tensor, y: Tensor | None = None) -> None:
        for tower in self._stacks():
            tower.fit_encoder(x, y)

    def encode(self, x: Tensor) -> list[Tensor | None]:
        return [tower.encode(x) for tower in self._stacks()]

    def forward(self, x: Tensor, encoded: Sequence[Tensor | None] | None = None) -> Tensor:
        codes = encoded if encoded is not None else [None] * len(self.towers)
        return torch.cat([tower(x, code) for tower, code in zip(self._stacks(), codes)])


@dataclass
class _Scalers:
    x_mean: Tensor  # (d_used,)
    x_std: Tensor  # (d_used,)
    y_mean: Tensor  # (T,)
    y_std: Tensor  # (T,)
    calibration: Tensor  # (T,) multiplies the predicted std


@dataclass
class _History:
    epochs: int = 0
    best_epoch: list[int] = field(default_factory=list)
    seconds: float = 0.0


class DeepEnsemble:
    """A calibrated deep ensemble regressor over named features and named targets.

    Fit with :meth:`fit`, predict with :meth:`predict` (NumPy) or :meth:`member_moments` (torch,
    differentiable; used by the BoTorch adapter), persist with :meth:`save` / :meth:`load`.
    """

    def __init__(self, config: EnsembleConfig | None = None) -> None:
        self.config = config or EnsembleConfig()
        self.feature_names: tuple[str, ...] = ()
        self.target_names: tuple[str, ...] = ()
        self.metadata: dict[str, Any] = {}
        self.history = _History()
        #: ``battery_id`` labels of the validation rows of the last :meth:`fit` (saved).
        self.validation_groups: tuple[str, ...] = ()
        #: ``battery_id`` labels of the training rows of the last :meth:`fit` (saved).
        self.training_groups: tuple[str, ...] = ()
        self._used: np.ndarray = np.zeros(0, dtype=np.int64)
        self._net: _StackedMLP | _Towers | None = None
        self._scalers: _Scalers | None = None

    # ------------------------------------------------------------------ training
    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        feature_names: Sequence[str],
        target_names: Sequence[str],
        groups: Sequence[object] | np.ndarray,
        metadata: dict[str, Any] | None = None,
        progress: Callable[[int, int], None] | None = None,
        init: DeepEnsemble | None = None,
    ) -> DeepEnsemble:
        """Train all members together, from scratch or (``init``) from a trained ensemble.

        Args:
            x: features, shape (n, d); NaN is not allowed.
            y: targets in their units, shape (n, T) or (n,); NaN marks a missing label.
            feature_names: the d feature names (checked again at prediction time).
            target_names: the T target names.
            groups: n group labels (``battery_id``); validation takes whole groups.
            metadata: JSON-serializable facts stored in the manifest (ions, data hash, ...).
            progress: called as ``progress(epoch, max_epochs)`` after every epoch (progress bars).
            init: a trained ensemble to fine-tune. Its weights, used features, input and target
                scalers and std calibration are copied, and training continues from them with this
                ensemble's config (give it a smaller ``learning_rate`` than the pre-training's).
                The validation rows are those of ``init``'s validation groups
                (:attr:`validation_groups`) and a ``val_fraction`` share of the groups in neither
                of its :attr:`training_groups` nor its validation groups; every other row trains,
                so rows ``init`` trained on never validate (when none or all of the rows are in
                its validation groups, a fresh grouped split is drawn). Early stopping starts
                from the copied weights' validation loss, so a member that never improves on
                them keeps them; recalibration needs 10 validation rows, else the copied
                calibration stays. With ``max_epochs=0`` the weights are not changed.
                It must have the same feature and target names and network shape
                (:data:`NETWORK_SHAPE`).
        """
        cfg = self.config
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32).reshape(len(x), -1)
        if x.ndim != 2 or len(feature_names) != x.shape[1]:
            raise ValueError(f"x has shape {x.shape} but {len(feature_names)} feature names")
        if len(target_names) != y.shape[1]:
            raise ValueError(f"y has {y.shape[1]} columns but {len(target_names)} target names")
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or inf")
        self.feature_names = tuple(feature_names)
        self.target_names = tuple(target_names)
        self.metadata = dict(metadata or {})

        start = time.perf_counter()
        labels = np.asarray(groups, dtype=object).astype(str)
        held = np.isin(labels, init.validation_groups) if init is not None else np.zeros(0, bool)
        if init is not None and held.any() and not held.all():
            # Fine-tuning keeps the start's validation groups, and every other row trains: rows
            # the start trained on never validate, so early stopping and recalibration still
            # judge unseen rows. Groups neither model has seen give a share of theirs too, so
            # the new rows' lessons (a new fidelity's offset) count in early stopping.
            fresh = ~held & ~np.isin(labels, init.training_groups)
            if init.training_groups and len(np.unique(labels[fresh])) >= 2:
                _, fresh_val = group_split(labels[fresh], cfg.val_fraction, cfg.seed)
                held[np.flatnonzero(fresh)[fresh_val]] = True
            train_rows, val_rows = np.flatnonzero(~held), np.flatnonzero(held)
        else:
            train_rows, val_rows = group_split(labels, cfg.val_fraction, cfg.seed)
        self.validation_groups = tuple(np.unique(labels[val_rows]).tolist())
        self.training_groups = tuple(np.unique(labels[train_rows]).tolist())
        if init is not None:
            self._start_from(init)
        else:
            x_train = x[train_rows]
            std = x_train.std(axis=0)
            self._used = self._usable(x_train)
            y_train = y[train_rows]
            self._scalers = _Scalers(
                x_mean=torch.from_numpy(x_train[:, self._used].mean(axis=0)),
                x_std=torch.from_numpy(std[self._used]),
                y_mean=torch.from_numpy(np.nanmean(y_train, axis=0)),
                y_std=torch.from_numpy(np.nanstd(y_train, axis=0) + 1e-12),
                calibration=torch.ones(y.shape[1]),
            )
        scalers = self._require_scalers()
        xs = self._scale_x(torch.from_numpy(x))
        ys = (torch.from_numpy(y) - scalers.y_mean) / scalers.y_std

        generator = torch.Generator().manual_seed(cfg.seed)
        self._net = self._build_net()
        if init is None:
            self._net.reset_parameters(generator)
            targets = ys[train_rows] if cfg.bin_edges == "target" else None
            self._net.fit_encoder(xs[train_rows], targets)
        else:
            self._net.load_state_dict(init._require_net().state_dict())
        self._train(
            xs,
            ys,
            torch.from_numpy(train_rows),
            torch.from_numpy(val_rows),
            generator,
            progress,
            keep_start=init is not None,
        )
        if cfg.calibrate:
            self._calibrate(x[val_rows], y[val_rows])
        self.history.seconds = time.perf_counter() - start
        return self

    def _usable(self, x: np.ndarray) -> np.ndarray:
        """Indices of the features a model trained on rows ``x`` uses: those not excluded by
        ``config.exclude_prefixes`` that vary (a constant column carries nothing)."""
        wanted = np.array(
            [not n.startswith(self.config.exclude_prefixes) for n in self.feature_names]
        )
        varies = x.std(axis=0) > 1e-8 * (1.0 + np.abs(x.mean(axis=0)))
        return np.flatnonzero(wanted & varies)

    def unused_features(self, x: np.ndarray) -> list[str]:
        """Features this model does not use (they were constant in its training rows) that a
        model trained on rows ``x`` (same feature names) would use: a fine-tuned copy could not
        learn from them (the first rows at a second fidelity, a new element)."""
        return [self.feature_names[i] for i in np.setdiff1d(self._usable(x), self._used)]

    def _start_from(self, init: DeepEnsemble) -> None:
        """Copy the used features and scalers of a trained ensemble (fine-tuning; see :meth:`fit`)."""
        init_scalers = init._require_scalers()
        init._require_net()
        init.check_features(self.feature_names)
        if init.target_names != self.target_names:
            raise ValueError(
                f"init was trained on the targets {list(init.target_names)}, "
                f"not {list(self.target_names)}"
            )
        differ = [k for k in NETWORK_SHAPE if getattr(init.config, k) != getattr(self.config, k)]
        if differ:
            detail = ", ".join(
                f"{k} {getattr(init.config, k)!r} != {getattr(self.config, k)!r}" for k in differ
            )
            raise ValueError(f"init has another network shape: {detail}")
        self._used = init._used.copy()
        self._scalers = _Scalers(**{k: v.detach().clone() for k, v in vars(init_scalers).items()})

    def _train(
        self,
        xs: Tensor,
        ys: Tensor,
        train: Tensor,
        val: Tensor,
        generator: torch.Generator,
        progress: Callable[[int, int], None] | None = None,
        keep_start: bool = False,
    ) -> None:
        """Train the members; ``keep_start``: the starting weights' validation loss is the one to
        beat (fine-tuning), so a member that never improves on it keeps its starting weights."""
        cfg, net = self.config, self._require_net()
        m = cfg.members
        mask = torch.isfinite(ys)
        ys = torch.nan_to_num(ys)
        if cfg.bootstrap and cfg.bootstrap_weights == "exponential":
            weights = torch.empty(m, len(train)).exponential_(generator=generator)
        elif cfg.bootstrap:
            weights = torch.poisson(torch.ones(m, len(train)), generator=generator)
        else:
            weights = torch.ones(m, len(train))
        opt = torch.optim.AdamW(
            net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=True
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.max_epochs)
        best = [p.detach().clone() for p in net.parameters()]
        best_loss = torch.full((m,), math.inf)
        best_epoch = torch.zeros(m, dtype=torch.long)
        stale = torch.zeros(m, dtype=torch.long)
        y_val, mask_val = ys[val], mask[val]
        # The encoded inputs of every row, computed once (encoding is a fixed map) unless the
        # table is so large that they would not fit comfortably in memory.
        with torch.no_grad():
            codes = net.encode(xs) if len(xs) <= _ENCODE_ONCE_ROWS else None

        def run(rows: Tensor) -> Tensor:
            """The network's raw outputs on rows ``rows`` of ``xs``."""
            if isinstance(codes, list):
                return net(xs[rows], [None if c is None else c[rows] for c in codes])
            return net(xs[rows], None if codes is None else codes[rows])

        def val_loss() -> Tensor:
            """Per-member validation loss, shape (M,)."""
            net.eval()
            with torch.no_grad():
                mu, var = self._split(run(val))
                if cfg.stop_on == "nll":
                    loss = 0.5 * (torch.log(var) + (y_val - mu) ** 2 / var) * mask_val
                elif cfg.stop_on == "ensemble_mae":
                    loss = ((y_val - mu.mean(0)).abs() * mask_val).expand_as(mu)
                else:
                    loss = (y_val - mu) ** 2 * mask_val
                return loss.sum(dim=(1, 2)) / mask_val.sum().clamp_min(1)

        if keep_start and len(val):
            best_loss = val_loss()
        epoch = 0
        for epoch in range(1, cfg.max_epochs + 1):
            net.train()
            order = torch.randperm(len(train), generator=generator)
            for start in range(0, len(train), cfg.batch_size):
                pos = order[start : start + cfg.batch_size]
                rows = train[pos]
                mu, var = self._split(run(rows))
                w = weights[:, pos].unsqueeze(-1) * mask[rows]  # (M, B, T)
                nll = 0.5 * (torch.log(var) + (ys[rows] - mu) ** 2 / var)
                if cfg.beta_nll > 0:
                    nll = nll * var.detach() ** cfg.beta_nll
                per_member = (w * nll).sum(dim=(1, 2)) / w.sum(dim=(1, 2)).clamp_min(1.0)
                opt.zero_grad(set_to_none=True)
                per_member.sum().backward()
                opt.step()
            schedule.step()
            if progress is not None:
                progress(epoch, cfg.max_epochs)
            loss_now = val_loss()
            with torch.no_grad():
                improved = loss_now < best_loss - 1e-4
                best_loss = torch.where(improved, loss_now, best_loss)
                best_epoch = torch.where(improved, epoch, best_epoch)
                stale = torch.where(improved, 0, stale + 1)
                for keep, p in zip(best, net.parameters()):
                    if len(p) == m:
                        keep[improved] = p[improved]
                    elif bool(improved.any()):  # shared or a tower's: "ensemble_mae", all or none
                        keep.copy_(p)
            if bool((stale >= cfg.patience).all()):
                break
        with torch.no_grad():
            for keep, p in zip(best, net.parameters()):
                p.copy_(keep)
        net.eval().requires_grad_(False)  # trained: gradients flow to inputs only
        self.history.epochs = epoch
        self.history.best_epoch = best_epoch.tolist()

    def _calibrate(self, x_val: np.ndarray, y_val: np.ndarray) -> None:
        """Set the per-target std factor so 95 % of validation residuals lie within ±1.96 σ.

        The factor is the split-conformal quantile of ``|residual| / σ``: its
        ``ceil(0.95 (n + 1))``-th smallest value over the n validation rows, divided by 1.96. For
        rows exchangeable with the validation rows the ±1.96 σ interval then covers at least
        95 % (Vovk et al.; Angelopoulos and Bates, 2021); below 19 rows it is the largest. A
        target with fewer than 10 validation residuals keeps its current factor.
        """
        scalers = self._require_scalers()
        scale = scalers.calibration.clone()
        scalers.calibration = torch.ones(len(self.target_names))
        pred = self.predict(x_val)
        z = np.abs(y_val - pred.mean) / pred.std
        for t in range(len(self.target_names)):
            zt = z[:, t][np.isfinite(z[:, t])]
            if len(zt) >= 10:
                rank = min(len(zt), math.ceil(0.95 * (len(zt) + 1)))
                scale[t] = float(np.sort(zt)[rank - 1]) / _Z95
        scalers.calibration = scale

    # ---------------------------------------------------------------- prediction
    @staticmethod
    def _split(out: Tensor) -> tuple[Tensor, Tensor]:
        t = out.shape[-1] // 2
        # softplus of a strided slice takes a slow path (13x on CPU): copy the slice first
        return out[..., :t], nn.functional.softplus(out[..., t:].contiguous()) + _MIN_VAR

    def _scale_x(self, x: Tensor) -> Tensor:
        """Standardize the used features and clip them to ±:data:`Z_CLIP`.

        The clip guards against extrapolation blow-ups: a feature that barely varies in training
        (a std of 1e-7, say) would otherwise give an unseen candidate a z-score of a million and a
        prediction of thousands of volts.
        """
        scalers = self._require_scalers()
        used = torch.from_numpy(self._used).to(x.device)
        z = (x.index_select(-1, used) - scalers.x_mean) / scalers.x_std
        return z.clamp(-Z_CLIP, Z_CLIP)

    def member_moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Member means and variances in target units, differentiable in ``x``.

        Args:
            x: raw features, shape (..., d) with d = ``len(feature_names)``.

        Returns:
            ``(means, variances)``, each of shape (M, ..., T), calibrated: member deviations from
            the mixture mean and member variances are scaled so the mixture std carries the
            calibration factor.
        """
        net, s = self._require_net(), self._require_scalers()
        batch = x.shape[:-1]
        flat = self._scale_x(x.reshape(-1, x.shape[-1]).to(s.x_mean.dtype))
        mu, var = self._split(net(flat))
        mu = mu * s.y_std + s.y_mean
        var = var * s.y_std**2
        center = mu.mean(0, keepdim=True)
        mu = center + (mu - center) * s.calibration
        var = var * s.calibration**2
        t = len(self.target_names)
        return mu.reshape(-1, *batch, t), var.reshape(-1, *batch, t)

    def predict(
        self, x: np.ndarray, *, feature_names: Sequence[str] | None = None, chunk_rows: int = 1024
    ) -> Prediction:
        """Predict the calibrated mixture for rows of raw features ``x`` (n, d), in chunks.

        Small chunks keep the (M, chunk, hidden) activations in cache; 1,024 rows measured
        fastest on 2 cores (large chunks spend their time faulting in fresh pages; 2,048 rows
        took 1.05-1.2x as long).
        """
        if feature_names is not None:
            self.check_features(feature_names)
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise FeatureMismatchError(
                f"expected {len(self.feature_names)} feature columns, got array of shape {x.shape}"
            )
        t = len(self.target_names)
        mean = np.empty((len(x), t), dtype=np.float32)
        std = np.empty_like(mean)
        epi = np.empty_like(mean)
        device = self._require_scalers().x_mean.device  # see to(); rows travel chunk by chunk
        with torch.inference_mode():
            for start in range(0, len(x), chunk_rows):
                chunk = torch.from_numpy(x[start : start + chunk_rows]).to(device)
                mu, var = self.member_moments(chunk)
                m = mu.mean(0)
                spread = mu.var(0, unbiased=False)
                stop = start + len(m)
                mean[start:stop] = m.cpu().numpy()
                std[start:stop] = (var.mean(0) + spread).sqrt().cpu().numpy()
                epi[start:stop] = spread.sqrt().cpu().numpy()
        return Prediction(mean=mean, std=std, epistemic_std=epi, target_names=self.target_names)

    def to(self, device: str | torch.device) -> DeepEnsemble:
        """Move the weights and scalers to ``device`` (e.g. ``"cuda"``); :meth:`predict` then
        evaluates there, taking and returning NumPy arrays as before. Returns ``self``."""
        net, s = self._require_net(), self._require_scalers()
        net.to(device)
        self._scalers = _Scalers(
            *(t.to(device) for t in (s.x_mean, s.x_std, s.y_mean, s.y_std, s.calibration))
        )
        return self

    def check_features(self, names: Sequence[str]) -> None:
        """Raise :class:`FeatureMismatchError` unless ``names`` equal the training feature names."""
        names = tuple(names)
        if names == self.feature_names:
            return
        missing = [n for n in self.feature_names if n not in set(names)]
        extra = [n for n in names if n not in set(self.feature_names)]
        detail = (
            f"missing {missing[:5]}, unexpected {extra[:5]}"
            if missing or extra
            else "order differs"
        )
        raise FeatureMismatchError(
            f"the model was trained on {len(self.feature_names)} features and got {len(names)}: "
            f"{detail} (featurize with the same discovery version, or retrain)"
        )

    # ------------------------------------------------------------------- storage
    def save(self, directory: str | Path) -> Path:
        """Write ``weights.pt`` (tensors only) and ``manifest.json`` into ``directory``.

        A full disk or a file-size limit raises :class:`OSError`.
        """
        from discovery import __version__

        net, s = self._require_net(), self._require_scalers()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"net.{k}": v.detach().clone() for k, v in net.state_dict().items()}
        tensors.update(
            {
                "x_mean": s.x_mean,
                "x_std": s.x_std,
                "y_mean": s.y_mean,
                "y_std": s.y_std,
                "calibration": s.calibration,
                "used_features": torch.from_numpy(self._used),
            }
        )
        # Serialized in memory first: torch's zip writer reports a full disk or a file-size
        # limit as a RuntimeError, a plain write as the OSError it is.
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        (directory / "weights.pt").write_bytes(buffer.getbuffer())
        manifest = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "discovery_version": __version__,
            "config": asdict(self.config),
            "feature_names": list(self.feature_names),
            "target_names": list(self.target_names),
            "calibration_std_scale": s.calibration.tolist(),
            "training": {
                "epochs": self.history.epochs,
                "best_epoch": self.history.best_epoch,
                "seconds": round(self.history.seconds, 3),
            },
            "metadata": self.metadata,
            "validation_groups": list(self.validation_groups),
            "training_groups": list(self.training_groups),
        }
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> DeepEnsemble:
        """Read a model written by :meth:`save`; tensors are loaded with ``weights_only=True``."""
        directory = Path(directory)
        manifest_path, weights_path = directory / "manifest.json", directory / "weights.pt"
        for path in (manifest_path, weights_path):
            if not path.is_file():
                raise ModelFileError(f"{path}: missing (is {directory} a model directory?)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{manifest_path}: not valid JSON ({exc})") from exc
        if manifest.get("format") != _FORMAT or manifest.get("format_version") != _FORMAT_VERSION:
            raise ModelFileError(
                f"{manifest_path}: not a {_FORMAT} v{_FORMAT_VERSION} model "
                f"(format={manifest.get('format')!r}, version={manifest.get('format_version')!r})"
            )
        try:
            with warnings.catch_warnings():
                # torch warns about the protocol of a raw pickle before refusing it
                warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
                tensors = torch.load(weights_path, weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as exc:
            # torch's text goes on to suggest weights_only=False; keep the line naming the object
            lines = [ln.strip() for ln in str(exc).splitlines()]
            named = [ln for ln in lines if ln.startswith(("Unsupported", "Trying to load"))]
            detail = f" ({named[0]})" if named else ""
            raise ModelFileError(
                f"{weights_path}: refused to load, it holds objects other than tensors{detail}"
            ) from None
        except (EOFError, OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ModelFileError(
                f"{weights_path}: not a weights file written by discover train "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'empty'})"
            ) from None
        if not isinstance(tensors, dict) or not all(isinstance(k, str) for k in tensors):
            raise ModelFileError(f"{weights_path}: not a weights file written by discover train")
        try:
            config_fields: dict[str, Any] = {  # JSON has lists where the config has tuples
                k: tuple(v) if isinstance(v, list) else v for k, v in manifest["config"].items()
            }
            model = cls(EnsembleConfig(**config_fields))
            model.feature_names = tuple(manifest["feature_names"])
            model.target_names = tuple(manifest["target_names"])
            model.metadata = dict(manifest.get("metadata", {}))
            model.validation_groups = tuple(str(g) for g in manifest.get("validation_groups", []))
            model.training_groups = tuple(str(g) for g in manifest.get("training_groups", []))
            model._used = tensors["used_features"].numpy()
            model._scalers = _Scalers(
                x_mean=tensors["x_mean"],
                x_std=tensors["x_std"],
                y_mean=tensors["y_mean"],
                y_std=tensors["y_std"],
                calibration=tensors["calibration"],
            )
            net = model._build_net()
            net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise ModelFileError(
                f"{directory}: incomplete or inconsistent model files ({exc})"
            ) from exc
        net.eval().requires_grad_(False)
        model._net = net
        training = manifest.get("training", {})
        model.history = _History(
            training.get("epochs", 0), training.get("best_epoch", []), training.get("seconds", 0.0)
        )
        return model

    # ------------------------------------------------------------------- helpers
    def _build_net(self) -> _StackedMLP | _Towers:
        """An untrained network shaped by the config, the used features and the targets."""
        cfg = self.config
        shape = (len(self._used), len(self.target_names))
        additive = [
            i
            for i, j in enumerate(self._used)
            if self.feature_names[j].startswith(cfg.additive_prefixes)
        ]
        if cfg.input_encoding == "mixed" and cfg.members > 1:
            plain = (cfg.members + 1) // 2
            return _Towers(
                [
                    _StackedMLP(
                        plain,
                        *shape[:1],
                        cfg.hidden,
                        shape[1],
                        cfg.dropout,
                        cfg.activation,
                        additive=additive,
                    ),
                    _StackedMLP(
                        cfg.members - plain,
                        shape[0],
                        (cfg.encoded_first_width, *cfg.hidden[1:]),
                        shape[1],
                        cfg.dropout,
                        cfg.activation,
                        cfg.encoding_bins,
                        shared_first=True,
                        additive=additive,
                    ),
                ]
            )
        return _StackedMLP(
            cfg.members,
            shape[0],
            cfg.hidden,
            shape[1],
            cfg.dropout,
            cfg.activation,
            cfg.encoding_bins if cfg.input_encoding == "piecewise_linear" else 0,
            cfg.shared_first_layer,
            additive,
        )

    def _require_net(self) -> _StackedMLP | _Towers:
        if self._net is None:
            raise RuntimeError("the ensemble is not trained; call fit() or load() first")
        return self._net

    def _require_scalers(self) -> _Scalers:
        if self._scalers is None:
            raise RuntimeError("the ensemble is not trained; call fit() or load() first")
        return self._scalers

    @property
    def calibration_scale(self) -> np.ndarray:
        """Per-target factor applied to the raw predicted std by recalibration, shape (T,)."""
        return self._require_scalers().calibration.cpu().numpy().copy()
