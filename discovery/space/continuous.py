"""Continuous composition spaces: element fractions on one site of a template, optimized by BoTorch.

A continuous space is one framework template (``"A_x M"``, ``"A_x M O2"``) whose site ``M`` holds
a free mixture of ``elements``: the decision variables are the atomic fractions of those elements
on the site (they sum to 1, an equality constraint) and, when ``x`` is a range, the insertion
amount x as the last variable. Every amount of both formulas is then an affine function of the
decision vector v:

    a_discharge(v) = A_d · v + b_d,        a_charge(v) = A_c · v + b_c

(site elements: multiplicity × fraction; fixed groups: constants; the working ion: x, discharged
formula only). So are the molar masses, and therefore a weight-percent cap is a *linear*
inequality (see :func:`ContinuousSpace.inequality_constraints`), and the Magpie means, the pair
quantities and the framework fractions are smooth functions of v that torch differentiates, and
so are the formal oxidation states (:mod:`discovery.features.redox`) between their clips.

:meth:`ContinuousSpace.features` recomputes :func:`~discovery.features.electrode_features` in
torch (double precision) from those amounts. By default it rounds the amounts as
:meth:`ContinuousSpace.to_frame` writes them (4 decimals) with gradients passed straight through
the rounding, so it equals the NumPy features of the written formulas.
torch, BoTorch and SciPy are imported inside the methods that need them.
"""

from __future__ import annotations

__all__ = ["ContinuousSpace"]

import math
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from discovery.chemistry.capacity import MAH_PER_MOL_ELECTRONS, molar_mass_g_mol
from discovery.chemistry.formula import ELEMENTS
from discovery.chemistry.ions import DEFAULT_IONS, ION_DESCRIPTORS, IonTable
from discovery.features.electrode import electrode_feature_names
from discovery.features.magpie import MAGPIE_PROPERTIES, MAGPIE_STATS, magpie_table
from discovery.features.redox import redox_features_torch
from discovery.space.generate import SpaceError, TemplateError, parse_template
from discovery.space.ids import candidate_ids

if TYPE_CHECKING:
    import torch

#: Amounts in :meth:`ContinuousSpace.to_frame` formulas are rounded to this many decimals.
DECIMALS = 4
# An element is written (and counted by min/max/mode) when its amount rounds to a non-zero value.
_PRESENT = 0.5 * 10.0**-DECIMALS
# matminer's mode: amounts np.isclose to the largest (rtol 1e-5, atol 1e-8) are tied.
_MODE_RTOL, _MODE_ATOL = 1e-5, 1e-8
# Constraint coefficients below this are dropped (they come from sums of exact products).
_TINY = 1e-12
# Hit-and-run: steps per chain (plus 10 per dimension), chains advanced together per block.
_HIT_AND_RUN_STEPS = 50
_CHAINS_PER_BLOCK = 4096


def _amount_text(amount: float) -> str:
    value = round(amount, DECIMALS)
    if value == 1.0:
        return ""
    return f"{value:.{DECIMALS}f}".rstrip("0").rstrip(".")


def _pair(value: Any, where: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise SpaceError(f"{where}: expected a pair (low, high), got {value!r}") from None
    return lo, hi


class ContinuousSpace:
    """Element fractions on one template site (and optionally x), with bounds and linear constraints.

    Args:
        spec: an object with attributes ``template`` (str, e.g. ``"A_x M O2"``), ``site`` (the
            label of the free site), ``working_ion`` (symbol), ``elements`` (list of element
            symbols on the site, at least 2), ``bounds`` (dict element -> (low, high) atomic
            fraction on the site; default (0, 1)), ``max_wt_percent`` (dict element -> largest
            mass percent of that element in the discharged formula, or the charged one when the
            optional attribute ``wt_percent_basis`` is ``"charge"``), ``linear_constraints``
            (objects with ``coefficients`` dict variable name -> coefficient, ``min`` and ``max``,
            either may be None: min <= Σ c·v <= max) and ``x`` (ions per formula unit: a number,
            or a (low, high) range that makes x a decision variable).
        ion_table: the ion table (valence of the ion; the ``ion_is:`` feature block).

    Attributes:
        names: decision-variable names: the elements, then ``"x"`` when x varies.
        dim: number of decision variables.
        template: the template text (the ``framework`` column of :meth:`to_frame`).
        working_ion: the ion symbol.

    Raises:
        SpaceError: (a :class:`~discovery.errors.DiscoveryError`) naming the field at fault: a bad
            template or element, bounds outside [0, 1], an unknown variable in a constraint, x not
            positive, or constraints that no composition satisfies.
    """

    def __init__(self, spec: Any, ion_table: IonTable = DEFAULT_IONS) -> None:
        self.ion_table = ion_table
        self.working_ion = str(spec.working_ion)
        self._valence = ion_table[self.working_ion].valence  # raises UnknownIonError
        if self.working_ion not in ELEMENTS:
            raise SpaceError(f"working_ion: {self.working_ion!r} is not an element symbol")
        self.site = str(spec.site)
        try:
            self._template = parse_template(spec.template, [self.site])
        except TemplateError as exc:
            raise SpaceError(f"template: {exc}") from None
        self.template = self._template.text
        self.elements: tuple[str, ...] = tuple(spec.elements)
        if len(self.elements) < 2:
            raise SpaceError("elements: a continuous space needs at least 2 elements on the site")
        for el in self.elements:
            if el not in ELEMENTS:
                raise SpaceError(f"elements: {el!r} is not an element symbol")
        if len(set(self.elements)) != len(self.elements):
            raise SpaceError("elements: an element is listed more than once")

        x = spec.x
        if isinstance(x, int | float):
            x_lo = x_hi = float(x)
        else:
            x_lo, x_hi = _pair(x, "x")
        if not (math.isfinite(x_lo) and math.isfinite(x_hi) and 0.0 < x_lo <= x_hi):
            raise SpaceError(f"x: insertion amounts must satisfy 0 < low <= high, got {x!r}")
        if round(x_lo, DECIMALS) <= 0.0:
            raise SpaceError(
                f"x: the smallest x must be at least {10.0**-DECIMALS:g}, got {x_lo!r}"
            )
        self._x_variable = x_hi > x_lo
        self._x_fixed = x_lo
        self.names: tuple[str, ...] = self.elements + (("x",) if self._x_variable else ())
        self.dim = len(self.names)

        # Box bounds of the decision variables.
        lower = np.zeros(self.dim)
        upper = np.ones(self.dim)
        for el, value in (getattr(spec, "bounds", None) or {}).items():
            if el not in self.elements:
                raise SpaceError(f"bounds.{el}: {el!r} is not one of the elements {self.elements}")
            lo, hi = _pair(value, f"bounds.{el}")
            if not 0.0 <= lo <= hi <= 1.0:
                raise SpaceError(f"bounds.{el}: need 0 <= low <= high <= 1, got ({lo}, {hi})")
            lower[self.elements.index(el)], upper[self.elements.index(el)] = lo, hi
        if self._x_variable:
            lower[-1], upper[-1] = x_lo, x_hi
        self._lower, self._upper = lower, upper

        # Affine amounts over the support (every element that can appear), ion first.
        support = [self.working_ion]
        for token in self._template.tokens:
            support += [el for el, _ in token.composition]
        support += list(self.elements)
        self.support: tuple[str, ...] = tuple(dict.fromkeys(support))
        s = len(self.support)
        pos = {el: i for i, el in enumerate(self.support)}
        a_c = np.zeros((s, self.dim))
        b_c = np.zeros(s)
        for token in self._template.tokens:
            if token.kind == "site":
                for j, el in enumerate(self.elements):
                    a_c[pos[el], j] += token.multiplicity
            for el, amount in token.composition:
                b_c[pos[el]] += amount
        a_d, b_d = a_c.copy(), b_c.copy()
        if self._x_variable:
            a_d[pos[self.working_ion], -1] += 1.0
        else:
            b_d[pos[self.working_ion]] += self._x_fixed
        self._a = {"charge": a_c, "discharge": a_d}
        self._b = {"charge": b_c, "discharge": b_d}
        self._masses = np.array([molar_mass_g_mol({el: 1.0}) for el in self.support])

        # Linear inequalities G·v >= h (dense), from the spec and from the weight-percent caps.
        rows: list[NDArray[np.float64]] = []
        rhs: list[float] = []
        for k, constraint in enumerate(getattr(spec, "linear_constraints", None) or []):
            where = f"linear_constraints[{k}]"
            coef = np.zeros(self.dim)
            for name, value in (constraint.coefficients or {}).items():
                if name not in self.names:
                    raise SpaceError(
                        f"{where}.coefficients.{name}: unknown variable (one of {self.names})"
                    )
                coef[self.names.index(name)] = float(value)
            low, high = getattr(constraint, "min", None), getattr(constraint, "max", None)
            if low is None and high is None:
                raise SpaceError(f"{where}: give min, max or both")
            if low is not None:
                rows.append(coef)
                rhs.append(float(low))
            if high is not None:
                rows.append(-coef)
                rhs.append(-float(high))
        basis = getattr(spec, "wt_percent_basis", "discharge") or "discharge"
        if basis not in self._a:
            raise SpaceError(f"wt_percent_basis: expected 'discharge' or 'charge', got {basis!r}")
        self.wt_percent_basis: str = basis
        for el, percent in (getattr(spec, "max_wt_percent", None) or {}).items():
            if el not in pos:
                raise SpaceError(f"max_wt_percent.{el}: {el!r} does not occur in the formula")
            p = float(percent)
            if not 0.0 <= p <= 100.0:
                raise SpaceError(f"max_wt_percent.{el}: must be within 0..100, got {percent!r}")
            coef, bound = self.wt_percent_constraint(el, p)
            rows.append(coef)
            rhs.append(bound)
        self._g = np.array(rows).reshape(-1, self.dim)
        self._h = np.array(rhs, dtype=np.float64)
        constant = np.all(np.abs(self._g) <= _TINY, axis=1)
        if np.any(constant & (self._h > _TINY)):
            raise SpaceError(
                "constraints: a constraint that does not depend on the variables fails"
            )
        self._g, self._h = self._g[~constant], self._h[~constant]
        self._check_feasible()

    # ------------------------------------------------------------------ constraints

    def wt_percent_constraint(
        self, element: str, percent: float
    ) -> tuple[NDArray[np.float64], float]:
        """The cap "element ≤ percent wt %" as a linear inequality ``coef · v >= rhs``.

        With amounts a(v) = A·v + b (of the basis formula) and atomic masses m (g/mol), the molar
        mass is M(v) = m·a(v) = (mᵀA)·v + mᵀb, and the element's mass is mₑ·aₑ(v). Since M(v) > 0,

            mₑ·aₑ(v) / M(v) <= p/100   ⇔   (p/100)·M(v) - mₑ·aₑ(v) >= 0
                                       ⇔   [(p/100)·mᵀA - mₑ·Aₑ]·v >= mₑ·bₑ - (p/100)·mᵀb,

        linear in v (the fractions and x alike). Returns ``(coef (dim,), rhs)``.
        """
        a, b = self._a[self.wt_percent_basis], self._b[self.wt_percent_basis]
        e = self.support.index(element)
        m_e = self._masses[e]
        share = percent / 100.0
        coef = share * (self._masses @ a) - m_e * a[e]
        return coef, float(m_e * b[e] - share * (self._masses @ b))

    def _check_feasible(self) -> None:
        """Raise when no composition satisfies the constraints, or one leaves no host atoms;
        keep the polytope (as ``A·v <= b`` on the affine subspace ``E·v = e``) for :meth:`sample`."""
        from scipy.optimize import linprog

        n_frac = len(self.elements)
        fixed = np.flatnonzero(self._upper - self._lower <= _TINY)
        e_rows = np.zeros((1 + len(fixed), self.dim))
        e_rows[0, :n_frac] = 1.0
        e_rows[np.arange(1, 1 + len(fixed)), fixed] = 1.0
        e_rhs = np.concatenate([[1.0], self._lower[fixed]])
        identity = np.eye(self.dim)
        a_ub = np.concatenate([-self._g, -identity, identity])
        b_ub = np.concatenate([-self._h, -self._lower, self._upper])
        bounds = list(zip(self._lower, self._upper))
        # Fewest host (non-ion) atoms of the charged framework: must stay positive.
        a_c, b_c = self._a["charge"], self._b["charge"]
        host = np.ones(len(self.support), dtype=bool)
        host[0] = False  # the working ion is support[0]
        result = linprog(
            a_c[host].sum(axis=0),
            A_ub=a_ub[: len(self._g)] if len(self._g) else None,
            b_ub=b_ub[: len(self._g)] if len(self._g) else None,
            A_eq=e_rows[:1],
            b_eq=e_rhs[:1],
            bounds=bounds,
            method="highs",
        )
        if result.status == 2:
            raise SpaceError(
                "bounds, linear_constraints and max_wt_percent leave no feasible composition "
                "(the fractions must also sum to 1)"
            )
        if result.status != 0:
            raise SpaceError(f"cannot check the constraints: {result.message}")
        if result.fun + b_c[host].sum() < _PRESENT:
            raise SpaceError(
                f"elements: a feasible composition holds no atom besides the working ion "
                f"{self.working_ion} (bound its fraction below 1 or add host elements)"
            )
        # Directions that keep the equalities: an orthonormal basis of the null space of E.
        _, singular, vt = np.linalg.svd(e_rows)
        rank = int(np.sum(singular > 1e-10))
        self._null = vt[rank:].T  # (dim, k)
        self._a_ub, self._b_ub = a_ub, b_ub
        # Start of the hit-and-run chains: the centre of the largest ball inside the polytope.
        norms = np.linalg.norm(a_ub @ self._null, axis=1)
        center = linprog(
            np.concatenate([np.zeros(self.dim), [-1.0]]),
            A_ub=np.column_stack([a_ub, norms]),
            b_ub=b_ub,
            A_eq=np.column_stack([e_rows, np.zeros(len(e_rows))]),
            b_eq=e_rhs,
            bounds=[*bounds, (0.0, 1.0)],
            method="highs",
        )
        self._center = center.x[: self.dim] if center.status == 0 else result.x

    @cached_property
    def bounds(self) -> torch.Tensor:
        """Box bounds of the decision variables, shape (2, dim), double."""
        import torch

        return torch.tensor(np.stack([self._lower, self._upper]), dtype=torch.float64)

    @cached_property
    def equality_constraints(self) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """``[(indices, coefficients, rhs)]``: the site fractions sum to 1 (BoTorch format)."""
        import torch

        n_frac = len(self.elements)
        return [
            (
                torch.arange(n_frac, dtype=torch.long),
                torch.ones(n_frac, dtype=torch.float64),
                1.0,
            )
        ]

    @cached_property
    def inequality_constraints(self) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """``[(indices, coefficients, rhs)]`` meaning Σ coefficients·X[indices] >= rhs (BoTorch format).

        The spec's linear constraints (a ``min`` and a ``max`` each give one) and one per
        weight-percent cap (:meth:`wt_percent_constraint`).
        """
        import torch

        out = []
        for coef, rhs in zip(self._g, self._h):
            index = np.flatnonzero(np.abs(coef) > _TINY)
            out.append(
                (
                    torch.tensor(index, dtype=torch.long),
                    torch.tensor(coef[index], dtype=torch.float64),
                    float(rhs),
                )
            )
        return out

    def is_feasible(self, X: NDArray[np.floating], tol: float = 1e-8) -> NDArray[np.bool_]:
        """Whether each row of X (n, dim) satisfies the bounds and every constraint (within tol)."""
        v = np.asarray(X, dtype=np.float64).reshape(-1, self.dim)
        ok = np.all((v >= self._lower - tol) & (v <= self._upper + tol), axis=1)
        ok &= np.abs(v[:, : len(self.elements)].sum(axis=1) - 1.0) <= tol
        if len(self._g):
            ok &= np.all(v @ self._g.T >= self._h - tol, axis=1)
        return ok

    # ------------------------------------------------------------------ sampling and formulas

    def sample(self, n: int, seed: int = 0) -> NDArray[np.float64]:
        """n feasible points, shape (n, dim), reproducible for a seed.

        Hit-and-run: n independent chains start at the centre of the largest ball inside the
        polytope (bounds, linear and weight-percent constraints, fractions summing to 1) and take
        50 + 10·k steps (k = the polytope's dimension), each along a random direction within
        the equality constraints to a uniform point of the feasible chord. The chains run
        together as NumPy arrays (a few seconds for 100,000 points); the result is clipped to
        the bounds and the fractions renormalized against rounding.
        """
        rng = np.random.default_rng(seed)
        null = self._null  # (dim, k), orthonormal columns
        k = null.shape[1]
        v = np.tile(self._center, (n, 1))
        if k and n:
            rate_of = null.T @ self._a_ub.T  # (k, m): constraint change per unit step along z
            slack0 = np.maximum(self._b_ub - self._a_ub @ self._center, 0.0)
            for lo in range(0, n, _CHAINS_PER_BLOCK):
                m = min(n - lo, _CHAINS_PER_BLOCK)
                z = np.zeros((m, k))  # chain positions in null-space coordinates
                slack = np.tile(slack0, (m, 1))
                for _ in range(_HIT_AND_RUN_STEPS + 10 * k):
                    u = rng.standard_normal((m, k))
                    u /= np.linalg.norm(u, axis=1, keepdims=True)
                    rate = u @ rate_of
                    with np.errstate(divide="ignore", invalid="ignore"):
                        ratio = slack / rate
                    high = np.where(rate > _TINY, ratio, np.inf).min(axis=1)
                    low = np.where(rate < -_TINY, ratio, -np.inf).max(axis=1)
                    step = low + rng.random(m) * (high - low)
                    z += step[:, None] * u
                    slack -= step[:, None] * rate
                    np.maximum(slack, 0.0, out=slack)
                v[lo : lo + m] += z @ null.T
        out = np.clip(v, self._lower, self._upper)
        n_frac = len(self.elements)
        out[:, :n_frac] /= out[:, :n_frac].sum(axis=1, keepdims=True)
        return out

    def amounts(self, X: NDArray[np.floating], state: str = "discharge") -> NDArray[np.float64]:
        """Atoms per formula unit of each :attr:`support` element, shape (n, len(support))."""
        v = np.asarray(X, dtype=np.float64).reshape(-1, self.dim)
        return v @ self._a[state].T + self._b[state]

    def _formula(self, v: NDArray[np.float64], with_ion: bool) -> str:
        """One formula of the point v, amounts rounded to :data:`DECIMALS` decimals."""
        pieces: list[tuple[str | None, list[tuple[str, float]]]] = []  # (verbatim text, amounts)
        for token in self._template.tokens:
            if token.kind == "ion":
                if with_ion:
                    x = v[-1] if self._x_variable else self._x_fixed
                    pieces.append((None, [(self.working_ion, round(float(x), DECIMALS))]))
            elif token.kind == "site":
                site = [
                    (el, round(float(v[j]) * token.multiplicity, DECIMALS))
                    for j, el in enumerate(self.elements)
                ]
                pieces.append((None, [(el, a) for el, a in site if a > 0.0]))
            else:
                pieces.append((token.text, list(token.composition)))
        symbols = [el for _, amounts in pieces for el, _ in amounts]
        if len(set(symbols)) == len(symbols):
            return "".join(
                text if text is not None else "".join(el + _amount_text(a) for el, a in amounts)
                for text, amounts in pieces
            )
        # An element in two places (the ion also on the site, say): one merged, flat formula.
        merged: dict[str, float] = {}
        for _, amounts in pieces:
            for el, a in amounts:
                merged[el] = merged.get(el, 0.0) + a
        return "".join(el + _amount_text(a) for el, a in merged.items() if round(a, DECIMALS) > 0)

    def to_frame(self, X: NDArray[np.floating]) -> pd.DataFrame:
        """Candidate rows of the points X (n, dim): amounts rounded to 4 decimals.

        Returns:
            DataFrame with columns ``candidate_id``, ``working_ion``, ``formula_charge``,
            ``formula_discharge``, ``framework`` (the template) and ``x`` (ions per formula unit,
            rounded), one row per point.
        """
        v = np.asarray(X, dtype=np.float64).reshape(-1, self.dim)
        x = v[:, -1] if self._x_variable else np.full(len(v), self._x_fixed)
        frame = pd.DataFrame(
            {
                "working_ion": np.full(len(v), self.working_ion, dtype=object),
                "formula_charge": [self._formula(row, with_ion=False) for row in v],
                "formula_discharge": [self._formula(row, with_ion=True) for row in v],
                "framework": self.template,
                "x": np.round(x, DECIMALS),
            }
        )
        frame.insert(0, "candidate_id", candidate_ids(frame))
        return frame

    # ------------------------------------------------------------------ torch features

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the :meth:`features` columns (``electrode_feature_names(ion_table)``)."""
        return electrode_feature_names(self.ion_table)

    def _constants(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        import torch

        def t(array: NDArray[np.floating]) -> torch.Tensor:
            return torch.as_tensor(array, dtype=torch.float64, device=like.device)

        index = [ELEMENTS.index(el) for el in self.support]
        scatter = np.zeros((len(self.support), len(ELEMENTS)))
        scatter[np.arange(len(index)), index] = 1.0
        scatter[0] = 0.0  # the working ion is not part of the framework fractions
        ions = list(self.ion_table)
        one_hot = np.zeros(len(ions))
        one_hot[ions.index(self.working_ion)] = 1.0
        site = np.zeros((len(self.elements), len(self.support)))
        site[np.arange(len(self.elements)), [self.support.index(el) for el in self.elements]] = 1.0
        ion_column = np.zeros(len(self.support))
        ion_column[0] = 1.0
        return {
            "b_c": t(self._b["charge"]),
            "site": t(site),
            "ion_column": t(ion_column),
            "props": t(magpie_table()[index]),
            "masses": t(self._masses),
            "scatter": t(scatter),
            "ion": t(np.array(self.ion_table.descriptors(self.working_ion), dtype=np.float64)),
            "one_hot": t(one_hot),
        }

    @staticmethod
    def _magpie(amounts: torch.Tensor, props: torch.Tensor) -> torch.Tensor:
        """Magpie statistics of compositions, (n, s) amounts -> (n, 132), as matminer computes them.

        mean and avg_dev are weighted by the amounts (differentiable); minimum, maximum, range and
        mode are over the elements present (amount rounding to non-zero) and carry no gradient.
        """
        import torch

        total = amounts.sum(-1, keepdim=True)
        mean = amounts @ props / total  # (n, p)
        spread = (props.unsqueeze(0) - mean.unsqueeze(1)).abs()  # (n, s, p)
        avg_dev = (spread * amounts.unsqueeze(-1)).sum(-2) / total
        weights = amounts.detach()
        present = (weights >= _PRESENT).unsqueeze(-1)  # (n, s, 1)
        inf = torch.tensor(math.inf, dtype=props.dtype, device=props.device)
        values = props.unsqueeze(0)
        low = torch.where(present, values, inf).amin(-2)
        high = torch.where(present, values, -inf).amax(-2)
        w = torch.where(present.squeeze(-1), weights, torch.zeros_like(weights))
        w_max = w.amax(-1, keepdim=True)
        tied = ((w - w_max).abs() <= _MODE_ATOL + _MODE_RTOL * w_max.abs()) | (w == w_max)
        mode = torch.where((tied.unsqueeze(-1) & present), values, inf).amin(-2)
        stats = torch.stack([low, high, high - low, mean, avg_dev, mode], dim=-1)  # (n, p, 6)
        return stats.reshape(amounts.shape[0], len(MAGPIE_PROPERTIES) * len(MAGPIE_STATS))

    def _pair_quantities(
        self, X: torch.Tensor, rounded: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(charged amounts (n, s), discharged amounts (n, s), constants) of the points X.

        With ``rounded``, every amount :meth:`to_frame` writes (site amounts per token, x) is
        rounded to :data:`DECIMALS` decimals in the forward pass and passed through unchanged in
        the backward pass (a straight-through estimator), so values match the written formulas
        and gradients are those of the unrounded amounts.
        """
        import torch

        def written(amount: torch.Tensor) -> torch.Tensor:
            if not rounded:
                return amount
            scale = 10.0**DECIMALS
            return amount + (torch.round(amount * scale) / scale - amount).detach()

        v = torch.as_tensor(X, dtype=torch.float64).reshape(-1, self.dim)
        c = self._constants(v)
        fractions = v[:, : len(self.elements)]
        charge = c["b_c"].expand(v.shape[0], -1)
        for token in self._template.tokens:
            if token.kind == "site":
                charge = charge + written(fractions * token.multiplicity) @ c["site"]
        x = v[:, -1] if self._x_variable else torch.full_like(v[:, 0], self._x_fixed)
        discharge = charge + written(x).unsqueeze(-1) * c["ion_column"]
        return charge, discharge, c

    def _capacity(
        self, charge: torch.Tensor, discharge: torch.Tensor, masses: torch.Tensor
    ) -> torch.Tensor:
        x = discharge[:, 0] - charge[:, 0]  # the working ion is support[0]; framework scale 1
        return x * self._valence * MAH_PER_MOL_ELECTRONS / (discharge @ masses)

    def features(self, X: torch.Tensor, *, rounded: bool = True) -> torch.Tensor:
        """Electrode features of the points X, differentiable: shape (..., dim) -> (..., d), double.

        The columns are :attr:`feature_names`. With ``rounded`` (the default) the values are
        those of :func:`~discovery.features.electrode_features` on the formulas :meth:`to_frame`
        writes for the same points (amounts rounded to 4 decimals; gradients pass straight
        through the rounding); ``rounded=False`` uses the exact amounts (a smooth function).
        Minimum, maximum, range and mode count the elements whose written amount is non-zero.
        """
        import torch

        X = torch.as_tensor(X, dtype=torch.float64)
        batch = X.shape[:-1]
        charge, discharge, c = self._pair_quantities(X, rounded)
        n = charge.shape[0]
        mag_c = self._magpie(charge, c["props"])
        mag_d = self._magpie(discharge, c["props"])
        ion_c, ion_d = charge[:, 0], discharge[:, 0]
        n_c, n_d = charge.sum(-1), discharge.sum(-1)
        x = ion_d - ion_c
        host = n_d - ion_d
        pair = torch.stack(
            [
                x / host,
                ion_c / n_c,
                ion_d / n_d,
                torch.log(self._capacity(charge, discharge, c["masses"])),
            ],
            dim=-1,
        )
        frac = (discharge @ c["scatter"]) / host.unsqueeze(-1)
        redox = redox_features_torch(frac, ion_c / host, ion_d / host, float(self._valence))
        out = torch.cat(
            [
                mag_c,
                mag_d,
                mag_d - mag_c,
                c["ion"].expand(n, len(ION_DESCRIPTORS)),
                c["one_hot"].expand(n, len(self.ion_table)),
                pair,
                frac,
                redox,
            ],
            dim=-1,
        )
        return out.reshape(*batch, out.shape[-1])

    def exact(self, X: torch.Tensor, *, rounded: bool = True) -> torch.Tensor:
        """Gravimetric capacity x·z·F / (3.6·M_discharge) in mAh/g, shape (..., dim) -> (..., 1).

        Differentiable; ``rounded`` as in :meth:`features` (the capacity of the written formulas).
        """
        import torch

        X = torch.as_tensor(X, dtype=torch.float64)
        batch = X.shape[:-1]
        charge, discharge, c = self._pair_quantities(X, rounded)
        return self._capacity(charge, discharge, c["masses"]).reshape(*batch, 1)

    def __repr__(self) -> str:
        bounds = ", ".join(
            f"{name} in [{lo:g}, {hi:g}]"
            for name, lo, hi in zip(self.names, self._lower, self._upper)
        )
        return (
            f"ContinuousSpace({self.template!r}, site {self.site}, ion {self.working_ion}: "
            f"{bounds}; {len(self._h)} inequality constraint(s))"
        )
