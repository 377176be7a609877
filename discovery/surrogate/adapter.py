"""The one boundary to BoTorch: a deep ensemble seen as a BoTorch ``Model``.

The posterior at a batch of ``q`` points is the Gaussian that matches the first two moments of the
ensemble mixture jointly over the batch: mean = mixture mean, covariance = covariance of the member
means across the ``q`` points (and across targets) plus the mean member variance on the diagonal.
Its marginals therefore equal :meth:`DeepEnsemble.predict` exactly, points that the members move
together are correlated, and the reparameterization trick gives gradients with respect to the
input features, so every BoTorch Monte-Carlo acquisition function (qLogNEHVI, qNParEGO, ...) and
``optimize_acqf`` can use it unchanged.
"""

from __future__ import annotations

__all__ = ["EnsembleModel"]

from typing import Any

import torch
from botorch.acquisition.objective import PosteriorTransform
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from linear_operator.operators import DenseLinearOperator
from torch import Tensor

from discovery.surrogate.ensemble import DeepEnsemble


class EnsembleModel(Model):
    """BoTorch ``Model`` whose posterior is a trained :class:`DeepEnsemble`.

    Inputs ``X`` are raw feature vectors of shape ``batch_shape x q x d`` (d = number of ensemble
    features); outputs are the ensemble targets (``num_outputs`` = T), in target units. The
    posterior is the calibrated predictive distribution, so it already contains the aleatoric
    (observation) noise; ``observation_noise`` adds nothing.
    """

    def __init__(self, ensemble: DeepEnsemble) -> None:
        super().__init__()
        self.ensemble = ensemble
        self._num_outputs = len(ensemble.target_names)

    @property
    def num_outputs(self) -> int:
        return self._num_outputs

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size()

    def posterior(
        self,
        X: Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool | Tensor = False,
        posterior_transform: PosteriorTransform | None = None,
        **kwargs: Any,
    ) -> GPyTorchPosterior:
        """Joint Gaussian posterior over ``batch_shape x q`` points and the selected outputs."""
        means, variances = self.ensemble.member_moments(X)  # (M, *batch, q, T)
        if output_indices is not None:
            means, variances = means[..., output_indices], variances[..., output_indices]
        means, variances = means.to(X.dtype), variances.to(X.dtype)
        members, *batch, q, t = means.shape
        mean = means.mean(0)
        deviations = (means - mean).movedim(0, -1).reshape(*batch, q * t, members)
        covariance = deviations @ deviations.transpose(-1, -2) / members
        covariance = covariance + torch.diag_embed(variances.mean(0).reshape(*batch, q * t))
        # A lazy operator: the covariance is factorized once, when the posterior is sampled.
        lazy = DenseLinearOperator(covariance)
        if t == 1:
            mvn: MultivariateNormal = MultivariateNormal(mean.squeeze(-1), lazy)
        else:
            mvn = MultitaskMultivariateNormal(mean, lazy, interleaved=True)
        posterior = GPyTorchPosterior(mvn)
        if posterior_transform is not None:
            return posterior_transform(posterior)
        return posterior
