"""PNG figures of the language-model tools: a contact map and a single-mutant heatmap."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foldatlas.lm.model import AMINO_ACIDS

__all__ = ["contact_png", "scan_heatmap_png"]


def _save(fig, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def contact_png(probs: np.ndarray, path: str | Path, title: str = "") -> None:
    """The contact probability map (1-based residue axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(probs)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    im = ax.imshow(probs, cmap="Blues", vmin=0, vmax=1, origin="upper", extent=(0.5, n + 0.5, n + 0.5, 0.5))
    fig.colorbar(im, ax=ax, label="contact probability")
    ax.set_xlabel("residue")
    ax.set_ylabel("residue")
    ax.set_title(title or "contacts")
    _save(fig, path)


def scan_heatmap_png(rows: list[dict], sequence: str, offset: int, method: str, path: str | Path) -> None:
    """Scores of single substitutions: amino acids x positions, the wild type marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.full((20, len(sequence)), np.nan)
    for row in rows:
        if row["n_mutations"] != 1 or method not in row:
            continue
        m = row["mutant"]
        grid[AMINO_ACIDS.index(m[-1]), int(m[1:-1]) - offset] = row[method]
    for i, wt in enumerate(sequence):
        if wt in AMINO_ACIDS:
            grid[AMINO_ACIDS.index(wt), i] = 0.0
    width = min(40.0, 2.0 + len(sequence) * 0.12)
    fig, ax = plt.subplots(figsize=(width, 4.2))
    bound = np.nanpercentile(np.abs(grid), 99) if np.isfinite(grid).any() else 1.0
    im = ax.imshow(grid, aspect="auto", cmap="RdBu", vmin=-bound, vmax=bound, interpolation="nearest",
                   extent=(offset - 0.5, offset + len(sequence) - 0.5, 19.5, -0.5))
    ax.set_yticks(range(20), list(AMINO_ACIDS))
    ax.set_xlabel("position")
    ax.set_title(f"{method.replace('_', ' ')} (blue: better than wild type; wild type = 0)")
    fig.colorbar(im, ax=ax, fraction=0.02)
    _save(fig, path)
