"""The labelling web app (Flask) and its server (waitress).

Why these: Flask is small, well kept and WSGI, and renders with Jinja2 (robcurves' own template
environment is used, HTML autoescaped); waitress is a pure-Python production WSGI server with a
thread pool, so several people can label at once (Flask's development server is not meant for
that). Install both with ``pip install "robcurves[label]"``.

Routes: ``GET /`` (the page: a name form on the first visit, then the labeller), ``POST
/annotator`` (form field ``name``: the annotator, kept in a signed cookie), ``POST /logout``,
``GET /api/next`` (the annotator's next image in their own random order and their progress),
``POST /api/label`` (JSON ``{"image": id, "answer": class or -1, "ms": response time}``;
400 for malformed or oversized bodies, 404 for an unknown image id, 401 without an annotator),
``GET /img/<id>.png`` (the PNG files the session wrote).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from ..report.render import render
from .session import CANNOT_TELL, Session
from .store import LabelStore

__all__ = ["create_app", "serve", "MAX_BODY_BYTES", "MAX_NAME_CHARS"]

MAX_BODY_BYTES = 2048  #: larger request bodies are refused with 400
MAX_NAME_CHARS = 200  #: longest annotator name
MAX_RESPONSE_MS = 24 * 3600 * 1000


def _order(session: Session, annotator: str) -> list[str]:
    """The annotator's own random order of the image ids (the same after a restart)."""
    seed = hashlib.sha256(f"{session.id}\0{annotator}".encode()).digest()
    ids = sorted(session.items)
    random.Random(seed).shuffle(ids)
    return ids


def create_app(session: Session | str | Path, db: str | Path):
    """The Flask app serving ``session``'s images and storing labels in ``db``."""
    from flask import Flask, Response, abort, jsonify, redirect, request, send_file
    from flask import session as cookie
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    if not isinstance(session, Session):
        session = Session.load(session)
    store = LabelStore(db, session.id)
    orders: dict[str, list[str]] = {}
    app = Flask(__name__)
    app.config.update(SECRET_KEY=store.meta("secret"), MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_HTTPONLY=True)
    app.extensions["robcurves_store"] = store
    total = len(session.items)

    def annotator() -> str | None:
        name = cookie.get("annotator")
        return name if isinstance(name, str) else None

    def progress(name: str) -> tuple[int, list[str]]:
        done = store.labelled(name)
        order = orders.setdefault(name, _order(session, name))
        return len(done), [i for i in order if i not in done]

    def bad(message: str, code: int = 400):
        return jsonify(error=message), code

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return bad(f"request body over {MAX_BODY_BYTES} bytes")

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return bad(exc.description or exc.name, exc.code or 500)

    @app.get("/")
    def page():
        name = annotator()
        html = render("label.html.j2", annotator=name, classes=list(session.classes),
                      total=total, cannot_tell=CANNOT_TELL, max_name=MAX_NAME_CHARS)
        return Response(html, mimetype="text/html")

    @app.post("/annotator")
    def set_annotator():
        name = request.form.get("name", "").strip()
        if not name or len(name) > MAX_NAME_CHARS:
            return bad(f"the name must have 1 to {MAX_NAME_CHARS} characters")
        cookie["annotator"] = name
        return redirect("/", code=303)

    @app.post("/logout")
    def logout():
        cookie.pop("annotator", None)
        return redirect("/", code=303)

    @app.get("/api/next")
    def next_image():
        name = annotator()
        if name is None:
            return bad("no annotator: enter your name first", 401)
        done, left = progress(name)
        image = left[0] if left else None
        return jsonify(image=image, url=None if image is None else f"img/{image}.png",
                       done=done, total=total)

    @app.post("/api/label")
    def add_label():
        name = annotator()
        if name is None:
            return bad("no annotator: enter your name first", 401)
        if request.content_length is None or request.content_length > MAX_BODY_BYTES:
            return bad(f"a JSON body of at most {MAX_BODY_BYTES} bytes with a Content-Length "
                       "is expected")
        try:
            body = json.loads(request.get_data(cache=False, as_text=False))
        except (ValueError, UnicodeDecodeError):
            return bad("the body is not JSON")
        if not isinstance(body, dict) or set(body) != {"image", "answer", "ms"}:
            return bad('expected a JSON object {"image": id, "answer": class, "ms": time}')
        image, answer, ms = body["image"], body["answer"], body["ms"]
        if not isinstance(image, str):
            return bad(f"image must be an id string; got {image!r}")
        if (not isinstance(answer, int) or isinstance(answer, bool)
                or not (answer == CANNOT_TELL or 0 <= answer < len(session.classes))):
            return bad(f"answer must be a class 0..{len(session.classes) - 1} or "
                       f"{CANNOT_TELL} (cannot tell); got {answer!r}")
        if (not isinstance(ms, int) or isinstance(ms, bool)
                or not 0 <= ms <= MAX_RESPONSE_MS):
            return bad(f"ms must be an integer 0..{MAX_RESPONSE_MS}; got {ms!r}")
        if image not in session.items:
            return bad(f"unknown image id {image!r}", 404)
        stored = store.add(name, image, answer, ms)
        done, _ = progress(name)
        return jsonify(stored=stored, done=done, total=total)

    @app.get("/img/<image>.png")
    def image_file(image: str):
        if image not in session.items:
            abort(404, f"unknown image id {image!r}")
        return send_file(session.image_path(image), mimetype="image/png", max_age=3600)

    return app


def serve(session: Session | str | Path, db: str | Path, *, host: str = "127.0.0.1",
          port: int = 8000, threads: int = 8) -> None:
    """Serve the app with waitress until interrupted."""
    import waitress

    waitress.serve(create_app(session, db), host=host, port=port, threads=threads,
                   ident="robcurves-label")
