"""The comparison report: figures, tables and a plain-language summary, as HTML and markdown.

:func:`build_report` compares curves of any norms and returns a :class:`Report`;
:meth:`Report.write` (or :func:`write_report`) puts ``report.html`` (self-contained),
``report.md`` and ``figures/`` in a folder. Optional sections: a gradient-masking check per
model (``masking=``, results of :func:`robcurves.diagnostics.gradient_masking`; saved and read
with :func:`save_masking` and :func:`load_masking`), human validation (``human=``, results of
:func:`robcurves.studies.human.human_study`) and the fixed-eps protocol next to the curves
(``protocol=``, results of :func:`robcurves.robust_accuracy` by model name; saved and read with
:func:`save_protocol` and :func:`load_protocol`; each a :class:`ProtocolCheck` of the report).

Where the parts are: :mod:`.build` (the :class:`Report` and how it is computed), :mod:`.figures`
(matplotlib figures), :mod:`.text` (eps formatting, tables as text, the summary sentences),
:mod:`.render` (the Jinja2 environment every robcurves page is rendered with) and
``templates/`` (``base.html.j2``, the page skeleton and style that other pages extend;
``report.html.j2`` and ``report.md.j2``; ``human.html.j2``, the human-validation page of
:mod:`robcurves.studies.human`; ``label.html.j2``, the labelling page of
:mod:`robcurves.labels`). :mod:`.gallery` draws minimal adversarial examples (``robcurves
gallery``).
"""

from .build import (
    ProtocolCheck,
    Report,
    build_report,
    load_masking,
    load_protocol,
    protocol_check,
    save_masking,
    save_protocol,
    write_report,
)
from .text import format_eps, is_8bit

__all__ = ["Report", "ProtocolCheck", "build_report", "write_report", "save_masking",
           "load_masking", "save_protocol", "load_protocol", "protocol_check", "format_eps",
           "is_8bit"]
