"""Figures shared by the experiments (matplotlib, Agg backend, PNG files written atomically)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from nequip_jax._io import atomic_write_bytes  # noqa: E402
from nequip_jax.uncertainty.metrics import paper_grid, tpr_ppv  # noqa: E402

__all__ = [
    "save_figure",
    "uncertainty_vs_error",
    "tpr_ppv_maps",
    "landscapes",
    "error_distributions",
]


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def uncertainty_vs_error(
    panels: Mapping[str, tuple[np.ndarray, np.ndarray, str]], path: str | Path, title: str = ""
) -> Path:
    """Fig. 2 of Zhu et al. (2023): 2-D histograms of per-atom uncertainty against ε.

    Args:
        panels: name -> (eps [n] in eV/Å, uncertainty [n], uncertainty label).
        path: output PNG.
    """
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False, layout="constrained"
    )
    for ax, (name, (eps, u, label)) in zip(axes[0], panels.items()):
        eps_mev = 1000 * np.asarray(eps)
        h = ax.hist2d(eps_mev, u, bins=60, norm=LogNorm(), cmap="viridis")
        fig.colorbar(h[3], ax=ax, label="atoms per bin")
        rms = np.sqrt(np.mean(eps_mev**2))
        ax.axvline(rms, color="k", ls="--", lw=1, label=f"ε̄ = {rms:.0f} meV/Å")
        ax.set_xlabel("ε (meV/Å)")
        ax.set_ylabel(label)
        ax.set_title(name)
        ax.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def tpr_ppv_maps(
    panels: Mapping[str, tuple[np.ndarray, np.ndarray, str]],
    path: str | Path,
    n: int = 40,
    title: str = "",
) -> Path:
    """Fig. 3 of Zhu et al. (2023): TPR, PPV and TPR×PPV over (U_cutoff, ε_cutoff) per method."""
    fig, axes = plt.subplots(len(panels), 3, figsize=(12, 3.2 * len(panels)), squeeze=False)
    for row, (name, (eps, u, label)) in zip(axes, panels.items()):
        u_cut, e_cut = paper_grid(u, eps, n)
        rates = tpr_ppv(u, eps, u_cut, e_cut)
        extent = [0, 1000 * e_cut[-1], u_cut[0], u_cut[-1]]
        for ax, (what, values) in zip(
            row, (("TPR", rates.tpr), ("PPV", rates.ppv), ("TPR×PPV", rates.tpr_x_ppv))
        ):
            im = ax.imshow(
                values, origin="lower", aspect="auto", extent=extent, vmin=0, vmax=1, cmap="magma"
            )
            fig.colorbar(im, ax=ax)
            ax.set_title(f"{name}: {what}")
            ax.set_xlabel("ε_cutoff (meV/Å)")
            ax.set_ylabel(f"U_cutoff ({label})")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def _grid(alpha: np.ndarray, gamma: np.ndarray, values: np.ndarray):
    """Place scattered (α, γ) points on their regular grid, or ``None`` if they are not on one.

    Returns ``(alpha_axis [n_a], gamma_axis [n_g], grid [n_g, n_a])`` with NaN for missing points.
    """
    a = np.round(np.asarray(alpha, np.float64) % 360.0, 3)
    g = np.round(np.asarray(gamma, np.float64) % 360.0, 3)
    a_axis, a_idx = np.unique(a, return_inverse=True)
    g_axis, g_idx = np.unique(g, return_inverse=True)
    if a_axis.size * g_axis.size > 4 * a.size or a_axis.size < 2 or g_axis.size < 2:
        return None
    if np.unique(a_idx * g_axis.size + g_idx).size != a.size:
        return None  # two structures on one grid point
    grid = np.full((g_axis.size, a_axis.size), np.nan)
    grid[g_idx, a_idx] = values
    return a_axis, g_axis, grid


def landscapes(
    rows: list[tuple[str, Mapping[str, np.ndarray]]],
    alpha: np.ndarray,
    gamma: np.ndarray,
    path: str | Path,
    title: str = "",
) -> Path:
    """Fig. 4 of Zhu et al. (2023): landscapes over the dihedrals α (x) and γ (y) at fixed β.

    Args:
        rows: one ``(colour-bar label, {panel title: values [S]})`` per figure row, e.g. the
            normalised uncertainties (Eq. (11)) and the energies relative to their minimum.
        alpha, gamma: [S] dihedrals in degrees of the S structures.
        path: output PNG.

    Points on a regular grid are drawn as cells (missing grid points left blank); scattered
    points as squares.
    """
    n_cols = max(len(panels) for _, panels in rows)
    fig, axes = plt.subplots(
        len(rows),
        n_cols,
        figsize=(3.9 * n_cols, 3.2 * len(rows)),
        squeeze=False,
        layout="constrained",
    )
    for r, (label, panels) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            if c >= len(panels):
                ax.axis("off")
                continue
            name, values = list(panels.items())[c]
            placed = _grid(alpha, gamma, values)
            if placed is not None:
                a_axis, g_axis, grid = placed
                im = ax.pcolormesh(a_axis, g_axis, grid, shading="nearest", cmap="viridis")
            else:
                im = ax.scatter(alpha, gamma, c=values, marker="s", s=18, cmap="viridis")
            fig.colorbar(im, ax=ax, label=label if c == len(panels) - 1 else None)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("α (°)")
            if c == 0:
                ax.set_ylabel("γ (°)")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def error_distributions(
    panels: Mapping[str, Mapping[str, np.ndarray]],
    path: str | Path,
    threshold: float = 0.2,
    title: str = "",
) -> Path:
    """Fig. 5 of Zhu et al. (2023): distributions of per-atom ε, one panel per method.

    Args:
        panels: method name -> {curve label (e.g. "active", "random"): ε [n] in eV/Å}.
        path: output PNG.
        threshold: the dashed line (eV/Å), 200 meV/Å for ε̄_200.
    """
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False, layout="constrained"
    )
    every = np.concatenate([np.asarray(e) for curves in panels.values() for e in curves.values()])
    bins = np.linspace(0.0, 1000 * float(np.max(every)), 60)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        for label, eps in curves.items():
            eps_mev = 1000 * np.asarray(eps)
            rms = np.sqrt(np.mean(eps_mev**2))
            ax.hist(eps_mev, bins=bins, histtype="step", lw=1.4, label=f"{label} (ε̄ {rms:.0f})")
        ax.axvline(1000 * threshold, color="k", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("ε (meV/Å)")
        ax.set_ylabel("atoms")
        ax.set_title(name)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
