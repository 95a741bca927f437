"""Pages from Jinja2 templates: one environment for every page robcurves writes.

Templates live in ``robcurves/report/templates`` (shipped as package data). HTML templates
(``*.html.j2``) are autoescaped, so model and data set names from users are always escaped;
markdown templates (``*.md.j2``) are not. ``base.html.j2`` holds the page skeleton and the style
sheet; a page extends it and fills the blocks ``title`` and ``content``::

    {% extends "base.html.j2" %}
    {% block title %}robcurves study{% endblock %}
    {% block content %}<h1>{{ heading }}</h1>...{% endblock %}

and is rendered with ``render("study.html.j2", heading=...)``.
"""

from __future__ import annotations

import functools

import jinja2

__all__ = ["environment", "render"]


@functools.cache
def environment() -> jinja2.Environment:
    """The shared environment: templates from this package, HTML autoescaped, undefined names
    an error (a typo in a template fails loudly instead of printing nothing)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("robcurves.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"),
                                            disabled_extensions=("md.j2", "md"),
                                            default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["md_cell"] = md_cell
    return env


def md_cell(text: str) -> str:
    """A markdown table cell: a ``|`` inside the text would end the cell, so it is escaped."""
    return str(text).replace("|", "\\|")


def render(template: str, **context: object) -> str:
    """Render the named template of ``robcurves/report/templates`` with ``context``."""
    return environment().get_template(template).render(**context)
