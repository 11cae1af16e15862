"""Sphinx extension: emit each inline <script> of a page once.

Sphinx 7.4 registers a script added with ``app.add_js_file(None, body=...)`` after the builder started
(sphinx-thebe and sphinx-togglebutton do) twice: once as ``_JavaScript(None)`` and again, when writing
begins, as ``_JavaScript('')``; the two do not compare equal, so both are written. For sphinx-thebe's
``const THEBE_JS_URL = ...`` that is an uncaught "SyntaxError: Identifier 'THEBE_JS_URL' has already been
declared" on every page of the book (tools/check_book.py reports it). This drops the second copy.
Loaded through ``sphinx.local_extensions`` in _config.yml.
"""
from __future__ import annotations


def _key(js) -> tuple:
    attrs = getattr(js, "attributes", {}) or {}
    return (getattr(js, "filename", js) or "", getattr(js, "priority", 500), tuple(sorted(attrs.items())))


def unique_scripts(app, pagename, templatename, context, doctree) -> None:
    files = context.get("script_files")
    if not isinstance(files, list):
        return
    seen: set[tuple] = set()
    unique = []
    for js in files:
        key = _key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    files[:] = unique


def setup(app):
    app.connect("html-page-context", unique_scripts)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
