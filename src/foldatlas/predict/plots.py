"""The pLDDT curve and PAE heatmap of a prediction, as one PNG (matplotlib, Agg)."""

from __future__ import annotations

import io

import numpy as np

__all__ = ["confidence_png"]

# AlphaFold DB's pLDDT bands.
_BANDS = ((90, 100, "#0053D6", "very high (>90)"), (70, 90, "#65CBF3", "confident (70-90)"),
          (50, 70, "#FFDB13", "low (50-70)"), (0, 50, "#FF7D45", "very low (<50)"))


def confidence_png(prediction, dpi: int = 100) -> bytes:
    """Render the pLDDT curve (left) and PAE heatmap (right) as PNG bytes.

    Chain boundaries of a complex are drawn as lines on both panels.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=dpi)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1]})
    n = len(prediction.plddt)
    x = np.arange(1, n + 1)
    for lo, hi, color, label in _BANDS:
        ax1.axhspan(lo, hi, color=color, alpha=0.15, lw=0, label=label)
    ax1.plot(x, prediction.plddt, color="black", lw=1.2)
    ax1.set(xlim=(1, max(n, 2)), ylim=(0, 100), xlabel="residue (all chains in order)", ylabel="pLDDT",
            title=f"{prediction.name} ({prediction.model_name}): mean pLDDT {prediction.mean_plddt:.1f}")
    ax1.legend(loc="lower left", fontsize=7, ncol=2, frameon=False)
    im = ax2.imshow(prediction.pae, cmap="Greens_r", vmin=0, vmax=prediction.max_pae,
                    extent=(0.5, n + 0.5, n + 0.5, 0.5))
    title = f"PAE (pTM {prediction.ptm:.3f}" + (f", ipTM {prediction.iptm:.3f})" if prediction.iptm is not None else ")")
    ax2.set(xlabel="scored residue", ylabel="aligned residue", title=title)
    fig.colorbar(im, ax=ax2, label="expected position error (Å)")
    bounds = np.cumsum([len(c) for c in prediction.record.chains])[:-1]
    for b in bounds:
        ax1.axvline(b + 0.5, color="red", lw=1, ls="--")
        ax2.axvline(b + 0.5, color="red", lw=1)
        ax2.axhline(b + 0.5, color="red", lw=1)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
