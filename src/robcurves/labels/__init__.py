"""Human labels of adversarial examples: a labelling session, its SQLite store, the web app.

- :mod:`.session`: :func:`prepare_session` computes minimal adversarials of a curve's points
  (and the same perturbations stretched to chosen eps), writes them and the clean images as PNG
  files with opaque random ids, and a ``manifest.json`` that says which is which (never served).
- :mod:`.store`: :class:`LabelStore`, the labels in SQLite (WAL mode): annotator, image id,
  answer, response time, timestamp; one label per annotator and image.
- :mod:`.app`: :func:`create_app`, the Flask app that shows the images one at a time, and
  :func:`serve` (waitress).

``robcurves label prepare|serve|export|study`` are the commands;
:mod:`robcurves.studies.human` turns labels into human-validated curves.
"""

from .session import CANNOT_TELL, Session, prepare_session
from .store import LabelStore, read_labels

__all__ = ["CANNOT_TELL", "Session", "prepare_session", "LabelStore", "read_labels"]
