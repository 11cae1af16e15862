"""mlcore.book.diagrams: every method's schematic is a Figure that renders, carries its key symbols in the book's
notation, keeps its labels on the page and apart from each other, and is drawn in the method's colour."""
import io
import itertools

import pytest
from matplotlib import pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from mlcore.book import diagrams
from mlcore.book.plotting import colour

# method -> (least number of text labels, symbols (mathtext source) that must appear among them)
EXPECTED = {
    "siamese": (10, [r"x_1", r"x_2", r"f_\theta", r"|f_\theta(x_1) - f_\theta(x_2)|", r"w_j", r"\sigma", r"\theta"]),
    "relationnet": (9, [r"f_\theta", r"g_\theta", r"\hat x", r"x_{k,K}", r"r_k(\hat x)", "concatenate"]),
    "maml": (12, [r"\theta", r"\phi_{1}", r"\phi_{B}", r"\alpha", r"\beta", r"S_{1}", r"Q_i", r"\mathcal{L}_{\mathrm{meta}}",
                  "meta-gradient"]),
    "matching": (12, [r"f_\theta(\hat x)", r"f_\theta(x_n)", r"a(\hat x, x_j)", r"\mathrm{softmax}_j", r"\cos", "y_n",
                      "NK"]),
    "protonet": (9, [r"c_1", r"c_3", r"f_\theta(\hat x)", r"c_k", r"\mathrm{softmax}_k", "nearest"]),
    "mann": (10, [r"k_t", r"M_t", r"w^r_t", r"w^w_t", r"w^{lu}_{t-1}", r"\gamma", r"g_t", "least-used", "controller"]),
    "rl2": (20, [r"h_0 = 0", "GRU", r"x_t", r"a_t", r"s_t, a_{t-1}, r_{t-1}, d_{t-1}", "episode 2", "trial 2",
                 r"R_{\mathrm{meta}}"]),
}


def texts(fig: Figure) -> list:
    return [t for ax in fig.axes for t in [*ax.texts, ax.title] if t.get_text().strip()]


@pytest.fixture(params=sorted(EXPECTED))
def drawn(request):
    fig = diagrams.ALL[request.param]()
    FigureCanvasAgg(fig)  # the figures belong to no pyplot backend; give each a renderer to measure its labels
    fig.savefig(io.BytesIO(), format="png", dpi=60)  # renders every label: a mathtext error fails here
    yield request.param, fig
    plt.close(fig)
    fig.clear()


def test_every_method_has_a_diagram():
    assert set(diagrams.ALL) == set(EXPECTED)
    assert set(diagrams.ALL.values()) == {getattr(diagrams, name) for name in diagrams.__all__ if name != "ALL"}


def test_diagram_is_a_figure_with_its_labels_and_symbols(drawn):
    method, fig = drawn
    assert isinstance(fig, Figure)
    labels = texts(fig)
    least, symbols = EXPECTED[method]
    assert len(labels) >= least, f"{method}: {len(labels)} labels"
    joined = "\n".join(t.get_text() for t in labels)
    missing = [s for s in symbols if s not in joined]
    assert not missing, f"{method} lacks {missing}"


def test_diagram_fits_the_book_width_and_keeps_labels_on_the_page(drawn):
    method, fig = drawn
    width, height = fig.get_size_inches()
    assert width <= 8.0 and height <= 4.5
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    for t in texts(fig):
        box = t.get_window_extent(renderer)
        assert box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1 and box.y0 >= page.y0 - 1 and box.y1 <= page.y1 + 1, \
            f"{method}: {t.get_text()!r} runs off the page"


def test_diagram_labels_do_not_overlap(drawn):
    method, fig = drawn
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer).shrunk(0.97, 0.9)) for t in texts(fig)]
    clashes = [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]
    assert not clashes, f"{method}: overlapping labels {clashes[:3]}"


def test_diagram_is_drawn_in_its_method_colour(drawn):
    method, fig = drawn
    want = tuple(round(v, 3) for v in to_rgba(colour(method))[:3])
    used = set()
    for ax in fig.axes:
        used |= {p.get_edgecolor()[:3] for p in ax.patches} | {to_rgba(t.get_color())[:3] for t in ax.texts}
        used |= {to_rgba(line.get_color())[:3] for line in ax.lines}
        used |= {tuple(fc[:3]) for coll in ax.collections for fc in coll.get_facecolors()}
    assert want in {tuple(round(float(v), 3) for v in rgb) for rgb in used}


# figures for several methods or for a study, outside ``ALL``: (function, words and symbols that must appear)
OTHER_FIGURES = {
    "maml_relatives": ("MAML", "first-order\nMAML", "Reptile", "Meta-SGD", "ANIL", r"\theta", r"\phi_i", r"\bar\phi",
                       r"\boldsymbol{\alpha}", r"S_i", r"Q_i"),
    "task_similarity": (r"f_\theta(T_i, T_j)", r"\rho", r"\psi_\theta", r"e_i", r"e_j", r"|e_i - e_j|", r"e_i \odot e_j",
                        "support set\nof task $T_i$", "frozen"),
}


@pytest.mark.parametrize("name", sorted(OTHER_FIGURES))
def test_other_figures_render_their_symbols_on_the_page_without_overlaps(name):
    """Chapter 4's figure of MAML's relatives and chapter 3's task metric."""
    fig = getattr(diagrams, name)()
    FigureCanvasAgg(fig)
    fig.savefig(io.BytesIO(), format="png", dpi=60)
    labels = texts(fig)
    joined = "\n".join(t.get_text() for t in labels)
    missing = [s for s in OTHER_FIGURES[name] if s not in joined]
    assert not missing, f"{name} lacks {missing}"
    width, height = fig.get_size_inches()
    assert width <= 8.0 and height <= 4.5
    renderer, page = fig.canvas.get_renderer(), fig.bbox
    boxes = []
    for t in labels:
        box = t.get_window_extent(renderer)
        assert box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1 and box.y0 >= page.y0 - 1 and box.y1 <= page.y1 + 1, \
            f"{name}: {t.get_text()!r} runs off the page"
        boxes.append((t.get_text(), box.shrunk(0.97, 0.9)))
    clashes = [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]
    assert not clashes, f"{name}: overlapping labels {clashes[:3]}"
    plt.close(fig)
