"""Rendering an email from its templates: `<name>.html` with the CSS inlined, and `<name>.txt`.

Email clients drop <style>, so the HTML is written with a <style> block and inlined
at render time by css-inline; media queries stay in a <style> tag for clients that
honour them. Jinja autoescape keeps the values inert. Which template and what goes
into it are the caller's; this module knows only how an email is rendered.
"""
from __future__ import annotations

import re
import weakref

import css_inline
from flask import current_app, render_template

_inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


# --- CSS inlined once per template ------------------------------------------------
#
# Inlining a rendered email costs more than rendering it, yet every email from one template gets
# the same style attributes: they depend on the elements and classes, which the
# template fixes, not on the values filled in. So the HTML template (its
# `{% extends %}` resolved) is inlined once, with each Jinja tag swapped for a
# plain-text slot, and the result is compiled as the template to render. The
# email reads exactly as inline(render(...)) would (same elements, attributes
# and text; byte for byte unless a value holds a quote or a CR): Jinja writes
# &#34; where the inliner's serialiser writes " or &quot;, and a CR LF in a
# value is left to the MIME line ends instead of being made LF by the parser.
# Templates this cannot handle safely (nested blocks, blocks the layout lacks,
# a slot the HTML parser would move, e.g. a loop between table rows) are
# inlined per email as before.

_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_EXTENDS = re.compile(r'\s*\{%-?\s*extends\s+"([^"]+)"\s*-?%\}')
_BLOCK = re.compile(r"\{%\s*block\s+(\w+)\s*%\}(.*?)\{%\s*endblock\s*%\}", re.S)
_SLOT = re.compile(r"jinjaslot(\d{5})x")


class _NotFlat(Exception):
    pass


def _flatten(env, name: str, uptodate: list) -> str:
    """The template's source with one level of `{% extends %}` resolved (simple blocks only)."""
    source, _, is_current = env.loader.get_source(env, name)
    uptodate.append(is_current)
    if not env.keep_trailing_newline:  # as Jinja's lexer does
        source = re.sub(r"(\r\n|\r|\n)\Z", "", source)
    m = _EXTENDS.match(source)
    if not m:
        return source
    parent = _flatten(env, m.group(1), uptodate)
    blocks = dict(_BLOCK.findall(source))
    parent_blocks = dict(_BLOCK.findall(parent))
    outside = _BLOCK.sub("", source[m.end():])
    if (outside.strip() or not set(blocks) <= set(parent_blocks)
            or any("{% block" in body or "super()" in body for body in (*blocks.values(), *parent_blocks.values()))):
        raise _NotFlat(name)
    return _BLOCK.sub(lambda b: blocks.get(b.group(1), b.group(2)), parent)


def _preinline(env, name: str):
    """(template with the CSS inlined, uptodate checks), or (None, checks) to inline per email."""
    uptodate: list = []
    try:
        source = _flatten(env, name, uptodate)
    except _NotFlat:
        return None, uptodate
    tags: list[str] = []

    def slot(match):
        tags.append(match.group(0))
        return f"jinjaslot{len(tags) - 1:05d}x"

    if _SLOT.search(source):
        return None, uptodate
    inlined = _inliner.inline(_JINJA_TAG.sub(slot, source))
    if [int(n) for n in _SLOT.findall(inlined)] != list(range(len(tags))):
        return None, uptodate  # the parser moved or dropped a tag: its place is not what the template says
    return env.from_string(_SLOT.sub(lambda m: tags[int(m.group(1))], inlined)), uptodate


_preinlined: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # jinja env -> {name: (template, checks)}


def _render_html(name: str, context: dict) -> str:
    env = current_app.jinja_env
    per_env = _preinlined.setdefault(env, {})
    cached = per_env.get(name)
    if cached is None or (env.auto_reload and not all(c is None or c() for c in cached[1])):
        cached = per_env[name] = _preinline(env, name)
    template = cached[0]
    if template is None:
        return _inliner.inline(render_template(name, **context))
    current_app.update_template_context(context)
    return template.render(context)


def render_email(template: str, context: dict) -> tuple[str, str]:
    """(HTML with its CSS inlined, plain text) of `template`.html and `template`.txt with `context`."""
    html = _render_html(f"{template}.html", dict(context))
    text = render_template(f"{template}.txt", **context)
    return html, text.strip() + "\n"
