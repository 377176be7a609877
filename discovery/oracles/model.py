"""The model oracle: a reference deep ensemble stands in for DFT (an in-silico campaign).

Useful where no table can answer, e.g. a continuous-composition campaign before a DFT proxy or a
lab is connected, and for testing strategies against a known ground truth. It answers every learned
target of the reference model with the model's mean (plus optional Gaussian noise of
``noise_std_v`` volts, seeded by the candidate id, so answers are reproducible); capacity and
energy come from the formulas as for every oracle. Its fidelity label is ``"surrogate"`` so no one
mistakes its numbers for measurements.

The reference model is either loaded (``model``: a directory written by ``discover train``) or
trained once from a labeled table (``data``) and cached under ``<workdir>/oracle/``, keyed by the
table's hash and the training settings.
"""

from __future__ import annotations

__all__ = ["ModelOracle", "ModelOracleOptions"]

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from discovery.oracles.base import (
    JobStatus,
    OracleContext,
    Request,
    Result,
    parse_options,
    utc_now,
)

if TYPE_CHECKING:
    from discovery.chemistry.ions import IonTable
    from discovery.surrogate import DeepEnsemble

_PREFIX = "model:"


class ModelOracleOptions(BaseModel):
    """``oracle.options`` of the model oracle (give ``model`` or ``data``)."""

    model_config = ConfigDict(extra="forbid")

    model: Path | None = Field(default=None, description="Directory of a saved reference model.")
    data: Path | None = Field(
        default=None, description="Labeled electrode table to train the reference model on."
    )
    members: int = Field(default=16, gt=0, description="Ensemble members when training (count).")
    max_epochs: int = Field(default=120, gt=0, description="Training epochs cap when training.")
    seed: int = Field(default=12345, description="Training seed of the reference model.")
    noise_std_v: float = Field(
        default=0.0, ge=0.0, description="Std of Gaussian noise added to voltages, in V."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelOracleOptions:
        if (self.model is None) == (self.data is None):
            raise ValueError("give exactly one of 'model' (a saved model) or 'data' (a table)")
        return self


class ModelOracle:
    """Answers with a reference ensemble's predictions; see the module docstring."""

    fidelity = "surrogate"

    def __init__(
        self, model: DeepEnsemble, ions: IonTable, noise_std_v: float = 0.0, name: str = "model"
    ) -> None:
        self.name = name
        self.model = model
        self.ions = ions
        self.noise_std_v = noise_std_v
        self._jobs: dict[str, Request] = {}

    @classmethod
    def from_options(cls, options: dict[str, Any], context: OracleContext) -> ModelOracle:
        from discovery.surrogate import DeepEnsemble

        opts = parse_options(ModelOracleOptions, options, "model")
        if opts.model is not None:
            return cls(DeepEnsemble.load(context.path(opts.model)), context.ions, opts.noise_std_v)
        assert opts.data is not None
        return cls(_trained(context.path(opts.data), opts, context), context.ions, opts.noise_std_v)

    def submit(self, requests: Sequence[Request]) -> list[str]:
        jobs = []
        for r in requests:
            job = _PREFIX + r.candidate_id
            self._jobs.setdefault(job, r)
            jobs.append(job)
        return jobs

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        return {j: ("done" if j in self._jobs else "failed") for j in job_ids}

    def collect(self, job_ids: Sequence[str]) -> list[Result]:
        from discovery.surrogate import predict_electrodes, prediction_columns

        known = [j for j in job_ids if j in self._jobs]
        now = utc_now()
        out = [
            Result(
                j[len(_PREFIX) :],
                j,
                "failed",
                {},
                self.name,
                self.fidelity,
                now,
                now,
                "unknown job id (submitted before a restart?)",
            )
            for j in job_ids
            if j not in self._jobs
        ]
        if not known:
            return out
        reqs = [self._jobs[j] for j in known]
        frame = pd.DataFrame(
            {
                "working_ion": [r.working_ion for r in reqs],
                "formula_charge": [r.formula_charge for r in reqs],
                "formula_discharge": [r.formula_discharge for r in reqs],
            }
        )
        predicted = predict_electrodes(self.model, frame, ions=self.ions)
        for i, (job, req) in enumerate(zip(known, reqs)):
            values = {}
            for target in self.model.target_names:
                value = float(predicted[prediction_columns(target)[0]].iloc[i])
                if target == "average_voltage" and self.noise_std_v > 0:
                    seed = int(hashlib.sha256(req.candidate_id.encode()).hexdigest()[:8], 16)
                    value += float(np.random.default_rng(seed).normal(0.0, self.noise_std_v))
                values[target] = value
            out.append(
                Result(req.candidate_id, job, "ok", values, self.name, self.fidelity, now, now)
            )
        return out

    def close(self) -> None:
        self._jobs.clear()


def _trained(data: Path, opts: ModelOracleOptions, context: OracleContext) -> DeepEnsemble:
    """Train the reference model on ``data`` once; later runs load it from the cache."""
    from discovery.data import load_electrodes
    from discovery.surrogate import DeepEnsemble, EnsembleConfig, train_electrode_model
    from discovery.surrogate.electrode import table_sha256

    table = load_electrodes(data, drop_invalid=True, ions=context.ions)
    key = hashlib.sha256(
        f"{table_sha256(table, ['working_ion', 'formula_charge', 'formula_discharge', 'average_voltage'])}"
        f"|{opts.members}|{opts.max_epochs}|{opts.seed}".encode()
    ).hexdigest()[:12]
    cache = context.workdir / "oracle" / f"model-{key}"
    if (cache / "manifest.json").is_file():
        return DeepEnsemble.load(cache)
    config = EnsembleConfig(members=opts.members, max_epochs=opts.max_epochs, seed=opts.seed)
    model = train_electrode_model(table, config=config, ions=context.ions)
    model.save(cache)
    return model
