"""The source article's §5.1 Siamese listing, its defects, and a checker that finds them.

We do not have the article's exact text. ``ARTICLE_LISTING`` is a faithful *reconstruction*:
a typical short PyTorch Siamese network with exactly the three defects the article's code
has. It is kept as a string (it cannot be imported: that is the point) so Chapters 3 and 8
can print it, and :func:`diagnose` finds the defects by compiling and parsing the text,
rather than by asserting them. :mod:`mlcore.metric.siamese` is the working version with the
same layer sizes where they make sense.
"""
from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass

ARTICLE_LISTING = '''\
class SiameseNetwork(nn.Module):
    def __init__(self):
        super(SiameseNetwork, self).__init__()
        self.conv = conv_net(1, 64, 128, 128, 256)
        self.fc1 = nn.Linear(256 * 6 * 6, 4096)
        self.fc2 = nn.Linear(4096, 1)

    def forward_once(self, x):
        x = self.conv(x)
        x = x.view(x.size(0), -1)
        return torch.sigmoid(self.fc1(x))

    def forward(self, x1, x2):
        out1 = self.forward_once(x1)
        out2 = self.forward_once(x2)
        distance = torch.abs(out1 -
'''
ARTICLE_LABEL = "as printed in the article (reconstructed)"

# what each defect is and how mlcore.metric.siamese fixes it
DEFECTS = [
    ("torch is never imported",
     "`nn`, `torch.sigmoid` and `torch.abs` raise NameError. Fix: `import torch`, `from torch import nn`."),
    ("`conv_net` is called but never defined",
     ("the convolutional twin does not exist. Fix: `SiameseEncoder` builds Koch's conv stack "
      "(64, 128, 128, 256 channels, ReLU, 2x2 max-pool after the first three blocks).")),
    ("`forward` is cut off mid-expression",
     ("the file does not even compile, and the weighted L1 distance, the sigmoid head and the return "
      "value are missing. Fix: `Siamese.pair_logits` scores a pair by the weighted L1 distance "
      "Σ_j w_j |f_θ(x1)_j - f_θ(x2)_j| + b, a log-odds, trained with binary cross-entropy on logits.")),
]
# not a printing defect, but the reason for the flatten-size test: 256*6*6 is right only for 105x105 input
LATENT = ("`nn.Linear(256 * 6 * 6, 4096)` hard-codes the flatten size of Koch's 105x105 input; "
          "`SiameseEncoder` computes it from `image_size` (`feature_shape`) and rejects other resolutions.")


@dataclass
class Finding:
    kind: str
    detail: str


def _parsable_prefix(source: str) -> str:
    """The longest prefix of whole lines that parses (drops a cut-off tail)."""
    lines = source.splitlines()
    for end in range(len(lines), 0, -1):
        try:
            ast.parse("\n".join(lines[:end]))
            return "\n".join(lines[:end])
        except SyntaxError:
            continue
    return ""


def undefined_names(source: str) -> list[str]:
    """Global names a (parsable) module reads but never imports, defines or gets from builtins."""
    tree = ast.parse(source)
    bound = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            if not isinstance(node, ast.ClassDef):
                bound |= {a.arg for a in node.args.args + node.args.kwonlyargs}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
    loaded = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
    return sorted({n for n in loaded if n not in bound})


def diagnose(source: str = ARTICLE_LISTING) -> list[Finding]:
    """Compile the listing and report what is wrong with it (empty list: nothing found)."""
    findings = []
    try:
        compile(source, "<article>", "exec")
        body = source
    except SyntaxError as e:
        findings.append(Finding("syntax", f"does not compile: {e.msg} (line {e.lineno}); the code is cut off"))
        body = _parsable_prefix(source)
    for name in undefined_names(body):
        findings.append(Finding("undefined", f"name {name!r} is used but never imported or defined"))
    return findings
