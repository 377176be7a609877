"""Validate the CHGNet oracle against Materials Project GGA(+U) voltages of the same pairs.

    python -m discovery_chgnet.validate \\
        --data ../shared/data/mp_insertion_electrodes_2019.csv --out runs/chgnet-validation

Selection (deterministic): every row of the table whose pair a prototype builds within
``--max-atoms`` with one of ``--prototypes``, and whose discharged formula writes the prototype's formula unit (one M for
``LiCoO2``, two for ``MgMn2O4``, six for ``MgMo6S8``: ``KMn8O16`` is a hollandite, not a layered
K0.125MnO2), is a candidate; rows are grouped by (ion, prototype, framework metals) and each
group is represented by one row: a full insertion pair (empty charged framework, every ion site
of the discharged one filled) before partial ones, and among those the row closest to the convex
hull (lowest stability_charge + stability_discharge, the most likely to be a ground-state
structure of the prototype's type); per ion,
groups are taken round-robin over the prototypes, nearest to the hull first, up to ``--per-ion``
pairs. The pairs are answered by :class:`~discovery_chgnet.oracle.CHGNetOracle` (its cache lives
under ``--out``, so a second run only recomputes what changed), and the script writes
``pairs.csv`` (every pair, both voltages, the error, status and message) and ``summary.md``
(count, MAE and signed bias, CHGNet − MP, per ion, per prototype and overall) to ``--out``, and
prints the summary. Materials Project data stays where it is: the output folder is not part of
the repository.
"""

from __future__ import annotations

__all__ = ["main", "select_pairs", "summarize"]

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from discovery.chemistry import DEFAULT_IONS, IonTable, parse_formula
from discovery.errors import DiscoveryError

from discovery_chgnet.prototypes import PROTOTYPES, PairPlan, PrototypeError, plan_pair

DEFAULT_IONS_CHECKED = ("Li", "Na", "K", "Mg", "Ca", "Zn", "Al")
#: The families the validation covers by default: layered oxides and sulfides, spinels, olivines
#: and the Chevrel multivalent host (the perovskite hosts are checked with ``--prototypes``).
DEFAULT_PROTOTYPES = ("layered-O3", "spinel", "olivine", "layered-1T", "chevrel")


def select_pairs(
    table: pd.DataFrame,
    ions: Sequence[str] = DEFAULT_IONS_CHECKED,
    per_ion: int = 4,
    max_atoms: int = 32,
    ion_table: IonTable = DEFAULT_IONS,
    prototypes: Sequence[str] = DEFAULT_PROTOTYPES,
) -> pd.DataFrame:
    """The validation pairs of an electrode table (see the module docstring).

    Returns the selected rows with added columns ``prototype``, ``metals`` (the framework metals,
    ``"Co"`` or ``"Fe-Mn"``), ``atoms`` (atoms in the larger built cell) and ``hull_distance``
    (stability_charge + stability_discharge, eV/atom), ordered by ion and selection order.
    """
    rows = table[table["working_ion"].isin(list(ions))]
    found = []
    for index, row in rows.iterrows():
        try:
            plan = plan_pair(
                row["working_ion"],
                row["formula_charge"],
                row["formula_discharge"],
                ion_table,
                max_atoms,
            )
        except (PrototypeError, DiscoveryError):
            continue
        if plan.prototype.name not in prototypes:
            continue
        written = parse_formula(row["formula_discharge"])
        if not math.isclose(sum(written[el] for el in plan.metals), plan.prototype.metals):
            continue  # KMn8O16 is hollandite, not layered K0.125MnO2: keep formulas as written
        found.append(
            {
                "index": index,
                "prototype": plan.prototype.name,
                "metals": "-".join(sorted(plan.metals)),
                "atoms": max(plan.atoms(plan.charge), plan.atoms(plan.discharge)),
                "_partial": int(plan.charge.x > 0) + int(plan.discharge.x < _full(plan)),
            }
        )
    if not found:
        return rows.iloc[:0].assign(prototype=[], metals=[], atoms=[], hull_distance=[])
    info = pd.DataFrame(found).set_index("index")
    cand = rows.loc[info.index].join(info)
    cand["hull_distance"] = cand["stability_charge"].fillna(np.inf) + cand[
        "stability_discharge"
    ].fillna(np.inf)
    cand["_order"] = np.arange(len(cand))
    cand = cand.sort_values(["_partial", "hull_distance", "_order"], kind="stable")
    best = cand.drop_duplicates(["working_ion", "prototype", "metals"], keep="first")
    order = {p.name: i for i, p in enumerate(PROTOTYPES)}
    picked = []
    for ion in ions:
        groups = best[best["working_ion"] == ion]
        queues = [
            g for _, g in sorted(groups.groupby("prototype"), key=lambda item: order[item[0]])
        ]
        taken = 0
        depth = 0
        while taken < per_ion and any(depth < len(q) for q in queues):
            for q in queues:
                if depth < len(q) and taken < per_ion:
                    picked.append(q.iloc[depth])
                    taken += 1
            depth += 1
    out = pd.DataFrame(picked).drop(columns=["_order", "_partial"])
    return out.reset_index(names="row")


def _full(plan: PairPlan) -> float:
    """x of the fully discharged prototype (all ion sites, or the electron limit)."""
    proto = plan.prototype
    if proto.max_electrons is not None:
        return min(proto.ion_sites, proto.max_electrons / plan.valence)
    return float(proto.ion_sites)


def summarize(pairs: pd.DataFrame) -> str:
    """Markdown tables of count, MAE and signed bias of the voltage (CHGNet − MP, V) and MAE of
    max_delta_volume (fraction) per ion, per prototype and overall, over the pairs answered;
    failures are counted."""
    ok = pairs[pairs["status"] == "ok"]

    def table(by: str | None) -> str:
        lines = [
            f"| {by or 'all'} | pairs | answered | MAE (V) | bias (V) | volume change MAE |",
            "|---|---|---|---|---|---|",
        ]
        keys = [None] if by is None else list(dict.fromkeys(pairs[by]))
        for key in keys:
            sel = pairs if key is None else pairs[pairs[by] == key]
            rows = ok.loc[ok.index.intersection(sel.index)]
            err = rows["error_v"]
            dvol = (rows["chgnet_max_delta_volume"] - rows["max_delta_volume"]).abs()
            mae = f"{err.abs().mean():.2f}" if len(err) else "–"
            bias = f"{err.mean():+.2f}" if len(err) else "–"
            vol = f"{dvol.mean():.3f}" if len(dvol) else "–"
            name = "all" if key is None else str(key)
            lines.append(f"| {name} | {len(sel)} | {len(err)} | {mae} | {bias} | {vol} |")
        return "\n".join(lines)

    return "\n\n".join([table("working_ion"), table("prototype"), table(None)])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the validation (see the module docstring); exit status 0, or 2 on bad input."""
    from discovery.data import load_electrodes
    from discovery.oracles import Request
    from discovery.space import candidate_ids

    from discovery_chgnet.oracle import CHGNetOptions, CHGNetOracle
    from discovery_chgnet.relax import chgnet_version

    parser = argparse.ArgumentParser(
        prog="python -m discovery_chgnet.validate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="electrode table (MP columns)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--ions", default=",".join(DEFAULT_IONS_CHECKED), help="ions, comma-separated"
    )
    parser.add_argument(
        "--prototypes",
        default=",".join(DEFAULT_PROTOTYPES),
        help="prototypes, comma-separated (default: " + ",".join(DEFAULT_PROTOTYPES) + ")",
    )
    parser.add_argument("--per-ion", type=int, default=4, help="pairs per ion (default 4)")
    parser.add_argument("--max-atoms", type=int, default=32, help="atoms per cell (default 32)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--fmax", type=float, default=0.1, help="fmax in eV/Å (default 0.1)")
    parser.add_argument("--max-steps", type=int, default=300, help="steps (default 300)")
    args = parser.parse_args(argv)
    try:
        table = load_electrodes(args.data, drop_invalid=True)
        ions = [i.strip() for i in args.ions.split(",") if i.strip()]
        prototypes = [p.strip() for p in args.prototypes.split(",") if p.strip()]
        unknown = sorted(set(prototypes) - {p.name for p in PROTOTYPES})
        if unknown:
            raise DiscoveryError(
                f"--prototypes: unknown {', '.join(unknown)} "
                f"(known: {', '.join(p.name for p in PROTOTYPES)})"
            )
        pairs = select_pairs(table, ions, args.per_ion, args.max_atoms, prototypes=prototypes)
    except DiscoveryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len(pairs) == 0:
        print("error: no pair of the table fits a prototype", file=sys.stderr)
        return 2
    pairs["candidate_id"] = candidate_ids(pairs)
    options = CHGNetOptions(
        workers=args.workers,
        fmax_ev_per_a=args.fmax,
        max_steps=args.max_steps,
        max_atoms=args.max_atoms,
    )
    oracle = CHGNetOracle(args.out, options=options)
    # new settings are new jobs (finished relaxations still come from the cache)
    setting = f"{args.fmax}-{args.max_steps}-{args.max_atoms}-{chgnet_version()}"
    requests = [
        Request(
            r.candidate_id,
            r.working_ion,
            r.formula_charge,
            r.formula_discharge,
            0,
            f"validate/{setting}/{r.candidate_id}",
        )
        for r in pairs.itertuples()
    ]
    print(f"{len(pairs)} pairs, {pairs['working_ion'].nunique()} ions; relaxing ...", flush=True)
    start = time.perf_counter()
    try:
        jobs = oracle.submit(requests)
        shown = -1
        while True:
            states = oracle.poll(jobs)
            left = sum(s not in ("done", "failed") for s in states.values())
            if left != shown:
                print(f"{len(jobs) - left}/{len(jobs)} answered", flush=True)
                shown = left
            if not left:
                break
            time.sleep(2.0)
        results = {r.job_id: r for r in oracle.collect(jobs)}
    finally:
        oracle.close()
    seconds = time.perf_counter() - start
    answers = [results[j] for j in jobs]
    pairs["status"] = [r.status for r in answers]
    pairs["chgnet_voltage"] = [r.values.get("average_voltage", np.nan) for r in answers]
    pairs["chgnet_max_delta_volume"] = [r.values.get("max_delta_volume", np.nan) for r in answers]
    pairs["error_v"] = pairs["chgnet_voltage"] - pairs["average_voltage"]
    pairs["message"] = [r.message for r in answers]
    args.out.mkdir(parents=True, exist_ok=True)
    columns = [
        "battery_id",
        "working_ion",
        "prototype",
        "formula_charge",
        "formula_discharge",
        "atoms",
        "hull_distance",
        "average_voltage",
        "chgnet_voltage",
        "error_v",
        "max_delta_volume",
        "chgnet_max_delta_volume",
        "status",
        "message",
    ]
    pairs[columns].to_csv(args.out / "pairs.csv", index=False)
    summary = summarize(pairs)
    header = (
        f"CHGNet oracle vs Materials Project GGA(+U) average voltages: {len(pairs)} pairs, "
        f"{pairs['working_ion'].nunique()} ions, {seconds:.0f} s with {args.workers} workers "
        f"(fmax {args.fmax} eV/Å, max {args.max_steps} steps, cells up to {args.max_atoms} atoms)"
    )
    (args.out / "summary.md").write_text(header + "\n\n" + summary + "\n")
    print(header + "\n\n" + summary)
    failed = pairs[pairs["status"] != "ok"]
    for r in failed.itertuples():
        print(f"failed: {r.working_ion} {r.formula_charge} -> {r.formula_discharge}: {r.message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
