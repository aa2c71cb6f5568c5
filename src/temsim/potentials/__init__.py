"""Projected potentials: scattering-factor parametrizations, projection and slicing.

Public API: :class:`Potential` (the sliced specimen potential), :func:`load_parametrization`
and :class:`Parametrization` (electron scattering factors and the atomic potentials they
imply), and :func:`projected_potential_at` / :func:`band_limited_radial_potential`
(real-space references).
"""

from __future__ import annotations

from temsim.potentials.array_potential import ArrayPotential
from temsim.potentials.parametrizations import (
    PARAMETRIZATIONS,
    Parametrization,
    ParametrizationName,
    load_parametrization,
)
from temsim.potentials.potential import PROJECTIONS, Potential, ProjectionName
from temsim.potentials.projection import band_limited_radial_potential, projected_potential_at

__all__ = [
    "Potential",
    "ArrayPotential",
    "ProjectionName",
    "PROJECTIONS",
    "Parametrization",
    "ParametrizationName",
    "PARAMETRIZATIONS",
    "load_parametrization",
    "band_limited_radial_potential",
    "projected_potential_at",
]
