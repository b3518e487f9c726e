"""A Sphinx extension with the book's fixes to the HTML that Jupyter Book writes.

sphinx-thebe adds its inline configuration script after the HTML builder has started, so
Sphinx records it twice (once with ``filename=None``, once with ``filename=''``) and every
page carries two copies; the second re-declares ``const THEBE_JS_URL`` and the page logs a
SyntaxError. Script tags with the same source and attributes are dropped here, keeping the
first of each.
"""

from __future__ import annotations


def _script_key(script) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    return getattr(script, "filename", None) or "", repr(sorted(attributes.items()))


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    """Keep one copy of each identical ``<script>`` (same source, same attributes)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
