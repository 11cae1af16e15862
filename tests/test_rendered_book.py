"""tools/check_book.py, the offline browser check of the built book, on a two-page site made here:
one page it must pass (math typeset by the MathJax the book ships), one it must fail and say why."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import check_book

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000100e221bc330000000049454e44ae426082")

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>
<script>window.MathJax = {{"options": {{"processHtmlClass": "math"}}}}</script>
<script defer src="{mathjax}"></script></head>
<body class="tex2jax_ignore"><h1>{title}</h1>
<p>Inline <span class="math notranslate nohighlight">\\(f_\\theta(x)\\)</span> and display:</p>
<div class="math notranslate nohighlight">\\[\\mathcal{{L}}(\\theta) = \\sum_i (f_\\theta(x_i) - y_i)^2
\\]</div>
<pre><code>r"\\(code may show TeX\\)"</code></pre>
{extra}</body></html>
"""


def _mathjax_dir() -> Path | None:
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "static" / "mathjax"
    return d if (d / "tex-chtml.js").is_file() else None


def test_redirect_stub_and_page_list(tmp_path):
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />\n')
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.html").write_text("<html><body>hi</body></html>")
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "webpack-macros.html").write_text("<html></html>")
    assert check_book.pages_of(tmp_path) == ["book/intro.html", "index.html"]
    assert check_book.redirect_target(tmp_path, "index.html") == "book/intro.html"
    assert check_book.redirect_target(tmp_path, "book/intro.html") is None


def test_missing_build_is_a_usage_error(tmp_path, capsys):
    assert check_book.main(["--html", str(tmp_path), "--no-screenshots"]) == 2
    assert "make book" in capsys.readouterr().err


@pytest.mark.skipif(check_book.find_chromium(None) is None, reason="no Chromium (apt-get install chromium)")
@pytest.mark.skipif(_mathjax_dir() is None, reason="sphinx-mathjax-offline is not installed")
def test_browser_check_passes_offline_math_and_fails_a_broken_page(tmp_path, capsys):
    site = tmp_path / "html"
    (site / "_static").mkdir(parents=True)
    (site / "_static" / "mathjax").symlink_to(_mathjax_dir(), target_is_directory=True)
    (site / "_static" / "dot.png").write_bytes(PNG_1x1)
    (site / "index.html").write_text(PAGE.format(
        title="good", mathjax="_static/mathjax/tex-chtml.js", extra='<img src="_static/dot.png" alt="dot">'))
    # What a reader without a network got before: MathJax from a CDN, so raw TeX; plus a missing image
    # and a script error.
    (site / "bad.html").write_text(PAGE.format(
        title="bad", mathjax="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js",
        extra='<p>left raw: $$x^2$$</p><p>and $\\alpha$</p><img src="_static/missing.png" alt="gone">'
              '<script>console.error("boom")</script>'))
    shots = tmp_path / "shots"

    # index.html has TeX in a code block too: code is not read as raw TeX.
    assert check_book.main(["--html", str(site), "--screenshots", str(shots), "index.html"]) == 0
    out = capsys.readouterr().out
    assert "ok   index.html: 2/2 formulas typeset, 1 images, MathJax 3." in out
    assert {p.name for p in shots.iterdir()} == {"index-1280.png", "index-390.png",
                                                 "index-math-1280.png", "index-math-390.png"}

    assert check_book.main(["--html", str(site), "--no-screenshots"]) == 1
    captured = capsys.readouterr()
    report = captured.out
    assert "ok   index.html" in report and "FAIL bad.html" in report
    bad = report[report.index("FAIL bad.html"):]
    for why in ("blocked a non-local request: https://cdn.jsdelivr.net/npm/mathjax@3",
                "MathJax did not start",
                "2 of 2 formulas not typeset",
                "image did not load: _static/missing.png",
                "raw $$ in the visible text",
                "raw $...\\cmd...$ in the visible text: \"and $\\\\alpha$\"",
                "console error: boom"):
        assert why in bad, why
    assert "1 of 2 pages FAILED" in captured.err


def test_chinese_text_without_a_font_for_it_is_reported(tmp_path, monkeypatch):
    (tmp_path / "glossary.html").write_text("<p>meta-learning 元学习</p>", encoding="utf-8")
    (tmp_path / "intro.html").write_text("<p>no Chinese here</p>", encoding="utf-8")
    fake = tmp_path / "fc-list"
    fake.write_text("#!/bin/sh\nexit 0\n")  # fontconfig that knows no font covering Chinese
    fake.chmod(0o755)
    monkeypatch.setattr(check_book.shutil, "which", lambda name: str(fake) if name == "fc-list" else None)
    why = check_book.missing_glyph_fonts(tmp_path, ["glossary.html", "intro.html"])
    assert why is not None and why.startswith("glossary.html") and "fonts-wqy-microhei" in why
    assert check_book.missing_glyph_fonts(tmp_path, ["intro.html"]) is None
    fake.write_text("#!/bin/sh\necho 'WenQuanYi Micro Hei'\n")
    assert check_book.missing_glyph_fonts(tmp_path, ["glossary.html"]) is None



@pytest.mark.skipif(check_book.find_chromium(None) is None, reason="no Chromium (apt-get install chromium)")
def test_phone_screenshot_is_taken_from_a_page_loaded_at_phone_width(tmp_path, monkeypatch):
    head = '<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
    # like the book's theme, the page decides its layout by script when it loads
    (tmp_path / "index.html").write_text(head + "<title>i</title></head><body>home"
                                         "<script>document.body.dataset.w = window.innerWidth</script></body></html>")
    widths = []
    real = check_book.Page.screenshot

    def spy(self, path):
        widths.append((path.name, int(self.evaluate("document.body.dataset.w", 10))))
        real(self, path)
    monkeypatch.setattr(check_book.Page, "screenshot", spy)
    assert check_book.main(["--html", str(tmp_path), "--screenshots", str(tmp_path / "shots"), "index.html"]) == 0
    assert dict(widths) == {"index-1280.png": 1280, "index-390.png": 390}


@pytest.mark.skipif(check_book.find_chromium(None) is None, reason="no Chromium (apt-get install chromium)")
def test_a_page_wider_than_a_phone_fails(tmp_path, capsys):
    head = '<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
    (tmp_path / "narrow.html").write_text(head + "<title>n</title></head><body><p>fits</p></body></html>")
    (tmp_path / "wide.html").write_text(head + '<title>w</title></head><body><div style="width:900px">wide</div>'
                                        "</body></html>")
    (tmp_path / "index.html").write_text(head + "<title>i</title></head><body>home</body></html>")
    shots = tmp_path / "shots"
    assert check_book.main(["--html", str(tmp_path), "--screenshots", str(shots), "narrow.html"]) == 0
    assert check_book.main(["--html", str(tmp_path), "--screenshots", str(shots), "wide.html"]) == 1
    assert "at phone width the page is 518 px wider than the screen" in capsys.readouterr().out
