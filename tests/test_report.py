"""The comparison report and the ``robcurves compare`` command, as a user sees them."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from robcurves.curve import RobustnessCurve
from robcurves.report import build_report, format_eps

N = 300
T = 8 / 255


def _curves() -> list[RobustnessCurve]:
    """Three models on 8-bit data in l_inf and l2; 'adv' is trained at 8/255 and has a kink."""
    rng = np.random.default_rng(0)
    data = {"name": "synthetic-cifar", "bit_depth": 8}
    std = np.where(rng.random(N) < 0.05, 0.0, rng.lognormal(math.log(1.2 / 255), 0.5, N))
    adv = np.concatenate([np.zeros(60), rng.uniform(0, T, 30), T + rng.exponential(0.3 * T, 200),
                          [math.inf] * 10])
    rng.shuffle(adv)
    mid = np.where(rng.random(N) < 0.04, 0.0, rng.lognormal(math.log(4 / 255), 0.6, N))
    out = []
    for name, d, model in [("standard", std, {}), ("adv", adv, {"train_eps": T,
                                                                "train_norm": "linf"}),
                           ("mid", mid, {})]:
        meta = {"data": data, "model": model}
        out.append(RobustnessCurve(d, "linf", name=name, indices=np.arange(N), metadata=meta))
        out.append(RobustnessCurve(d * 17.0, "l2", name=name, indices=np.arange(N),
                                   metadata={"data": data}))
    return out


def _golden_curves() -> list[RobustnessCurve]:
    """A fixed pair of models on 8-bit data in l_inf and l2 ('adv & co' trained at 8/255)."""
    rng = np.random.default_rng(1)
    data = {"name": "synthetic-cifar", "bit_depth": 8}
    n = 120
    std = np.where(rng.random(n) < 0.05, 0.0, rng.lognormal(math.log(2 / 255), 0.5, n))
    adv = np.concatenate([np.zeros(25), rng.uniform(0, T, 10), T + rng.exponential(0.3 * T, 80),
                          [math.inf] * 5])
    rng.shuffle(adv)
    out = []
    for name, d, model in [("std", std, {}),
                           ("adv & co", adv, {"train_eps": T, "train_norm": "linf"})]:
        meta = {"data": data, "model": model}
        out.append(RobustnessCurve(d, "linf", name=name, indices=np.arange(n), metadata=meta))
        out.append(RobustnessCurve(d * 9.0, "l2", name=name, indices=np.arange(n),
                                   metadata={"data": data}))
    return out


class _Outline(HTMLParser):
    """The visible structure of a report page: title, summary items, and per section its id,
    heading, table (header and rows, as text) and caption."""

    def __init__(self) -> None:
        super().__init__()
        self.out: dict = {"h1": "", "summary": [], "sections": []}
        self._text: list[str] | None = None
        self._row: list[str] | None = None
        self._sec: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and a.get("id") not in ("summary", "figures"):
            self._sec = {"id": a.get("id"), "title": "", "head": [], "rows": [], "caption": "",
                         "row_classes": []}
            self.out["sections"].append(self._sec)
        elif tag == "tr":
            self._row = []
            if self._sec is not None:
                self._sec["row_classes"].append(a.get("class") or "")
        elif tag in ("h1", "h2", "li", "td", "th", "p"):
            self._text = []

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag not in ("h1", "h2", "li", "td", "th", "p", "tr") or (
                tag != "tr" and self._text is None):
            return
        if tag == "tr":
            if self._sec is not None and self._row is not None:
                if self._sec["head"] or not self._row:
                    self._sec["rows"].append(self._row)
            self._row = None
            return
        text = "".join(self._text).strip()
        self._text = None
        if tag == "h1":
            self.out["h1"] = text
        elif tag == "li":
            self.out["summary"].append(text)
        elif tag == "h2" and self._sec is not None:
            self._sec["title"] = text
        elif tag == "th" and self._sec is not None:
            self._sec["head"].append(text)
        elif tag == "td" and self._row is not None:
            self._row.append(text)
        elif tag == "p" and self._sec is not None:
            self._sec["caption"] = text


def _page_outline(page: str) -> dict:
    parser = _Outline()
    parser.feed(page)
    for sec in parser.out["sections"]:  # the header row was collected as a row too
        sec["rows"] = [r for r in sec["rows"] if r]
        sec["row_classes"] = sec["row_classes"][1:] if sec["head"] else sec["row_classes"]
    return parser.out


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    rep = build_report(_curves(), eps={"linf": [1 / 255, 4 / 255, 8 / 255]}, n_boot=200)
    paths = rep.write(out)
    return rep, paths, out


def test_format_eps():
    assert format_eps(8 / 255, per255=True) == "8/255"
    assert format_eps(2.5 / 255, per255=True) == "2.5/255"
    assert format_eps(0.0, per255=True) == "0"
    assert format_eps(math.inf) == "∞"
    assert format_eps(0.123456) == "0.123"


def test_report_contents(written):
    rep, paths, out = written
    assert set(rep.comparisons) == {"linf", "l2"}
    # 8-bit data: l_inf eps printed as x/255, l2 as decimals.
    assert rep.fmt("linf", 4 / 255) == "4/255" and rep.fmt("l2", 0.5) == "0.5"
    md = paths["markdown"].read_text()
    for heading in ("## Summary", "## l∞: robust error at chosen eps", "## l∞: crossings",
                    "## l∞: win intervals", "## l2: crossings",
                    "## Diagnostics: overfitting to the training eps",
                    "## Diagnostics: scale factor between norms",
                    "## Diagnostics: does the ranking transfer across norms?"):
        assert heading in md
    # The point-wise table has one row per requested eps with ranks.
    assert re.search(r"\| 1/255 \| [\d.]+% \(#\d\)", md)
    assert "| 8/255 |" in md
    # Every significant crossing of the comparison is in the crossing table.
    for c in rep.comparisons["linf"].crossings:
        assert f"| {rep.fmt_range('linf', c.eps, c.eps_end)} |" in md
    # The planted kink of the adversarially trained model is reported near 8/255.
    (k,) = rep.kinks
    assert k.model == "adv" and k.detected and abs(k.location - T) < 0.1 * T
    # l2 distances are exactly 17x the l_inf ones: the fitted factor says so.
    for f in rep.scale_fits:
        assert f.factor == pytest.approx(17.0) and f.misfit < 1e-9
    assert any("single threshold would mislead" in s for s in rep.summary)
    assert any("kink" in s for s in rep.summary)
    for stem in ("curves", "diff_linf", "diff_l2", "transfer"):
        png = out / "figures" / f"{stem}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / "figures" / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
    html = paths["html"].read_text()
    assert html.count('src="data:image/png;base64,') == 4  # self-contained
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")


def test_sections_and_tables_are_those_of_the_hand_written_page():
    """Headings, tables, captions and the summary as the string-built page had them.

    tests/golden/report_pair.json was captured from the report module before it was split and
    templated (same curves, same settings); the markdown is compared character for character.
    """
    import json

    gold = json.loads((Path(__file__).parent / "golden" / "report_pair.json")
                      .read_text(encoding="utf-8"))
    rep = build_report(_golden_curves(), eps={"linf": [1 / 255, 4 / 255, 8 / 255]}, n_boot=100)
    assert _page_outline(rep.to_html(png={})) == gold["html"]
    assert rep.to_markdown() == gold["markdown"]


def test_model_names_are_escaped_in_the_page():
    evil = "<script>alert(1)</script>"
    a, b = _golden_curves()[:3:2]
    b = RobustnessCurve(b.distances, "linf", name=evil, indices=b.indices, metadata=b.metadata)
    page = build_report([a, b], n_boot=20).to_html(png={})
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert evil in _page_outline(page)["sections"][0]["rows"][1]
    # In markdown a '|' in a name would end the table cell.
    b = RobustnessCurve(b.distances, "linf", name="x|y", indices=b.indices)
    md = build_report([a, b], n_boot=20).to_markdown()
    assert "| x\\|y | 120 |" in md


def test_cli_compare(tmp_path, capsys):
    from robcurves.cli import main

    files = []  # two models in two norms keep this end-to-end run short
    for c in _curves()[:4]:
        files.append(str(c.save(tmp_path / f"{c.name}_{c.norm_name}.json")))
    rc = main(["compare", *files, "--out", str(tmp_path / "rep"), "--eps", "1/255,4/255,8/255",
               "--eps", "l2:0.1,0.3", "--n-boot", "100", "--logx"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "report.html" in text
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| 0.3 |" in md and "| 4/255 |" in md
    # Different point sets are refused unless --intersect.
    other = RobustnessCurve(np.linspace(0.01, 0.1, 50), "linf", name="small",
                            indices=np.arange(50))
    f2 = str(other.save(tmp_path / "small.json"))
    rc = main(["compare", files[0], f2, "--out", str(tmp_path / "bad"), "--n-boot", "20"])
    err = capsys.readouterr().err
    assert rc == 2 and "different point sets" in err and "pass --intersect" in err
    assert "intersect=True" not in err  # the command line spells it --intersect
    rc = main(["compare", files[0], f2, "--out", str(tmp_path / "ok"), "--n-boot", "20",
               "--intersect"])
    assert rc == 0 and "50 points common" in (tmp_path / "ok" / "report.md").read_text()
    rc = main(["compare", files[0], files[2], "--out", str(tmp_path / "x"), "--eps", "8/0"])
    assert rc == 2 and "cannot read eps '8/0'" in capsys.readouterr().err


def test_cli_eps_options():
    from robcurves.cli.compare import parse_eps_options

    assert parse_eps_options(["1/255,8/255", "l2:0.5"]) == {"*": [1 / 255, 8 / 255], "l2": [0.5]}
    with pytest.raises(ValueError, match="unknown norm 'l3'"):
        parse_eps_options(["l3:0.5"])
    with pytest.raises(ValueError, match="given twice"):
        parse_eps_options(["0.1", "0.2"])


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(written, tmp_path):
    rep, paths, out = written
    # A copy of the page with a probe that records, once loaded, what the browser drew.
    probe = paths["html"].read_text().replace("</body>", """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => i.naturalWidth + 'x' + i.naturalHeight);
  document.body.setAttribute('data-imgs', imgs.join(','));
  const r = document.querySelector('table').getBoundingClientRect();
  document.body.setAttribute('data-table-width', Math.round(r.width));
});
</script></body>""")
    page = out / "probe.html"
    page.write_text(probe, encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([_chromium(), *flags, "--virtual-time-budget=5000", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "<h1>Robustness comparison</h1>" in dom
    sizes = re.search(r'data-imgs="([^"]*)"', dom).group(1).split(",")
    assert len(sizes) == 4 and all(int(s.split("x")[0]) > 300 for s in sizes), sizes
    assert int(re.search(r'data-table-width="(\d+)"', dom).group(1)) > 200
    assert dom.count("<table>") >= 10
    assert "misleading (significant)" in dom and "KINK" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,1600",
                    paths["html"].as_uri()], capture_output=True, timeout=120)
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (1600, 1200)
    non_white = (img < 0.9).any(axis=2).mean()
    colourful = (img.max(axis=2) - img.min(axis=2) > 0.25).mean()  # the coloured curves
    assert non_white > 0.03 and colourful > 0.002, (non_white, colourful)
