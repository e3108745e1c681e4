"""PNG images of an atlas entry: AlphaFold DB's PAE image and small thumbnails (structure, pLDDT, PAE).

matplotlib (Agg) draws them; nothing here imports torch.
"""

from __future__ import annotations

import io

import numpy as np

from foldatlas.errors import InvalidOptionError, UnknownEntryError

__all__ = ["pae_png", "thumbnail_png", "THUMBNAIL_KINDS", "PLDDT_COLOURS"]

THUMBNAIL_KINDS = ("structure", "plddt", "pae")
# AlphaFold DB's pLDDT colours: > 90, 70-90, 50-70, < 50.
PLDDT_COLOURS = ("#0053D6", "#65CBF3", "#FFDB13", "#FF7D45")
_CHAIN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _figure(width_px: int, height_px: int, dpi: int = 100):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plddt_colours(plddt: np.ndarray) -> list[str]:
    """AlphaFold DB's colour of each residue's pLDDT (0-100)."""
    bands = np.digitize(np.asarray(plddt, np.float64), [50.0, 70.0, 90.0])  # 0: < 50 ... 3: > 90
    return [PLDDT_COLOURS[3 - b] for b in bands.tolist()]


def pae_png(pae: np.ndarray, max_pae: float | None = None, size_px: int = 600) -> bytes:
    """The PAE heatmap as AlphaFold DB draws its ``paeImageUrl`` (green, dark = confident, 0 to the model's
    maximum), with axes and a colour bar."""
    pae = np.asarray(pae, np.float64)
    fig = _figure(size_px, int(size_px * 0.85))
    ax = fig.add_subplot(1, 1, 1)
    n = len(pae)
    im = ax.imshow(pae, cmap="Greens_r", vmin=0, vmax=max_pae or float(pae.max(initial=1.0)),
                   extent=(0.5, n + 0.5, n + 0.5, 0.5))
    ax.set(xlabel="Scored residue", ylabel="Aligned residue")
    fig.colorbar(im, ax=ax, label="Expected position error (Ångströms)")
    fig.tight_layout()
    return _png(fig)


def _projected(ca: np.ndarray) -> np.ndarray:
    """C-alphas on their two principal axes (the widest view)."""
    centred = ca - ca.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def thumbnail_png(entry, kind: str = "structure", size_px: int = 256) -> bytes:
    """A square thumbnail of an entry.

    Parameters
    ----------
    entry : foldatlas.atlas.entry.AtlasEntry
        Read with its PAE for ``kind="pae"``.
    kind : {"structure", "plddt", "pae"}
        ``structure``: the C-alpha trace on its two principal axes, coloured by pLDDT (AlphaFold DB's colours) or,
        without pLDDT, by chain; ``plddt``: the pLDDT curve on the confidence bands; ``pae``: the PAE heatmap.
    size_px : int

    Raises
    ------
    InvalidOptionError
        For an unknown kind.
    UnknownEntryError
        For ``pae`` of an entry without PAE, ``plddt`` of one without pLDDT.
    """
    if kind not in THUMBNAIL_KINDS:
        raise InvalidOptionError(f"unknown thumbnail '{kind[:40]}': use one of {', '.join(THUMBNAIL_KINDS)}")
    fig = _figure(size_px, size_px)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.96))
    ax.set_axis_off()
    if kind == "pae":
        if entry.pae is None:
            raise UnknownEntryError(f"entry '{entry.id}' has no PAE (imported, or built with --no-pae)")
        ax.imshow(entry.pae, cmap="Greens_r", vmin=0, vmax=entry.max_pae or float(np.max(entry.pae)))
        return _png(fig)
    if kind == "plddt":
        if entry.plddt is None:
            raise UnknownEntryError(f"entry '{entry.id}' has no pLDDT (an imported experimental structure)")
        for (lo, hi), colour in zip(((90, 100), (70, 90), (50, 70), (0, 50)), PLDDT_COLOURS):
            ax.axhspan(lo, hi, color=colour, alpha=0.25, lw=0)
        ax.plot(np.arange(1, len(entry.plddt) + 1), entry.plddt, color="black", lw=1.0)
        ax.set(xlim=(1, max(len(entry.plddt), 2)), ylim=(0, 100))
        return _png(fig)
    from matplotlib.collections import LineCollection

    from foldatlas.structure.io import ca_trace

    ca, _, chains = ca_trace(entry.atoms())
    xy = _projected(np.asarray(ca, np.float64))
    same_chain = chains[1:] == chains[:-1]
    segments = np.stack([xy[:-1], xy[1:]], axis=1)[same_chain]
    if entry.plddt is not None and len(entry.plddt) == len(xy):
        colours = np.array(plddt_colours((entry.plddt[:-1] + entry.plddt[1:]) / 2))[same_chain]
    else:
        index = np.unique(chains, return_inverse=True)[1]
        colours = np.array([_CHAIN_COLOURS[i % len(_CHAIN_COLOURS)] for i in index[:-1]])[same_chain]
    ax.add_collection(LineCollection(segments, colors=colours, linewidths=max(1.0, size_px / 128),
                                     capstyle="round"))
    span = (xy.max(axis=0) - xy.min(axis=0)).max() / 2 + 2.0 if len(xy) else 1.0
    centre = (xy.max(axis=0) + xy.min(axis=0)) / 2 if len(xy) else np.zeros(2)
    ax.set(xlim=(centre[0] - span, centre[0] + span), ylim=(centre[1] - span, centre[1] + span), aspect="equal")
    return _png(fig)
