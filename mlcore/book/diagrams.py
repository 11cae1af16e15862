"""Schematic diagrams of the book's methods, drawn with matplotlib only (boxes, arrows, labels).

One function per method, each returning a :class:`matplotlib.figure.Figure` (not registered with pyplot,
so nothing is left open; a notebook cell that ends with ``diagrams.maml()`` shows it)::

    from mlcore.book import diagrams

    diagrams.maml()

Every figure uses the book's notation (the *Notation* page): θ the meta-learned weights, φ_i the weights
adapted to task i, f_θ the embedding, S / Q a task's support and query sets, N ways, K shots, α the inner
learning rate, β the outer one. Each method is drawn in its colour from :mod:`mlcore.book.plotting`.
The figures are 8 inches wide at most, the width of a book page.
"""
from __future__ import annotations

from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from .plotting import colour

__all__ = ["maml"]

GREY = "#555555"
FONT = 10


def _canvas(width: float, height: float, title: str) -> tuple[Figure, object]:
    """A figure of ``width`` x ``height`` inches whose axes run in the same units (1 unit = 1 inch)."""
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    ax.text(width / 2, height - 0.12, title, ha="center", va="top", fontsize=FONT + 1, fontweight="bold")
    return fig, ax


def _box(ax, x: float, y: float, w: float, h: float, text: str, edge: str = GREY, fill: float = 0.15,
         fontsize: float = FONT, **kw) -> tuple[float, float, float, float]:
    """A rounded box centred at (x, y), ``w`` x ``h``, with ``text`` in it; returns (left, right, bottom, top)."""
    face = to_rgba(edge, fill) if fill else "white"
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=face, edgecolor=edge, linewidth=1.4, **kw))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
    return x - w / 2, x + w / 2, y - h / 2, y + h / 2


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], text: str | None = None, colour_: str = GREY,
           style: str = "-|>", dashed: bool = False, rad: float = 0.0, offset: tuple[float, float] = (0, 0.12),
           fontsize: float = FONT - 1, lw: float = 1.4, **text_kw) -> None:
    """An arrow from ``start`` to ``end``; ``text`` is written at its middle, shifted by ``offset``."""
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": style, "color": colour_, "lw": lw, "linestyle": "--" if dashed else "-",
                            "connectionstyle": f"arc3,rad={rad}", "shrinkA": 0, "shrinkB": 0,
                            "mutation_scale": 12})
    if text:
        mx, my = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
        ax.text(mx, my, text, ha=text_kw.pop("ha", "center"), va=text_kw.pop("va", "bottom"), fontsize=fontsize,
                color=text_kw.pop("color", colour_), **text_kw)


# ----------------------------------------------------------------------------- chapter 4
def maml(tasks: int = 3) -> Figure:
    """MAML: from θ, inner gradient steps on each task's support set give φ_i; the query losses at φ_i are
    averaged into the meta-loss, whose gradient flows back through the inner steps to θ."""
    c = colour("maml")
    height = 0.6 + 0.95 * tasks
    fig, ax = _canvas(8.0, height, "MAML: inner loop per task, outer loop on θ")
    top = height - 0.75
    ys = [top - 0.95 * i for i in range(tasks)]
    mid = (ys[0] + ys[-1]) / 2
    _box(ax, 0.65, mid, 0.9, 0.7, "$\\theta$\nmeta-\nparameters", edge=c, fill=0.3)
    for i, y in enumerate(ys, 1):
        name = f"{i}" if i < tasks else "B"
        _arrow(ax, (1.1, mid), (1.6, y), colour_=GREY)
        _box(ax, 2.9, y, 2.6, 0.66,
             f"inner loop on $S_{{{name}}}$: $\\phi_{{{name}}} \\leftarrow \\theta$, then $J$ times\n"
             f"$\\phi_{{{name}}} \\leftarrow \\phi_{{{name}}} - \\alpha\\nabla_\\phi"
             f"\\mathcal{{L}}_{{S_{{{name}}}}}(\\phi_{{{name}}})$", edge=c, fontsize=FONT - 1)
        _arrow(ax, (4.2, y), (4.57, y))
        _box(ax, 4.85, y, 0.55, 0.45, f"$\\phi_{{{name}}}$", edge=c, fill=0.3)
        _arrow(ax, (5.12, y), (5.5, y))
        _box(ax, 6.0, y, 0.95, 0.45, f"$\\mathcal{{L}}_{{Q_{{{name}}}}}(\\phi_{{{name}}})$", edge=GREY, fill=0.08)
        _arrow(ax, (6.48, y), (6.9, mid))
        if i == tasks - 1 and tasks > 2:
            ax.text(2.9, (y + ys[-1]) / 2, "⋮", ha="center", va="center", fontsize=FONT + 2)
    _box(ax, 7.4, mid, 0.95, 0.95, "$\\mathcal{L}_{\\mathrm{meta}}=$\n$\\frac{1}{B}\\sum_i\\,"
         "\\mathcal{L}_{Q_i}(\\phi_i)$", edge=c, fill=0.3, fontsize=FONT - 1)
    bottom = ys[-1] - 0.62
    ax.plot([7.4, 7.4], [mid - 0.48, bottom], color="tab:red", lw=1.6, ls="--")
    ax.plot([0.65, 7.4], [bottom, bottom], color="tab:red", lw=1.6, ls="--")
    ax.annotate("", xy=(0.65, mid - 0.36), xytext=(0.65, bottom),
                arrowprops={"arrowstyle": "-|>", "color": "tab:red", "lw": 1.6, "mutation_scale": 12,
                            "shrinkA": 0, "shrinkB": 0})
    ax.text(4.0, bottom + 0.06, "outer loop: meta-gradient $\\nabla_\\theta\\mathcal{L}_{\\mathrm{meta}}$ back "
            "through every inner step;  $\\theta \\leftarrow \\theta - \\beta\\nabla_\\theta"
            "\\mathcal{L}_{\\mathrm{meta}}$", ha="center", va="bottom", fontsize=FONT - 1, color="tab:red")
    return fig
