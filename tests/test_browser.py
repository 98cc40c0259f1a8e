"""The leadership report opened in real headless Chromium (Chrome DevTools Protocol).

For each language: render the fixture run folder, open ``index.html`` from a file://
URL at laptop size, and check there are no console errors or failed loads, the
executive summary and every chart image are present and visible, and (zh) the page
text is Chinese and the charts used the CJK font file. A full-page screenshot goes
to ``test-artifacts/report-<lang>.png`` for a human to look at.

Needs ``/usr/bin/chromium`` (Debian package ``chromium``) and ``websocket-client``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from base64 import b64decode
from contextlib import contextmanager
from pathlib import Path

import pytest

from analysis.report import chart_font_file, render_report

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
FIXTURE = Path(__file__).parent / "fixtures" / "report"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
#: A common laptop viewport (CSS pixels).
VIEWPORT = (1366, 900)
#: Seconds to wait for Chromium to start and for the page to load.
TIMEOUT = 15

websocket = pytest.importorskip("websocket", reason="websocket-client is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian package `chromium` to run browser tests",
                allow_module_level=True)


class Page:
    """A minimal CDP session on one page target: commands and collected events."""

    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=TIMEOUT, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        """Send a command and return its result; events met meanwhile are kept."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str) -> dict:
        """Block until the event ``method`` arrives (or was already received)."""
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == method:
                return msg
        raise TimeoutError(method)

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page."""
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(res["exceptionDetails"])
        return res["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and failed resource loads seen so far."""
        out = []
        for ev in self.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console.{p['type']}: {p.get('args')}")
            elif m == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif m == "Network.loadingFailed":
                out.append(f"load failed: {p.get('errorText')} {p.get('requestId')}")
        return out


@contextmanager
def chromium():
    """Headless Chromium with remote debugging; yields the first page's CDP session."""
    profile = Path(tempfile.mkdtemp(prefix="kpisat-chromium-"))
    proc = subprocess.Popen(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    page = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("Chromium did not start (no DevToolsActivePort)")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=TIMEOUT) as r:
            targets = json.load(r)
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        page = Page(ws_url)
        yield page
    finally:
        if page is not None:
            page.ws.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def open_report(page: Page, html: Path) -> None:
    """Load the report at laptop size and wait for the load event."""
    width, height = VIEWPORT
    page.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
              deviceScaleFactor=1, mobile=False)
    page.send("Page.navigate", url=html.resolve().as_uri())
    page.wait_for("Page.loadEventFired")


def screenshot(page: Page, path: Path) -> None:
    """Save a full-page PNG of the current page."""
    size = page.send("Page.getLayoutMetrics")["cssContentSize"]
    shot = page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                     clip={"x": 0, "y": 0, "width": VIEWPORT[0],
                           "height": size["height"], "scale": 1})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b64decode(shot["data"]))


CHECKS_JS = r"""
(() => {
  const visible = el => { const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const summary = document.querySelectorAll('#summary li');
  const imgs = [...document.querySelectorAll('img')].map(i => ({
    chart: i.dataset.chart, complete: i.complete, naturalWidth: i.naturalWidth,
    visible: visible(i), alt: i.alt}));
  const text = document.body.innerText;
  const headings = [...document.querySelectorAll('h1,h2,h3,th,dt,figcaption')].map(h => h.innerText);
  return {summary: summary.length, summaryVisible: [...summary].every(visible), imgs, text,
          headings, chartFont: document.body.dataset.chartFont,
          scripts: document.scripts.length, lang: document.documentElement.lang};
})()
"""


def cjk_share(text: str) -> float:
    """Share of CJK ideographs among letters (CJK + Latin)."""
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    return cjk / max(cjk + latin, 1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("run") / "2025Q4"
    shutil.copytree(FIXTURE, path)
    return path


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module (starting it is most of the test's time)."""
    with chromium() as page:
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.send(f"{domain}.enable")
        yield page


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_report_in_browser(browser: Page, run_dir: Path, lang: str):
    folder = run_dir.parent / f"{run_dir.name}-{lang}"
    shutil.copytree(run_dir, folder)
    html = render_report(folder, lang=lang)
    browser.events.clear()
    open_report(browser, html)
    info = browser.evaluate(CHECKS_JS)
    screenshot(browser, ARTIFACTS / f"report-{lang}.png")
    problems = browser.problems()
    assert problems == []
    assert info["scripts"] == 0
    assert 3 <= info["summary"] <= 6 and info["summaryVisible"]
    charts = {i["chart"] for i in info["imgs"]}
    assert {"effects", "survival", "event_study", "frontier", "plans"} <= charts
    for img in info["imgs"]:
        assert img["complete"] and img["naturalWidth"] > 0 and img["visible"], img
        assert img["alt"].strip(), img
    if lang == "zh":
        assert info["lang"] == "zh-Hans"
        assert cjk_share(info["text"]) > 0.6, "page text is not mainly Chinese"
        assert info["chartFont"] == str(chart_font_file("zh"))
        for heading in info["headings"]:
            assert not any(w in heading for w in ("Executive", "Summary", "Headline", "Methods",
                                                  "Data quality", "Plans in force"))
    else:
        assert "Executive summary" in info["text"]
        for heading in ("Did plan switches work?", "How much satisfaction weight?",
                        "Rules of thumb vs our data", "Survey-gaming check"):
            assert heading in info["headings"], heading
