"""How many labels per second the labelling server stores, with none lost; page load time.

Prepares a session (a logistic-regression model on the embedded digits, 70 points, eps 0.1 and
0.2: 240 images), serves it with waitress (``--threads``) in a forked process on 127.0.0.1 only,
and posts ``--annotators`` x 200 labels from as many client threads at once (each annotator its
own image ids, over keep-alive connections). Then checks that every label is in the database
exactly once. With Chromium and chromedriver (and selenium) it also measures the page load
(navigation start to the first image shown and ready for a key, median of ``--loads``) and, with
``--shots DIR``, saves screenshots at phone (390x844) and desktop (1280x900) width.

    python benchmarks/label_server.py --annotators 4 --shots /tmp/label-shots

Writes its section of benchmarks/RESULTS.md between the label-server markers.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, write_section  # noqa: E402

PER_ANNOTATOR = 200


def make_session(folder: Path):
    from sklearn.linear_model import LogisticRegression

    from robcurves import RobustnessCurve, distances, wrap
    from robcurves import data as rdata
    from robcurves.labels import prepare_session

    ds = rdata.load("digits")
    model = wrap(LogisticRegression(max_iter=300).fit(ds.x[200:].reshape(-1, 64), ds.y[200:]))
    curve = RobustnessCurve.from_distances(distances(model, ds.x[:70], ds.y[:70], "inf"),
                                           name="logistic")
    return prepare_session(folder, curve, model, ds, eps=(0.1, 0.2))


def _serve(session: str, db: str, port: int, threads: int) -> None:
    from robcurves.labels.app import serve

    serve(session, db, port=port, threads=threads)


def _browser(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # the exact viewport
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
    return driver


def browser_checks(url: str, loads: int, shots: Path | None) -> list[float] | None:
    """Page load times (ms, navigation start to the first image ready) and screenshots."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return None
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        return None
    times = []
    for width, height, tag in ((390, 844, "phone"), (1280, 900, "desktop")):
        driver = _browser(width, height)
        try:
            driver.get(url)
            if shots:
                driver.save_screenshot(str(shots / f"label-name-{tag}.png"))
            box = driver.find_element(By.ID, "name")
            box.send_keys(f"bench-{tag}")
            box.submit()

            def ready(drv):
                return drv.find_element(By.TAG_NAME, "body").get_attribute(
                    "data-state") == "ready"

            for _ in range(loads if tag == "phone" else 1):
                driver.get(url)
                WebDriverWait(driver, 20).until(ready)
                times.append(driver.execute_script("return window.firstReadyMs"))
            if shots:
                driver.find_element(By.TAG_NAME, "body").send_keys("3")
                WebDriverWait(driver, 20).until(
                    lambda drv: drv.find_element(By.ID, "count").text == "1" and ready(drv))
                driver.save_screenshot(str(shots / f"label-{tag}.png"))
        finally:
            driver.quit()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--annotators", type=int, default=4)
    ap.add_argument("--threads", type=int, default=8, help="server threads")
    ap.add_argument("--loads", type=int, default=5, help="page loads timed")
    ap.add_argument("--shots", default=None, help="folder for screenshots")
    args = ap.parse_args()
    import requests

    from robcurves.labels import LabelStore

    shots = Path(args.shots) if args.shots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="label-bench-"))
    session = make_session(tmp / "session")
    db = tmp / "labels.sqlite"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    proc = multiprocessing.get_context("fork").Process(
        target=_serve, args=(str(session.path), str(db), port, args.threads))
    proc.start()
    try:
        for _ in range(600):
            try:
                requests.get(url, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        ids = sorted(session.items)[:PER_ANNOTATOR]
        clients = []
        for a in range(args.annotators):
            c = requests.Session()
            c.post(url + "annotator", data={"name": f"annotator-{a}"})
            clients.append(c)
        jobs = [(c, i) for k in range(PER_ANNOTATOR) for c in clients for i in [ids[k]]]

        def post(job):
            c, image = job
            r = c.post(url + "api/label", json={"image": image, "answer": 1, "ms": 500})
            return r.status_code == 200 and r.json()["stored"]

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.annotators) as pool:
            ok = list(pool.map(post, jobs))
        seconds = time.perf_counter() - t0
        loads = browser_checks(url, args.loads, shots)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.join(10)
    rows = LabelStore(db, session.id).rows()
    rows = [r for r in rows if r["annotator"].startswith("annotator-")]  # not the browser's
    pairs = {(r["annotator"], r["image"]) for r in rows}
    n = len(jobs)
    lost = n - len(pairs)
    dup = len(rows) - len(pairs)
    line = (f"{args.annotators} annotators x {PER_ANNOTATOR} labels posted at once: "
            f"{n / seconds:.0f} labels/s ({n} in {seconds:.2f} s), {sum(ok)} acknowledged, "
            f"{lost} lost, {dup} duplicated")
    print(line)
    body = [
        "## Labelling server (`benchmarks/label_server.py`)", "",
        f"- date: {datetime.datetime.now().isoformat(timespec='minutes')}",
        f"- machine: {machine()}",
        f"- command: `python benchmarks/label_server.py --annotators {args.annotators} "
        f"--threads {args.threads}`",
        f"- waitress with {args.threads} threads in its own process on 127.0.0.1, SQLite in WAL "
        "mode with synchronous=FULL (each label on disk before it is acknowledged); one client "
        "thread per annotator, keep-alive connections, client and server on the same machine",
        f"- {line}"]
    if loads:
        body.append(f"- page load in headless Chromium (navigation start to the first image "
                    f"ready for a key), median of {len(loads)}: {statistics.median(loads):.0f} "
                    f"ms (min {min(loads):.0f}, max {max(loads):.0f})")
        print(body[-1])
    write_section("label-server", "\n".join(body))
    shutil.rmtree(tmp, ignore_errors=True)
    if lost or dup or not all(ok):
        raise SystemExit("labels were lost or duplicated")


if __name__ == "__main__":
    main()
