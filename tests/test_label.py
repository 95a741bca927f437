"""The labelling page (robcurves.labels), the human study and the adversarial gallery.

A tiny linear model on the embedded digits; one session of 70 points with eps 0.1 and 0.2 is
prepared once and served by waitress on 127.0.0.1 (in a thread, or in a forked process where a
crash is simulated). The browser test drives headless Chromium through Selenium and Debian's
chromedriver; it is skipped where either is missing.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("flask", reason="the labelling page needs flask (pip install robcurves[label])")
pytest.importorskip("waitress", reason="the labelling page needs waitress")
requests = pytest.importorskip("requests")

from robcurves import RobustnessCurve, distances, wrap  # noqa: E402
from robcurves import data as rdata  # noqa: E402
from robcurves.labels import CANNOT_TELL, LabelStore, Session, prepare_session, read_labels  # noqa: E402,I001
from robcurves.labels.app import MAX_BODY_BYTES, create_app  # noqa: E402
from robcurves.studies.human import human_study  # noqa: E402

NASTY = "Robert'); DROP TABLE labels;-- <script>alert(\"x\")</script> &amp; é"


@pytest.fixture(scope="module")
def digits_model():
    """Logistic regression on digits 200.., wrapped exactly (robcurves.bridges.sklearn)."""
    from sklearn.linear_model import LogisticRegression

    ds = rdata.load("digits")
    lr = LogisticRegression(max_iter=300).fit(ds.x[200:].reshape(-1, 64), ds.y[200:])
    return wrap(lr), ds, lr


@pytest.fixture(scope="module")
def session(digits_model, tmp_path_factory):
    model, ds, _ = digits_model
    d = distances(model, ds.x[:70], ds.y[:70], "inf")
    curve = RobustnessCurve.from_distances(d, name="linear")
    s = prepare_session(tmp_path_factory.mktemp("session"), curve, model, ds, eps=(0.1, 0.2))
    assert s.settings["points_where_curve_distance_differs"] == 0  # same attack, same result
    return s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """waitress serving the app in a thread on 127.0.0.1."""

    def __init__(self, session, db):
        import waitress

        self.app = create_app(session, db)
        self.server = waitress.create_server(self.app, host="127.0.0.1", port=0, threads=8)
        self.url = f"http://127.0.0.1:{self.server.effective_port}/"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def close(self):
        self.server.close()
        self.thread.join(5)


@pytest.fixture
def server(session, tmp_path):
    s = Server(session, tmp_path / "labels.sqlite")
    yield s
    s.close()


def _client(url: str, name: str) -> requests.Session:
    c = requests.Session()
    r = c.post(url + "annotator", data={"name": name})
    assert r.status_code == 200 and "Labelling as" in r.text
    return c


def _post(c: requests.Session, url: str, image: str, answer: int, ms: int = 100):
    return c.post(url + "api/label", json={"image": image, "answer": answer, "ms": ms})


# ------------------------------------------------------------------------------ the session
def test_session_images_are_the_adversarials(session, digits_model):
    from PIL import Image

    model, ds, _ = digits_model
    kinds = {k: [i for i in session.items.values() if i["kind"] == k]
             for k in ("clean", "minimal", "eps")}
    assert len(kinds["clean"]) == 70
    broken = [p for p in session.points if 0 < p["distance"] < math.inf]
    assert len(kinds["minimal"]) == len(broken)
    for iid, item in session.items.items():
        png = np.asarray(Image.open(session.image_path(iid)), dtype=np.float32) / 255
        x = ds.x[item["point"], 0]
        dist = np.abs(png - x).max()  # l_inf distance of what people see, up to 8-bit rounding
        want = {"clean": 0.0, "minimal": item["distance"], "eps": item["eps"]}[item["kind"]]
        assert dist <= want + 0.5 / 255 + 1e-6, (item, dist)
        if item["kind"] == "eps":
            assert item["eps"] >= item["distance"] and item["model_prediction"] != item["label"]
            assert dist >= want - 0.5 / 255 - 1e-6 or np.any(png == 0) or np.any(png == 1)
        if item["kind"] == "minimal":
            assert item["model_prediction"] != item["label"]
    assert len(set(session.items)) == len(session.items)  # ids unique, and say nothing:
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in session.items)


# ------------------------------------------------------------------------------ concurrency
def test_two_annotators_200_labels_each_concurrently(server, session):
    rng = np.random.default_rng(0)
    ids = sorted(session.items)
    assert len(ids) >= 200
    plan = {name: [(i, int(rng.integers(-1, 10))) for i in rng.choice(ids, 200, replace=False)]
            for name in ("ann-a", "ann-b")}
    clients = {name: _client(server.url, name) for name in plan}
    jobs = [(n, i, a) for n in plan for i, a in plan[n]]
    jobs += [(n, i, (a + 1) % 10) for n in plan for i, a in plan[n][:20]]  # retries, changed
    rng.shuffle(jobs)
    with ThreadPoolExecutor(16) as pool:
        res = list(pool.map(lambda j: _post(clients[j[0]], server.url, j[1], j[2]), jobs))
    assert all(r.status_code == 200 for r in res)
    assert sum(r.json()["stored"] for r in res) == 400  # the 40 retries stored nothing
    rows = server.app.extensions["robcurves_store"].rows()
    assert len(rows) == 400
    got = {(r["annotator"], r["image"]) for r in rows}
    assert got == {(n, i) for n in plan for i, _ in plan[n]}
    first = {(n, i): a for n in plan for i, a in plan[n]}
    stored = {(r["annotator"], r["image"]): r["answer"] for r in rows}
    retried = {(n, i) for n in plan for i, _ in plan[n][:20]}
    # a retry and its original raced: whichever arrived first stands, never both
    assert all(stored[k] == first[k] or (k in retried and stored[k] == (first[k] + 1) % 10)
               for k in stored)
    nxt = clients["ann-a"].get(server.url + "api/next").json()
    assert nxt["done"] == 200 and nxt["total"] == len(ids)
    assert nxt["image"] not in {i for i, _ in plan["ann-a"]}


# ------------------------------------------------------------------------------ bad input
def test_bad_input(server, session):
    url = server.url
    image = sorted(session.items)[0]
    anon = requests.Session()
    assert _post(anon, url, image, 1).status_code == 401
    assert anon.post(url + "annotator", data={"name": "x" * 201}).status_code == 400
    c = _client(url, NASTY)
    h = {"Content-Type": "application/json"}
    cases = [b"{not json", b"[1, 2]", json.dumps({"image": image, "answer": 1}).encode(),
             json.dumps({"image": image, "answer": 10, "ms": 5}).encode(),
             json.dumps({"image": image, "answer": True, "ms": 5}).encode(),
             json.dumps({"image": image, "answer": 1, "ms": -1}).encode(),
             json.dumps({"image": 3, "answer": 1, "ms": 5}).encode(), b"\xff\xfe",
             json.dumps({"image": image, "answer": 1, "ms": 5, "x": "y" * MAX_BODY_BYTES}
                        ).encode()]
    for body in cases:
        r = c.post(url + "api/label", data=body, headers=h)
        assert r.status_code == 400, (body[:40], r.status_code)
        assert "error" in r.json()
    r = _post(c, url, "0123456789abcdef", 1)
    assert r.status_code == 404 and "0123456789abcdef" in r.json()["error"]
    assert c.get(url + "img/0123456789abcdef.png").status_code == 404
    assert c.get(url + f"img/{image}.png").headers["Content-Type"] == "image/png"
    assert server.app.extensions["robcurves_store"].rows() == []
    assert _post(c, url, image, CANNOT_TELL, 1234).json() == {"stored": True, "done": 1,
                                                              "total": len(session.items)}
    (row,) = server.app.extensions["robcurves_store"].rows()
    assert row["annotator"] == NASTY and row["answer"] == CANNOT_TELL
    page = c.get(url).text
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert "DROP TABLE labels;--" in page


# ------------------------------------------------------------------------------ restart
def _serve_forked(session_path, db, port):
    from robcurves.labels.app import serve

    serve(session_path, db, port=port, threads=4)


def _wait_up(url, proc, timeout=30.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            return requests.get(url, timeout=1)
        except requests.ConnectionError:
            assert proc.is_alive(), "the server process died"
            time.sleep(0.05)
    raise AssertionError("server did not start")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork to kill a server process")
def test_restart_after_a_crash_keeps_every_label(session, tmp_path):
    db, port = tmp_path / "labels.sqlite", _free_port()
    url = f"http://127.0.0.1:{port}/"
    ctx = multiprocessing.get_context("fork")
    ids = sorted(session.items)
    posted = []
    for round_ in range(2):
        proc = ctx.Process(target=_serve_forked, args=(str(session.path), str(db), port))
        proc.start()
        try:
            _wait_up(url, proc)
            c = _client(url, "anna")  # the cookie of the first run must work too
            for i in ids[30 * round_:30 * round_ + 30]:
                assert _post(c, url, i, 3).json()["stored"] is True
                posted.append(i)
            assert c.get(url + "api/next").json()["done"] == len(posted)
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # a crash, not a clean shutdown
            proc.join(10)
    store = LabelStore(db, session.id)
    assert store.journal_mode() == "wal"
    assert [r["image"] for r in store.rows()] == posted
    out = tmp_path / "labels.csv"
    assert store.export_csv(out) == 60
    assert read_labels(out) == read_labels(db) == store.rows()
    with pytest.raises(ValueError, match="belongs to session"):
        LabelStore(db, "another-session")


# ------------------------------------------------------------------------------ commands
def test_label_commands(digits_model, session, tmp_path, capsys):
    import pickle

    from robcurves.cli import main

    model, ds, lr = digits_model
    runs = tmp_path / "runs"
    runs.mkdir()
    curve = RobustnessCurve.from_distances(distances(model, ds.x[:10], ds.y[:10], 2), name="lr")
    curve.save(runs / "curve-l2.json")
    with open(tmp_path / "lr.pkl", "wb") as f:
        pickle.dump(lr, f)
    args = ["label", "prepare", "--curves", str(runs), "--data", "digits", "--model",
            str(tmp_path / "lr.pkl"), "--eps", "1.5", "--n", "10"]
    assert main(args) == 0
    made = Session.load(runs / "label-l2")
    assert made.norm == 2.0 and made.eps == (1.5,)
    assert sum(i["kind"] == "clean" for i in made.items.values()) == 10
    assert main(args) == 2  # an existing session is not overwritten
    assert "already holds a labelling session" in capsys.readouterr().err
    assert main(["label", "serve", "--db", str(tmp_path / "x.sqlite")]) == 2
    assert "give --session" in capsys.readouterr().err
    assert main(["label", "serve", *args[2:-4], "--eps", "0.5", "--n", "10"]) == 2  # not the
    # prepared session: refused before serving
    assert "prepared with eps [1.5] and 10 points, not eps [0.5] and 10" in \
        capsys.readouterr().err
    store = LabelStore(tmp_path / "labels.sqlite", session.id)
    ids = sorted(session.items)[:5]
    for i in ids:
        store.add("a,b \"quoted\"", i, 2, 10)
    out = tmp_path / "labels.csv"
    assert main(["label", "export", "--db", str(tmp_path / "labels.sqlite"), "--out",
                 str(out)]) == 0
    assert [(r["annotator"], r["image"]) for r in read_labels(out)] == \
        [("a,b \"quoted\"", i) for i in ids]
    assert main(["label", "study", "--session", str(session.path), "--labels", str(out),
                 "--out", str(tmp_path / "human")]) == 0
    assert (tmp_path / "human" / "human.html").is_file()
    assert main(["label", "study", "--session", str(runs / "label-l2"), "--labels", str(out),
                 "--out", str(tmp_path / "h2")]) == 2  # labels of another session
    assert "unknown image" in capsys.readouterr().err


# ------------------------------------------------------------------------------ the study
def _expected(session, typed: dict[str, int]):
    """The human-validated distances and per-eps shares, computed the plain way."""
    dist = []
    for p in session.points:
        d = p["distance"]
        if math.isfinite(d):
            kind = "clean" if d == 0 else "minimal"
            (iid,) = [i for i, it in session.items.items()
                      if it["kind"] == kind and it["point"] == p["index"]]
            if iid in typed and typed[iid] != p["label"]:
                d = math.inf
        dist.append(d)
    shares = []
    for e in session.eps:
        got = [typed[i] == it["label"] for i, it in session.items.items()
               if it["kind"] == "eps" and it["eps"] == e and i in typed]
        shares.append(sum(got) / len(got) if got else None)
    return np.array(dist), shares


def test_study_matches_a_plain_count(session):
    rng = np.random.default_rng(1)
    ids = sorted(session.items)
    typed = {i: (session.items[i]["label"] if rng.random() < 0.5 else CANNOT_TELL)
             for i in rng.choice(ids, 120, replace=False)}
    rows = [{"annotator": "a", "image": i, "answer": a, "response_ms": 1, "created": ""}
            for i, a in typed.items()]
    st = human_study(rows, session)
    dist, shares = _expected(session, typed)
    np.testing.assert_array_equal(st.validated.distances, dist)
    assert list(st.kept_share) == pytest.approx(shares)
    assert st.n_changed == int(np.sum(np.isinf(dist)) - np.sum(np.isinf(st.curve.distances)))
    assert st.n_valid + st.n_changed + st.n_unlabelled == st.n_broken
    # the validated curve never lies above the plain one
    grid = np.linspace(0, 0.5, 51)
    assert np.all(st.validated.robust_error(grid) <= st.curve.robust_error(grid))
    # majority over annotators: a second and third person who disagree outvote the first
    flip = {i: (session.items[i]["label"] + 1) % 10 for i in typed}
    more = rows + [{**r, "annotator": n, "answer": flip[r["image"]]} for r in rows
                   for n in ("b", "c")]
    st3 = human_study(more, session)
    assert st3.n_valid == 0 and st3.kept_share == tuple(0.0 if s is not None else None
                                                         for s in shares)
    assert st3.changes_from == min(e for e, s in zip(session.eps, shares, strict=True)
                                   if s is not None)
    with pytest.raises(ValueError, match="unknown image"):
        human_study([{**rows[0], "image": "ffffffffffffffff"}], session)


def test_study_writes_its_page(session, tmp_path):
    ids = sorted(session.items)
    rows = [{"annotator": "<b>x</b>", "image": i, "answer": 0, "response_ms": 1,
             "created": ""} for i in ids[:50]]
    paths = human_study(rows, session).write(tmp_path)
    html = paths["html"].read_text()
    assert "Human-validated curve" in html and "data:image/png;base64," in html
    assert json.loads(paths["json"].read_text())["n_broken"] > 0


# ------------------------------------------------------------------------------ browser
def _chromedriver() -> str | None:
    return shutil.which("chromedriver")


def _browser(width: int, height: int):
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}"):
        opts.add_argument(flag)
    return webdriver.Chrome(options=opts, service=Service(_chromedriver()))


@pytest.mark.skipif(_chromedriver() is None or shutil.which("chromium") is None,
                    reason="needs chromium and chromedriver (apt-get install chromium "
                           "chromium-driver)")
def test_a_person_labels_20_images_by_keyboard(server, session):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser(390, 844)
    try:
        driver.get(server.url)
        box = driver.find_element(By.ID, "name")
        box.send_keys(NASTY)
        box.submit()
        wait = WebDriverWait(driver, 20)
        def state():
            return (driver.find_element(By.TAG_NAME, "body").get_attribute("data-state"))
        wait.until(lambda _: state() == "ready")
        assert driver.find_element(By.ID, "annotator").text == NASTY  # shown literally
        body = driver.find_element(By.TAG_NAME, "body")
        typed: dict[str, int] = {}
        rng = np.random.default_rng(2)
        for k in range(20):
            src = driver.find_element(By.ID, "img").get_attribute("src")
            iid = src.rsplit("/", 1)[1].removesuffix(".png")
            label = session.items[iid]["label"]
            answer = [label, (label + 3) % 10, CANNOT_TELL][int(rng.integers(3))]
            body.send_keys("c" if answer == CANNOT_TELL else str(answer))
            typed[iid] = answer
            wait.until(lambda _, k=k: driver.find_element(By.ID, "count").text == str(k + 1)
                       and state() == "ready")
        assert driver.find_element(By.ID, "bar").get_attribute("value") == "20"
    finally:
        driver.quit()
    rows = server.app.extensions["robcurves_store"].rows()
    assert [(r["annotator"], r["image"], r["answer"]) for r in rows] == \
        [(NASTY, i, a) for i, a in typed.items()]
    assert all(0 <= r["response_ms"] < 60_000 for r in rows)
    st = human_study(rows, session)
    dist, shares = _expected(session, typed)
    np.testing.assert_array_equal(st.validated.distances, dist)
    assert list(st.kept_share) == pytest.approx(shares)
