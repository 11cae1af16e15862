"""Schematic diagrams of the book's methods, drawn with matplotlib only (boxes, arrows, labels).

One function per method, each returning a ``matplotlib.figure.Figure`` (not registered with pyplot,
so nothing is left open; a notebook cell that ends with ``diagrams.maml()`` shows it)::

    from mlcore.book import diagrams

    diagrams.maml()

Every figure uses the book's notation (the *Notation* page): θ the meta-learned weights, φ_i the weights
adapted to task i, f_θ the embedding, S / Q a task's support and query sets, N ways, K shots, α the inner
learning rate, β the outer one. Each method is drawn in its colour from :mod:`mlcore.book.plotting`.
The figures are 8 inches wide at most, the width of a book page.
"""
from __future__ import annotations

import io

import numpy as np
from matplotlib.colors import ListedColormap, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from .plotting import colour

__all__ = ["ALL", "maml", "mann", "matching_attention", "prototypes", "relation_network", "rl2", "siamese"]

GREY = "#555555"
FONT = 10


class _Diagram(Figure):
    """A Figure that shows itself as a PNG in a notebook even before pyplot has set up the inline backend."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def _canvas(width: float, height: float, title: str) -> tuple[Figure, object]:
    """A figure of ``width`` x ``height`` inches whose axes run in the same units (1 unit = 1 inch)."""
    fig = _Diagram(figsize=(width, height), dpi=100)
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
def maml(tasks: int = 3):
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


def maml_relatives():
    """MAML and its four relatives side by side: for each, what the inner loop on task i adapts and which
    direction the outer loop moves θ along (averaged over the B tasks of a meta-batch)."""
    rows = [  # (method, name, what the inner loop on task i adapts, the direction the outer loop follows)
        ("maml", "MAML",
         "all of $\\theta$: $J$ steps\n$\\phi_i \\leftarrow \\phi_i - \\alpha\\nabla\\mathcal{L}_{S_i}(\\phi_i)$",
         "$\\nabla_\\theta\\mathcal{L}_{Q_i}(\\phi_i)$, back through\nevery inner step (Hessian term)"),
        ("fomaml", "first-order\nMAML",
         "as MAML, each $\\nabla\\mathcal{L}_{S_i}$\ntreated as a constant",
         "$\\nabla_\\phi\\mathcal{L}_{Q_i}(\\phi_i)$, used for $\\theta$\n(no Hessian term)"),
        ("reptile", "Reptile",
         "all of $\\theta$: $J$ steps on all of\ntask $i$'s data (no support / query)",
         "$\\theta - \\phi_i$; averaged: $\\theta - \\bar\\phi$\n(no query loss, no second order)"),
        ("anil", "ANIL",
         "the linear head only: $J$ steps;\nthe feature layers keep $\\theta$'s weights",
         "$\\nabla_\\theta\\mathcal{L}_{Q_i}(\\phi_i)$, back\nthrough the head's steps"),
        ("metasgd", "Meta-SGD",
         "all of $\\theta$, one step with a rate per weight:\n"
         + "$\\phi_i = \\theta - \\boldsymbol{\\alpha} \\circ \\nabla\\mathcal{L}_{S_i}(\\theta)$",
         "$\\nabla_{\\theta,\\boldsymbol{\\alpha}}\\mathcal{L}_{Q_i}(\\phi_i)$: learns the\n"
         + "rates $\\boldsymbol{\\alpha}$ too"),
    ]
    row_h = 0.62
    height = 1.15 + row_h * len(rows)
    fig, ax = _canvas(8.0, height, "MAML and its relatives: what the inner loop adapts, what the outer loop follows")
    head = height - 0.5
    ax.text(3.15, head, "inner loop on task $i$: what it adapts", ha="center", va="center", fontsize=FONT - 1)
    ax.text(6.45, head, "outer loop: direction for $\\theta$", ha="center", va="center", fontsize=FONT - 1)
    for r, (method, name, inner, outer) in enumerate(rows):
        c = colour(method)
        y = head - 0.45 - row_h * r
        _box(ax, 0.75, y, 1.15, 0.5, name, edge=c, fill=0.3, fontsize=FONT - 1)
        _arrow(ax, (1.33, y), (1.5, y))
        _box(ax, 3.15, y, 3.25, 0.5, inner, edge=c, fontsize=FONT - 1)
        _arrow(ax, (4.78, y), (5.0, y))
        _box(ax, 6.45, y, 2.85, 0.5, outer, edge=c, fontsize=FONT - 1)
    ax.text(4.0, 0.22, "each outer step averages the direction over the $B$ tasks and moves $\\theta$ against it "
            "with rate $\\beta$ (Reptile: $\\theta \\leftarrow \\theta + \\varepsilon(\\bar\\phi - \\theta)$)",
            ha="center", va="center", fontsize=FONT - 2, color=GREY)
    return fig


# ----------------------------------------------------------------------------- chapter 3
def siamese():
    """Siamese network: two inputs through one shared encoder f_θ, the element-wise absolute difference of
    f_θ(x1) and f_θ(x2), a weighted L1 sum and a sigmoid giving p(same)."""
    c = colour("siamese")
    fig, ax = _canvas(8.0, 2.75, "Siamese network: twin encoders sharing θ, weighted L1 distance, sigmoid")
    top, low, mid = 1.85, 0.75, 1.3
    for y, i in ((top, 1), (low, 2)):
        _box(ax, 0.45, y, 0.55, 0.5, f"$x_{i}$", fill=0.08)
        _arrow(ax, (0.73, y), (1.25, y))
        _box(ax, 1.75, y, 1.0, 0.55, "$f_\\theta$\n(conv net)", edge=c, fill=0.3)
        _arrow(ax, (2.25, y), (2.7, y))
        _box(ax, 3.2, y, 0.95, 0.5, f"$f_\\theta(x_{i})$", edge=c)
        _arrow(ax, (3.68, y), (4.05, mid + (0.12 if i == 1 else -0.12)))
    _arrow(ax, (1.75, top - 0.29), (1.75, low + 0.29), style="<|-|>", dashed=True, colour_=c)
    ax.text(1.83, mid, "shared\nweights $\\theta$", ha="left", va="center", fontsize=FONT - 1, color=c)
    _box(ax, 4.85, mid, 1.55, 0.75, "$|f_\\theta(x_1) - f_\\theta(x_2)|$\nelement-wise", edge=c, fontsize=FONT - 1)
    _arrow(ax, (5.63, mid), (5.95, mid))
    _box(ax, 6.55, mid, 1.15, 0.75, "weighted L1\n$\\sum_j w_j\\,|\\cdot|_j + b$", edge=c, fontsize=FONT - 1)
    _arrow(ax, (7.13, mid), (7.3, mid))
    _box(ax, 7.62, mid, 0.6, 0.75, "$\\sigma$\n$p(\\mathrm{same})$", edge=c, fill=0.3, fontsize=FONT - 1)
    ax.text(6.55, 0.42, "trained with binary cross-entropy\non same / different pairs", ha="center", va="center",
            fontsize=FONT - 2, color=GREY)
    return fig


def relation_network():
    """Relation Network: the embedding f_θ of a class's support images (summed over K shots) and of the query
    are concatenated along the channels; the relation module g_θ maps the pair to a score in (0, 1)."""
    c = colour("relationnet")
    fig, ax = _canvas(8.0, 3.0, "Relation Network: embed, concatenate, and a learned comparison $g_\\theta$")
    top, low, mid = 2.15, 1.05, 1.6
    _box(ax, 0.7, top, 1.2, 0.6, "support of class $k$\n$x_{k,1}, \\dots, x_{k,K}$", fill=0.08, fontsize=FONT - 1)
    _box(ax, 0.7, low, 1.2, 0.6, "query $\\hat x$", fill=0.08)
    for y in (top, low):
        _arrow(ax, (1.3, y), (1.75, y))
        _box(ax, 2.1, y, 0.7, 0.5, "$f_\\theta$", edge=c, fill=0.3)
        _arrow(ax, (2.45, y), (2.85, y))
    _arrow(ax, (2.1, top - 0.26), (2.1, low + 0.26), style="<|-|>", dashed=True, colour_=c)
    ax.text(2.18, mid, "same $f_\\theta$", ha="left", va="center", fontsize=FONT - 1, color=GREY)
    _box(ax, 3.6, top, 1.45, 0.62, "$\\sum_{j=1}^{K} f_\\theta(x_{k,j})$\n64×5×5", edge=c, fontsize=FONT - 1)
    _box(ax, 3.6, low, 1.45, 0.62, "$f_\\theta(\\hat x)$\n64×5×5", edge=c, fontsize=FONT - 1)
    _arrow(ax, (4.33, top), (4.7, mid + 0.15))
    _arrow(ax, (4.33, low), (4.7, mid - 0.15))
    _box(ax, 5.25, mid, 1.05, 0.85, "concatenate\nchannels\n128×5×5", edge=c, fontsize=FONT - 1)
    _arrow(ax, (5.78, mid), (6.05, mid))
    _box(ax, 6.6, mid, 1.05, 0.85, "$g_\\theta$\n2 conv blocks,\nFC 8 → 1", edge=c, fill=0.3, fontsize=FONT - 1)
    _arrow(ax, (7.13, mid), (7.32, mid))
    _box(ax, 7.62, mid, 0.58, 0.85, "$r_k(\\hat x)$\n$\\in(0,1)$", edge=c, fill=0.3, fontsize=FONT - 1)
    ax.text(4.0, 0.35, "one score per class $k = 1, \\dots, N$;  predicted class $\\arg\\max_k r_k(\\hat x)$;  trained "
            "with mean squared error to 1 if $\\hat x$ is of class $k$, else 0", ha="center", va="center", fontsize=FONT - 1,
            color=GREY)
    return fig


def task_similarity():
    """The learned task metric f_θ(T_i, T_j): each task's support set goes through the frozen pooled Conv-4, its
    mean feature through a small MLP ρ to the task embedding e_i; a symmetric head ψ_θ compares |e_i - e_j| and
    e_i ⊙ e_j, and a sigmoid gives the similarity."""
    c = "tab:cyan"
    fig, ax = _canvas(8.0, 3.05, "The task metric $f_\\theta(T_i, T_j)$: embed each task, then compare the two "
                                 "embeddings")
    top, low, mid = 2.2, 1.1, 1.65
    for y, i in ((top, "i"), (low, "j")):
        _box(ax, 0.62, y, 1.05, 0.62, f"support set\nof task $T_{i}$", fill=0.08, fontsize=FONT - 1)
        _arrow(ax, (1.15, y), (1.45, y))
        _box(ax, 1.98, y, 1.0, 0.62, "pooled Conv-4\n(frozen)", fontsize=FONT - 1)
        _arrow(ax, (2.48, y), (2.75, y))
        _box(ax, 3.2, y, 0.82, 0.5, "mean over\nimages", fontsize=FONT - 1)
        _arrow(ax, (3.61, y), (3.88, y))
        _box(ax, 4.15, y, 0.48, 0.5, "$\\rho$", edge=c, fill=0.3)
        _arrow(ax, (4.39, y), (4.62, y))
        _box(ax, 4.88, y, 0.46, 0.46, f"$e_{i}$", edge=c)
        _arrow(ax, (5.11, y), (5.4, mid + (0.15 if i == "i" else -0.15)))
    _arrow(ax, (4.15, top - 0.26), (4.15, low + 0.26), style="<|-|>", dashed=True, colour_=c)
    ax.text(4.22, mid, "same $\\rho$", ha="left", va="center", fontsize=FONT - 2, color=c)
    _box(ax, 5.92, mid, 1.0, 0.75, "$|e_i - e_j|$\n$e_i \\odot e_j$", edge=c, fontsize=FONT - 1)
    _arrow(ax, (6.42, mid), (6.62, mid))
    _box(ax, 6.88, mid, 0.48, 0.6, "$\\psi_\\theta$", edge=c, fill=0.3)
    _arrow(ax, (7.12, mid), (7.27, mid))
    _box(ax, 7.6, mid, 0.62, 0.75, "$\\sigma$\n$f_\\theta(T_i, T_j)$", edge=c, fill=0.3, fontsize=FONT - 2)
    ax.text(4.0, 0.35, "$\\rho$ and $\\psi_\\theta$ are trained with the article's loss "
            "$\\sum\\,(f_\\theta(T_i, T_j) - y_{ij})^2$; the Conv-4 is fixed", ha="center", va="center",
            fontsize=FONT - 1, color=GREY)
    return fig


# ----------------------------------------------------------------------------- chapter 5
def matching_attention(weights: tuple[float, ...] = (0.62, 0.21, 0.12, 0.05)):
    """Matching Networks: the query's embedding attends over the support embeddings (softmax of cosines);
    the prediction is the attention-weighted sum of the support labels."""
    c = colour("matching")
    fig, ax = _canvas(8.0, 3.75, "Matching Networks: attention over the support set")
    mid = 1.85
    ys = [2.75, 2.15, 1.55, 0.75]
    names = ["1", "2", "3", "n"]
    _box(ax, 0.45, mid, 0.55, 0.5, "$\\hat x$", fill=0.08)
    _arrow(ax, (0.73, mid), (1.05, mid))
    _box(ax, 1.4, mid, 0.65, 0.5, "$f_\\theta$", edge=c, fill=0.3)
    _arrow(ax, (1.73, mid), (2.05, mid))
    _box(ax, 2.55, mid, 0.95, 0.5, "$f_\\theta(\\hat x)$", edge=c)
    for y, name, a in zip(ys, names, weights):
        ax.plot([3.03, 4.25], [mid, y], color=c, lw=0.8 + 7 * a, alpha=0.35 + 0.6 * a, solid_capstyle="butt")
        # each label sits beside its line's right end, on the side the line moves away from
        lx, up = 4.2, y >= mid
        ly = mid + (y - mid) * (lx - 3.03) / (4.25 - 3.03)
        pad = 0.05 + (0.8 + 7 * a) / 144
        ax.text(lx, ly + (pad if up else -pad), f"$a_{name}$ = {a:.2f}", ha="right", va="bottom" if up else "top",
                fontsize=FONT - 2)
        _box(ax, 4.75, y, 1.0, 0.42, f"$f_\\theta(x_{name})$", edge=c)
        _box(ax, 5.6, y, 0.42, 0.42, f"$y_{name}$", fill=0.08)
        _arrow(ax, (5.82, y), (6.25, mid + (y - mid) * 0.25))
    ax.text(4.75, 1.15, "⋮", ha="center", va="center", fontsize=FONT + 2)
    ax.text(4.75, 3.07, "support set $S$: $(x_j, y_j)$, $j = 1, \\dots, n$, $n = NK$", ha="center", va="bottom",
            fontsize=FONT - 1)
    _box(ax, 7.05, mid, 1.55, 0.8, "$\\hat y = \\sum_j a(\\hat x, x_j)\\,y_j$\n(soft label vote)", edge=c,
         fill=0.3, fontsize=FONT - 1)
    ax.text(4.0, 0.25, "$a(\\hat x, x_j) = \\mathrm{softmax}_j\\,\\cos(f_\\theta(\\hat x), f_\\theta(x_j))$"
            "   (cosines × 10 in the recipe;  with FCE the embeddings also see the whole of $S$)",
            ha="center", va="center", fontsize=FONT - 1, color=GREY)
    return fig


def prototypes():
    """Prototypical Networks: in embedding space each class's prototype c_k is the mean of its K support
    embeddings; a query is assigned to the nearest prototype (squared Euclidean distance)."""
    c = colour("protonet")
    fig, ax = _canvas(8.0, 3.6, "Prototypical Networks: class means in embedding space, nearest prototype wins")
    space = fig.add_axes((0.03, 0.04, 0.48, 0.8))
    classes = [((-1.2, 0.9), "#4c72b0"), ((1.3, 1.1), "#55a868"), ((0.1, -1.2), "#8172b2")]
    offsets = [(-0.35, 0.25), (0.4, 0.1), (0.0, -0.4)]
    centres = []
    gx, gy = (v.ravel() for v in np.meshgrid(*[np.linspace(-2.6, 2.6, 160)] * 2))
    for k, ((cx, cy), col) in enumerate(classes, 1):
        pts = [(cx + dx, cy + dy) for dx, dy in offsets]
        mx, my = sum(p[0] for p in pts) / 3, sum(p[1] for p in pts) / 3
        centres.append((mx, my, col))
        space.scatter(*zip(*pts), s=40, color=col, edgecolor="white", zorder=3)
        space.scatter([mx], [my], s=260, marker="*", color=col, edgecolor="black", zorder=4)
        space.annotate(f"$c_{k}$", (mx, my), xytext=(9, 7), textcoords="offset points", fontsize=FONT + 1)
    dist = np.stack([(gx - mx) ** 2 + (gy - my) ** 2 for mx, my, _ in centres])
    region = dist.argmin(0).reshape(160, 160)
    space.imshow(region, extent=(-2.6, 2.6, -2.6, 2.6), origin="lower", alpha=0.12, zorder=0,
                 cmap=ListedColormap([col for _, _, col in centres]))
    qx, qy = -0.2, 0.35
    for k, (mx, my, col) in enumerate(centres):
        space.plot([qx, mx], [qy, my], ls="--", color=c if k == 0 else GREY, lw=1.6 if k == 0 else 1.0, zorder=2)
    space.scatter([qx], [qy], s=90, marker="X", color=c, edgecolor="black", zorder=5)
    space.annotate("$f_\\theta(\\hat x)$", (qx, qy), xytext=(-10, -16), textcoords="offset points",
                   fontsize=FONT, ha="center", va="top")
    space.set(xlim=(-2.6, 2.6), ylim=(-2.6, 2.6), xticks=[], yticks=[])
    space.set_title("embedding space ($N = 3$ ways, $K = 3$ shots)", fontsize=FONT - 1)
    x0 = 4.45
    lines = [("support embeddings $f_\\theta(x_j)$:  dots", None),
             ("prototype:  $c_k = (1/K)\\sum_{j:\\,y_j = k} f_\\theta(x_j)$  (stars)", None),
             ("query embedding $f_\\theta(\\hat x)$:  cross", None),
             ("logits:  $-\\Vert f_\\theta(\\hat x) - c_k\\Vert^2$", c),
             ("$p(y = k \\mid \\hat x) = \\mathrm{softmax}_k$ of the logits", c),
             ("prediction: the nearest prototype", c)]
    for i, (text, col) in enumerate(lines):
        ax.text(x0, 2.9 - 0.45 * i, text, ha="left", va="center", fontsize=FONT - 1, color=col or "black")
    return fig


def mann(slots: int = 8, last_read: int = 1, least_used: int = 5):
    """MANN with LRUA: the controller emits a key k_t; reading weights the memory rows by the softmax of their
    cosine to k_t; writing (least-recently-used access) goes to the slot read last or to the least-used one."""
    c = colour("mann")
    fig, ax = _canvas(8.0, 4.3, "MANN: a controller reads and writes an external memory (LRUA)")
    mid, row = 2.6, 0.22
    ys = [mid + (slots / 2 - i - 0.5) * row for i in range(slots)]
    _box(ax, 1.0, mid, 1.2, 0.9, "controller\n(LSTM)", edge=c, fill=0.3)
    _arrow(ax, (0.7, 1.45), (0.7, mid - 0.45), "$x_t$, $y_{t-1}$", offset=(-0.08, -0.2), ha="right",
           va="center", colour_="black")
    _arrow(ax, (1.0, mid + 0.45), (1.0, mid + 0.85), "$\\hat y_t$", offset=(0, 0.2), colour_="black")
    _arrow(ax, (1.6, mid), (3.1, mid), "key $k_t$, gate $g_t$", offset=(0, 0.05), colour_="black")
    read_w = [0.03, 0.05, 0.7, 0.08, 0.04, 0.02, 0.05, 0.03]
    write_w = [0.0] * slots
    write_w[last_read], write_w[least_used] = 0.65, 0.35
    for i, y in enumerate(ys):
        ax.add_patch(FancyBboxPatch((3.25, y - row / 2), 0.22, row, boxstyle="square,pad=0",
                                    facecolor=to_rgba(c, write_w[i]), edgecolor=GREY, lw=0.6))
        for j in range(6):
            ax.add_patch(FancyBboxPatch((3.75 + 0.26 * j, y - row / 2), 0.26, row, boxstyle="square,pad=0",
                                        facecolor="#f4f4f4", edgecolor=GREY, lw=0.5))
        ax.add_patch(FancyBboxPatch((5.45, y - row / 2), 0.22, row, boxstyle="square,pad=0",
                                    facecolor=to_rgba(c, read_w[i]), edgecolor=GREY, lw=0.6))
    top = ys[0] + row / 2 + 0.08
    ax.text(3.36, top, "$w^w_t$", ha="center", va="bottom", fontsize=FONT)
    ax.text(4.53, top, "memory $M_t$ (rows: slots)", ha="center", va="bottom", fontsize=FONT - 1)
    ax.text(5.56, top, "$w^r_t$", ha="center", va="bottom", fontsize=FONT)
    for slot, text, dy in ((last_read, "slot read at $t-1$\n($w^r_{t-1}$)", 0.55),
                           (least_used, "least-used slot\n($w^{lu}_{t-1}$)", -0.55)):
        _arrow(ax, (2.55, ys[slot] + dy), (3.22, ys[slot]), colour_=c, lw=1.2)
        ax.text(2.5, ys[slot] + dy, text, ha="right", va="center", fontsize=FONT - 2, color=c)
    _arrow(ax, (5.7, mid), (6.15, mid))
    _box(ax, 7.0, mid, 1.6, 0.6, "read vector\n$r_t = \\sum_i w^r_t(i)\\,M_t(i)$", edge=c, fontsize=FONT - 1)
    back = 1.25
    ax.plot([7.0, 7.0, 1.3], [mid - 0.3, back, back], color=c, lw=1.4)
    _arrow(ax, (1.3, back), (1.3, mid - 0.45), colour_=c)
    ax.text(4.2, back - 0.05, "$r_t$ goes back to the controller (and into $\\hat y_t$)", ha="center", va="top",
            fontsize=FONT - 2, color=c)
    for i, text in enumerate(("read:  $w^r_t(i) = \\mathrm{softmax}_i\\ \\cos(k_t, M_t(i))$",
                              ("write (LRUA):  $w^w_t = \\sigma(g_t)\\,w^r_{t-1} + (1 - \\sigma(g_t))\\,w^{lu}_{t-1}$;"
                              "  $M_t = M_{t-1}$ (least-used row erased) $+\\ w^w_t\\,k_t^\\top$"),
                              ("usage:  $w^u_t = \\gamma\\,w^u_{t-1} + w^r_t + w^w_t$;  $w^{lu}_t$ marks the "
                              "least-used slot(s)"))):
        ax.text(0.25, 0.8 - 0.28 * i, text, ha="left", va="center", fontsize=FONT - 1)
    return fig


# ----------------------------------------------------------------------------- chapter 6
def rl2(steps: int = 3, episodes: int = 2):
    """RL²: one GRU whose hidden state h is carried across the episode boundaries of a trial and reset to
    h_0 = 0 when a new trial (a new task) starts; its input is (s_t, a_{t-1}, r_{t-1}, d_{t-1})."""
    c = colour("rl2")
    fig, ax = _canvas(8.0, 3.6, "RL²: the hidden state carries a trial's experience across its episodes")
    cell_y, dx, w = 1.95, 0.62, 0.42
    x, xs, bounds = 0.95, [], []  # bounds: (kind, x) between cells
    for trial in range(2):
        for ep in range(episodes if trial == 0 else 1):
            for t in range(steps):
                xs.append((x, trial, ep))
                x += dx
            x += 0.3
            bounds.append(("episode" if (trial == 0 and ep < episodes - 1) else "trial", x - 0.3 - dx / 2 + 0.15))
        x += 0.45
    for i, (cx, trial, ep) in enumerate(xs):
        _box(ax, cx, cell_y, w, 0.45, "GRU", edge=c, fill=0.3, fontsize=FONT - 2)
        _arrow(ax, (cx, cell_y - 0.68), (cx, cell_y - 0.23), colour_=GREY, lw=1.1)
        ax.text(cx, cell_y - 0.72, "$x_t$", ha="center", va="top", fontsize=FONT - 1)
        _arrow(ax, (cx, cell_y + 0.23), (cx, cell_y + 0.5), colour_=GREY, lw=1.1)
        ax.text(cx, cell_y + 0.53, "$a_t$", ha="center", va="bottom", fontsize=FONT - 1)
        first_of_trial = i == 0 or xs[i - 1][1] != trial
        if first_of_trial:
            ax.text(cx - w / 2 - 0.38, cell_y, "$h_0 = 0$", ha="center", va="center", fontsize=FONT - 2, color=c)
            _arrow(ax, (cx - w / 2 - 0.15, cell_y), (cx - w / 2, cell_y), colour_=c, lw=1.1)
        else:
            crossing = xs[i - 1][2] != ep
            _arrow(ax, (xs[i - 1][0] + w / 2, cell_y), (cx - w / 2, cell_y), colour_=c, lw=2.2 if crossing else 1.2)
            if crossing:
                ax.text((xs[i - 1][0] + cx) / 2, cell_y + 0.3, "$h$ carried", ha="center", va="bottom",
                        fontsize=FONT - 2, color=c)
    for kind, bx in bounds[:-1]:
        ax.plot([bx, bx], [0.85, 3.0], color=c if kind == "trial" else GREY, lw=2.0 if kind == "trial" else 1.0,
                ls="-" if kind == "trial" else ":")
    spans = {}
    for cx, trial, ep in xs:
        spans.setdefault(("ep", trial, ep), []).append(cx)
        spans.setdefault(("trial", trial, 0), []).append(cx)
    for (kind, trial, ep), cxs in spans.items():
        lo, hi = cxs[0] - w / 2, cxs[-1] + w / 2
        y = 0.95 if kind == "ep" else 3.0
        ax.plot([lo, lo, hi, hi], [y + 0.06, y, y, y + 0.06] if kind == "ep" else [y - 0.06, y, y, y - 0.06],
                color=GREY, lw=1.0)
        text = f"episode {ep + 1}" if kind == "ep" else (f"trial {trial + 1}: task {trial + 1}"
                                                         + (f", $n = {episodes}$ episodes" if trial == 0 else ""))
        ax.text((lo + hi) / 2, y - 0.05 if kind == "ep" else y + 0.05, text, ha="center",
                va="top" if kind == "ep" else "bottom", fontsize=FONT - 1)
    trial_x = next(bx for kind, bx in bounds[:-1] if kind == "trial")
    ax.text(trial_x + 0.08, 2.65, "new task:\n$h$ reset", ha="left", va="center", fontsize=FONT - 2, color=c)
    ax.text(4.0, 0.45, "$x_t = (s_t, a_{t-1}, r_{t-1}, d_{t-1})$: observation, previous action, reward and done flag;"
            "  objective $R_{\\mathrm{meta}} = \\sum_{i=1}^{n}\\sum_t r_i(s_t, a_t)$ over a trial",
            ha="center", va="center", fontsize=FONT - 2)
    return fig


#: every diagram, by the method it draws (for tests and for regenerating them all)
ALL = {"siamese": siamese, "relationnet": relation_network, "maml": maml, "matching": matching_attention,
       "protonet": prototypes, "mann": mann, "rl2": rl2}
