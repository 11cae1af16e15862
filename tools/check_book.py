#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium, offline, and check what a reader sees.

    python tools/check_book.py [--html _build/html] [--screenshots _build/screenshots]

The book is served from a local HTTP server on 127.0.0.1 (or opened from file:// with --file-url) and
every request that is not local is blocked (the Fetch domain fails it, and the host resolver maps every
name to NOTFOUND), so a page that still needs a CDN fails here exactly as it would for a reader without
a network. For each page, after MathJax's startup promise has resolved (MathJax has typeset the page):

  * no raw ``\\[``, ``\\(``, ``$$``, ``\\begin{`` or ``$...\\cmd...$`` is left in the visible text
    (code blocks excluded: code may show LaTeX on purpose);
  * every ``.math`` element holds MathJax output (``mjx-container``) and no MathJax error (``mjx-merror``);
  * every ``<img>`` has loaded (``naturalWidth > 0``);
  * nothing was logged as a console error, no uncaught exception, no blocked (non-local) request;
  * with --screenshots, the same again with the page reloaded at phone width, and the page no wider than the
    phone's screen (a reader would have to pan sideways).

It saves a screenshot of the top of every page at desktop (1280 px) and phone (390 px) width, and on pages
with display math one more of the first display formula, under --screenshots. Exit status: 0 when every
page passes, 1 when any fails (each failing page and why is printed), 2 when the check cannot run.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe): only the standard
library is needed, and no chromedriver. CHROMIUM=/path/to/chromium picks another binary.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads"}
DESKTOP = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
LOCAL_SCHEMES = {"data", "blob", "about", "file", "chrome-error"}

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage", "--no-default-browser-check",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--hide-scrollbars", "--mute-audio", "--force-color-profile=srgb", "--font-render-hinting=none",
    # Second wall besides the Fetch interception: no host name resolves except the local server's.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--remote-debugging-pipe",
]

# Runs in the page once it has loaded; resolves to a report of what a reader would see.
PAGE_CHECK_JS = r"""
(async () => {
  const out = {problems: [], math: 0, typeset: 0, images: 0, mathjax: null};
  const mathEls = Array.from(document.querySelectorAll('.math'));
  out.math = mathEls.length;
  const MJ = window.MathJax;
  if (MJ && MJ.startup && MJ.startup.promise) {
    const timeout = new Promise((_, bad) => setTimeout(() => bad(new Error('timed out')), %(timeout_ms)d));
    try { await Promise.race([MJ.startup.promise, timeout]); out.mathjax = MJ.version || '?'; }
    catch (e) { out.problems.push('MathJax startup promise did not resolve: ' + e); }
  } else if (mathEls.length || document.querySelector('script[src*="mathjax" i]')) {
    out.problems.push('MathJax did not start (window.MathJax.startup is missing): its script did not load');
  }
  // Images: lazy ones are asked for now; each gets up to 10 s to load or fail.
  const imgs = Array.from(document.images);
  out.images = imgs.length;
  imgs.forEach(img => { if (img.loading === 'lazy') img.loading = 'eager'; });
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener('load', done, {once: true});
    img.addEventListener('error', done, {once: true});
    setTimeout(done, 10000);
  })));
  for (const img of imgs) {
    if (!img.complete || img.naturalWidth === 0)
      out.problems.push('image did not load: ' + (img.getAttribute('src') || '').slice(0, 120));
  }
  // Every formula typeset, none in error.
  const snippet = el => (el.textContent || '').replace(/\s+/g, ' ').trim().slice(0, 80);
  let untypeset = [];
  for (const el of mathEls) {
    if (el.querySelector('mjx-container')) out.typeset += 1; else untypeset.push(snippet(el));
  }
  if (untypeset.length)
    out.problems.push(untypeset.length + ' of ' + mathEls.length + ' formulas not typeset, first: ' +
                      JSON.stringify(untypeset[0]));
  const errs = Array.from(document.querySelectorAll('mjx-merror'));
  if (errs.length)
    out.problems.push(errs.length + ' MathJax errors, first: ' +
                      JSON.stringify(errs[0].getAttribute('data-mjx-error') || snippet(errs[0])));
  if (mathEls.length && !document.querySelector('mjx-container'))
    out.problems.push('page has math but no MathJax output (mjx-container)');
  // Raw TeX left in the visible text (outside code, which may show LaTeX on purpose).
  const skip = 'pre, code, kbd, samp, script, style, textarea, noscript, mjx-container, .highlight';
  const raw = [
    [/\\\[/, '\\['], [/\\\(/, '\\('], [/\$\$/, '$$'], [/\\begin\{/, '\\begin{'],
    [/(^|[^$\\])\$(?![\s$])[^$\n]*?\\[A-Za-z]+[^$\n]*?(?<![\s\\])\$(?!\$)/, '$...\\cmd...$'],
  ];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const found = {};
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest(skip)) continue;
    const text = node.nodeValue;
    if (!/[\\$]/.test(text)) continue;
    if (el.checkVisibility && !el.checkVisibility()) continue;
    for (const [re, name] of raw) {
      if (!found[name] && re.test(text)) found[name] = text.replace(/\s+/g, ' ').trim().slice(0, 100);
    }
  }
  for (const [name, text] of Object.entries(found))
    out.problems.push('raw ' + name + ' in the visible text: ' + JSON.stringify(text));
  // Where the first display formula is, for its screenshot.
  const display = document.querySelector('div.math mjx-container, mjx-container[display="true"]');
  out.hasDisplay = !!display;
  return out;
})()
"""

SCROLL_TO_DISPLAY_JS = r"""
(async () => {
  const el = document.querySelector('div.math mjx-container, mjx-container[display="true"]');
  if (el) el.scrollIntoView({block: 'center'});
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return !!el;
})()
"""

SCROLL_TOP_JS = r"""
(async () => {
  window.scrollTo(0, 0);
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return true;
})()
"""


class CDPError(RuntimeError):
    pass


class Browser:
    """Headless Chromium and a minimal synchronous DevTools-protocol client over --remote-debugging-pipe."""

    def __init__(self, binary: str, log_path: Path):
        self.profile = tempfile.mkdtemp(prefix="check_book_chromium_")
        to_child_r, self._w = os.pipe()   # we write commands; Chromium reads them on fd 3
        self._r, from_child_w = os.pipe()  # Chromium writes replies and events on fd 4
        self._log = open(log_path, "wb")  # noqa: SIM115 (open as long as the browser runs; closed in close())
        # bash (dash takes single-digit fds only) puts the two pipe ends on fds 3 and 4, where
        # --remote-debugging-pipe expects them.
        redirect = f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w}'
        cmd = [shutil.which("bash") or "/bin/bash", "-c", redirect, binary,
               *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     pass_fds=(to_child_r, from_child_w), start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next_id = 0
        self.handlers: dict[str, callable] = {}
        self.events: list[dict] = []

    # -- protocol -----------------------------------------------------------------------------------
    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._w, data):]
        return self._next_id

    def _read(self, deadline: float) -> dict | None:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._r], [], [], min(left, 0.5))
            if not ready:
                if self.proc.poll() is not None:
                    raise CDPError(f"Chromium exited with status {self.proc.returncode}")
                continue
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise CDPError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _dispatch(self, msg: dict) -> None:
        handler = self.handlers.get(msg.get("method", ""))
        if handler:
            handler(msg.get("params", {}), msg.get("sessionId"))
        else:
            self.events.append(msg)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        want = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline)
            if msg is None:
                raise CDPError(f"{method}: no reply in {timeout:.0f} s")
            if msg.get("id") == want:
                if "error" in msg:
                    raise CDPError(f"{method}: {msg['error'].get('message')}")
                return msg.get("result", {})
            if "method" in msg:
                self._dispatch(msg)

    def wait_event(self, method: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        for i, msg in enumerate(self.events):
            if msg.get("method") == method:
                return self.events.pop(i)
        while True:
            msg = self._read(deadline)
            if msg is None:
                return None
            if msg.get("method") == method and method not in self.handlers:
                return msg
            if "method" in msg:
                self._dispatch(msg)

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (msg := self._read(deadline)) is not None:
            if "method" in msg:
                self._dispatch(msg)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.send("Browser.close")
                self.proc.wait(timeout=10)
        except (OSError, CDPError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the process group of the Chromium started above
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab; collects console errors, exceptions and blocked requests while it loads a URL."""

    def __init__(self, browser: Browser):
        self.b = browser
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session = attached["sessionId"]
        self.errors: list[str] = []
        browser.handlers.update({
            "Fetch.requestPaused": self._on_request,
            "Runtime.consoleAPICalled": self._on_console,
            "Runtime.exceptionThrown": self._on_exception,
            "Log.entryAdded": self._on_log,
        })
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.cdp(method)
        self.cdp("Fetch.enable", {"patterns": [{"urlPattern": "*", "requestStage": "Request"}]})

    def cdp(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        return self.b.call(method, params, self.session, timeout)

    def _on_request(self, p: dict, session: str | None) -> None:
        url = p["request"]["url"]
        parts = urlsplit(url)
        if parts.scheme in LOCAL_SCHEMES or (parts.scheme in ("http", "https")
                                             and (parts.hostname or "") in LOCAL_HOSTS):
            self.b.send("Fetch.continueRequest", {"requestId": p["requestId"]}, session)
        else:
            self.errors.append(f"blocked a non-local request: {url[:160]}")
            self.b.send("Fetch.failRequest", {"requestId": p["requestId"], "errorReason": "BlockedByClient"},
                        session)

    def _on_console(self, p: dict, session: str | None) -> None:
        if p.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            self.errors.append(f"console {p['type']}: {args[:300]}")

    def _on_exception(self, p: dict, session: str | None) -> None:
        d = p.get("exceptionDetails", {})
        text = d.get("exception", {}).get("description") or d.get("text", "")
        self.errors.append(f"uncaught exception: {text.splitlines()[0][:300] if text else '?'}")

    def _on_log(self, p: dict, session: str | None) -> None:
        e = p.get("entry", {})
        # The browser asks every server for /favicon.ico by itself; the book has none and links none.
        if e.get("level") == "error" and not (e.get("url") or "").endswith("/favicon.ico"):
            where = f" ({e['url'][:160]})" if e.get("url") else ""
            self.errors.append(f"console error [{e.get('source')}]: {e.get('text', '')[:300]}{where}")

    def evaluate(self, expression: str, timeout: float) -> object:
        r = self.cdp("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                          "returnByValue": True}, timeout=timeout)
        if "exceptionDetails" in r:
            raise CDPError("page script failed: " + json.dumps(r["exceptionDetails"])[:300])
        return r["result"].get("value")

    def viewport(self, metrics: dict) -> None:
        self.cdp("Emulation.setDeviceMetricsOverride", metrics)

    def goto(self, url: str, timeout: float) -> None:
        self.b.events.clear()
        self.errors.clear()
        nav = self.cdp("Page.navigate", {"url": url}, timeout=timeout)
        if nav.get("errorText"):
            raise CDPError(f"navigation failed: {nav['errorText']}")
        if self.b.wait_event("Page.loadEventFired", timeout) is None:
            raise CDPError(f"no load event in {timeout:.0f} s")

    def screenshot(self, path: Path) -> None:
        import base64
        data = self.cdp("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


def pages_of(html: Path) -> list[str]:
    out = []
    for p in sorted(html.rglob("*.html")):
        rel = p.relative_to(html)
        if rel.parts[0] in SKIP_DIRS:
            continue
        out.append(rel.as_posix())
    return out


CJK = re.compile(r"[\u3400-\u9fff]")


def missing_glyph_fonts(html: Path, pages: list[str]) -> str | None:
    """Why the pages would render with empty boxes, or None: Chinese text with no font that has its glyphs.

    The glossary gives the source article's Chinese terms; without such a font Chromium draws boxes and
    the screenshots hide it. Needs fontconfig's ``fc-list``; without it nothing can be said (None).
    """
    fc = shutil.which("fc-list")
    if fc is None:
        return None
    with_cjk = [p for p in pages if (html / p).is_file() and CJK.search((html / p).read_text(errors="replace"))]
    if not with_cjk:
        return None
    fonts = subprocess.run([fc, ":lang=zh", "family"], check=False, capture_output=True, text=True).stdout.strip()
    if fonts:
        return None
    return (f"{with_cjk[0]} (and {len(with_cjk) - 1} more) has Chinese text but no installed font covers it; "
            "apt-get install fonts-wqy-microhei")


def find_chromium(explicit: str | None) -> str | None:
    for cand in (explicit, os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


REDIRECT_RE = re.compile(r'^\s*<meta\s+http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"\s*/?>\s*$',
                         re.IGNORECASE)


def redirect_target(html: Path, name: str) -> str | None:
    """The page a redirect stub (the root index.html jupyter-book writes) points at, else None."""
    path = html / name
    if path.stat().st_size > 1000:
        return None
    m = REDIRECT_RE.match(path.read_text(errors="replace"))
    return m.group(1) if m else None


def check_page(page: Page, url: str, name: str, shots: Path | None, timeout: float) -> tuple[list[str], str]:
    page.viewport(DESKTOP)
    page.goto(url, timeout)
    report = page.evaluate(PAGE_CHECK_JS % {"timeout_ms": int(timeout * 1000)}, timeout + 15)
    problems = list(report["problems"])
    if shots is not None:
        stem = name.removesuffix(".html").replace("/", "_")
        page.evaluate(SCROLL_TOP_JS, 10)
        page.screenshot(shots / f"{stem}-1280.png")
        if report.get("hasDisplay"):
            page.evaluate(SCROLL_TO_DISPLAY_JS, 10)
            page.screenshot(shots / f"{stem}-math-1280.png")
        # Reload at phone size: a page laid out at desktop width keeps its desktop layout viewport when the
        # emulated device changes under it, and the screenshot shows three squeezed columns.
        page.viewport(PHONE)
        page.goto(url, timeout)
        phone = page.evaluate(PAGE_CHECK_JS % {"timeout_ms": int(timeout * 1000)}, timeout + 15)
        problems += [f"at phone width: {p}" for p in phone["problems"] if p not in problems]
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth", 10)
        if overflow > 1:  # a reader on a phone would pan sideways to read the page
            problems.append(f"at phone width the page is {overflow} px wider than the screen")
        page.evaluate(SCROLL_TOP_JS, 10)
        page.screenshot(shots / f"{stem}-390.png")
        if report.get("hasDisplay"):
            page.evaluate(SCROLL_TO_DISPLAY_JS, 10)
            page.screenshot(shots / f"{stem}-math-390.png")
    page.b.pump(0.05)  # late console messages
    problems += list(dict.fromkeys(page.errors))
    summary = (f"{report['typeset']}/{report['math']} formulas typeset, {report['images']} images"
               + (f", MathJax {report['mathjax']}" if report.get("mathjax") else ""))
    return problems, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the built book")
    ap.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots",
                    help="where the screenshots go (emptied first)")
    ap.add_argument("--no-screenshots", action="store_true")
    ap.add_argument("--chromium", help="Chromium binary (default: $CHROMIUM or /usr/bin/chromium)")
    ap.add_argument("--file-url", action="store_true", help="open the pages from file:// instead of HTTP")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a page may take to load and typeset")
    ap.add_argument("pages", nargs="*", help="pages relative to --html (default: every page)")
    args = ap.parse_args(argv)

    html = args.html.resolve()
    if not (html / "index.html").is_file():
        print(f"check_book: no built book at {html} (run `make book` first)", file=sys.stderr)
        return 2
    binary = find_chromium(args.chromium)
    if binary is None:
        print("check_book: no Chromium found (apt-get install chromium, or set CHROMIUM=...)",
              file=sys.stderr)
        return 2
    pages = args.pages or pages_of(html)
    missing = missing_glyph_fonts(html, pages)
    if missing:
        print(f"check_book: {missing}", file=sys.stderr)
        return 2
    shots = None if args.no_screenshots else args.screenshots.resolve()
    if shots is not None:
        shutil.rmtree(shots, ignore_errors=True)
        shots.mkdir(parents=True)

    start = time.monotonic()
    httpd, base = (None, html.as_uri() + "/") if args.file_url else serve(html)
    log_path = Path(tempfile.gettempdir()) / f"check_book_chromium_{os.getpid()}.log"
    browser = Browser(binary, log_path)
    failures: dict[str, list[str]] = {}
    try:
        try:
            version = browser.call("Browser.getVersion", timeout=60)["product"]
            page = Page(browser)
        except CDPError as e:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            print(f"check_book: Chromium did not start: {e}\n{tail}", file=sys.stderr)
            return 2
        print(f"check_book: {len(pages)} pages of {html} via {base} in {version}, non-local requests blocked")
        for name in pages:
            t0 = time.monotonic()
            target = redirect_target(html, name)
            if target is not None:  # nothing to read there; the target is checked as a page of its own
                dest = (html / name).parent / target.split("#")[0]
                problems = [] if dest.is_file() else [f"redirects to {target}, which was not built"]
                summary = f"redirect to {target}"
            else:
                try:
                    problems, summary = check_page(page, base + name, name, shots, args.timeout)
                except CDPError as e:
                    problems, summary = [str(e)], "did not finish"
            status = "FAIL" if problems else "ok  "
            print(f"  {status} {name}: {summary} ({time.monotonic() - t0:.1f} s)")
            for p in problems:
                print(f"         - {p}")
            if problems:
                failures[name] = problems
    finally:
        browser.close()
        if httpd is not None:
            httpd.shutdown()
        log_path.unlink(missing_ok=True)
    took = time.monotonic() - start
    where = f"; screenshots in {shots}" if shots is not None else ""
    if failures:
        print(f"check_book: {len(failures)} of {len(pages)} pages FAILED ({took:.1f} s){where}",
              file=sys.stderr)
        for name, problems in failures.items():
            print(f"  {name}: {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
                  file=sys.stderr)
        return 1
    print(f"check_book: all {len(pages)} pages passed in {took:.1f} s{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
