"""`nntrain report` (nntrain.report.html): the sections hold the run's real values, the file is
self-contained and escaped, and a real headless browser renders it without console errors.

The browser check needs Chromium (Debian: `apt-get install -y chromium`). Without it the check
is skipped, unless NNTRAIN_REQUIRE_BROWSER is set (CI sets it): then a missing browser fails.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml

from nntrain import api
from nntrain.errors import NntrainError
from nntrain.report import html as report
from nntrain.report import plots

# Column names, class names and a data path that break HTML unless escaped.
COLUMNS = ["x<1", "a&b", "colour"]
CLASSES = ['<i>yes</i>', 'q&"no"']


def write_table(path: Path, rows: int = 160) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 2))
    labels = np.where(X[:, 0] + X[:, 1] > 0, CLASSES[0], CLASSES[1])
    colours = rng.choice(["red", "<blue>"], size=rows)
    quote = lambda text: '"' + text.replace('"', '""') + '"'
    lines = [",".join([*COLUMNS, "label"])]
    lines += [f"{a:.4f},{b:.4f},{c},{quote(label)}" for a, b, c, label in zip(X[:, 0], X[:, 1], colours, labels)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 3-epoch classifier on a CSV table whose names need escaping, trained with diagnostics."""
    root = tmp_path_factory.mktemp("report")
    folder = root / "t&<d>"
    folder.mkdir()
    write_table(folder / "data<&>.csv")
    config = {
        "name": "table",
        "seed": 0,
        "data": {"dataset": str(folder / "data<&>.csv"), "target": "label", "split": {"val": 0.2, "test": 0.2}},
        "model": {"layers": [{"linear": 8}, "relu", {"linear": 2}]},
        "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"epochs": 3, "batch_size": 16, "diagnostics": True},
    }
    (root / "table.yaml").write_text(yaml.safe_dump(config))
    path = root / "table-run"
    api.fit(root / "table.yaml", run_dir=path)
    return path


@pytest.fixture(scope="module")
def page(run) -> str:
    return report.render_report(run)


class Page(HTMLParser):
    """The report's sections: {id: {"text": ..., "tables": [[[cell, ...], ...], ...], "images": [src, ...], "pre": [text, ...]}}."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.sections, self.current, self.table, self.row, self.cell, self.pre = {}, None, None, None, None, None
        self.tags = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "section":
            self.current = self.sections.setdefault(attrs["id"], {"text": "", "tables": [], "images": [], "pre": []})
        elif self.current is None:
            return
        elif tag == "table":
            self.table = []
            self.current["tables"].append(self.table)
        elif tag == "tr":
            self.row = []
            self.table.append(self.row)
        elif tag in ("td", "th"):
            self.cell = ""
        elif tag == "img":
            self.current["images"].append(attrs["src"])
        elif tag == "pre":
            self.pre = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "pre" and self.pre is not None:
            self.current["pre"].append(self.pre)
            self.pre = None
        elif tag == "section":
            self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.current["text"] += data
        if self.cell is not None:
            self.cell += data
        if self.pre is not None:
            self.pre += data


@pytest.fixture
def no_images(monkeypatch):
    """Reports drawn without matplotlib: for tests of their text, faster (the images are test_images_are_the_plots_inlined's)."""
    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


# --- contents --------------------------------------------------------------------------------------


def test_every_section_is_there(page):
    sections = Page(page).sections
    assert list(sections) == [
        "overview", "metrics", "curves", "confusion", "outputs", "inside", "diagnostics", "model", "data", "timings", "config",
    ]  # fmt: skip


def test_the_layer_table_is_the_networks_summary(page):
    table = Page(page).sections["model"]["tables"][0]
    assert table == [
        ["layer", "type", "output shape", "params"],
        ["", "input", "(4,)", ""],  # x<1, a&b and colour one-hot (2 values)
        ["0", "linear", "(8,)", "40"],
        ["1", "relu", "(8,)", "0"],
        ["2", "linear", "(2,)", "18"],
    ]
    assert "58 parameters (float32)" in Page(page).sections["model"]["text"]


def test_final_metrics_are_summary_json(run, page):
    table = Page(page).sections["metrics"]["tables"][0]
    final = summary(run)["final"]
    assert table[0] == ["metric", "train", "val", "test"]
    assert {row[0]: row[1:] for row in table[1:]} == {
        metric: [f"{final[split][metric]:.4f}" for split in ("train", "val", "test")] for metric in ("loss", "accuracy")
    }
    overview = Page(page).sections["overview"]["text"]
    s = summary(run)
    assert f"{s['monitor']} {s['best_value']:.4f} at epoch {s['best_epoch']}" in overview
    assert "completed" in overview and "3 of 3" in overview


def test_the_learning_curves_table_is_metrics_csv(run, page):
    table = Page(page).sections["curves"]["tables"][0]
    import csv

    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert table[0] == ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"]
    assert [r[0] for r in table[1:]] == ["1", "2", "3"]
    assert [r[3] for r in table[1:]] == [f"{float(r['val_loss']):.4f}" for r in rows]


def test_the_confusion_matrix_is_evals_on_the_test_split(run, page):
    section = Page(page).sections["confusion"]
    expected = api.evaluate_run(run, "best", split="test")
    matrix = section["tables"][0]
    assert matrix[0] == ["true \\ predicted", *CLASSES]
    assert [row[0] for row in matrix[1:]] == CLASSES
    assert [[int(c) for c in row[1:]] for row in matrix[1:]] == expected["confusion"]
    assert sum(map(sum, expected["confusion"])) == expected["samples"] == 32
    assert f"accuracy {expected['accuracy']:.4f}" in section["text"]


def test_the_data_is_read_once_for_the_whole_report(run, monkeypatch):
    """The report, its confusion matrix and its images share one load of the run with its data per checkpoint."""
    loads = []
    original = api.load_run

    def counted(run_dir, which="best", with_data=True):
        loads.append((str(which), with_data))
        return original(run_dir, which, with_data=with_data)

    monkeypatch.setattr(api, "load_run", counted)
    report.render_report(run)
    with_data = [w for w, d in loads if d]
    assert with_data and len(with_data) == len(set(with_data)), loads
    assert ("best", False) not in loads  # best with its data serves what needs the network alone


def test_data_columns_and_classes_are_listed(page):
    data = Page(page).sections["data"]
    pairs = {row[0]: row[1] for row in data["tables"][0]}
    assert pairs["task"] == "classification"
    assert pairs["rows"] == "train 96, val 32, test 32"
    assert pairs["sample shape"] == "(4,)"
    columns = data["tables"][1]
    assert [row[:3] for row in columns[1:]] == [
        ["x<1", "feature", "number"],
        ["a&b", "feature", "number"],
        ["colour", "feature", "category (2 values)"],
        ["label", "target", "category (2 values)"],
    ]
    classes = data["tables"][2]
    assert [row[0] for row in classes[1:]] == CLASSES
    assert sum(int(row[1]) for row in classes[1:]) == 96


def test_diagnostics_and_cautions(run, page):
    text = Page(page).sections["diagnostics"]["text"]
    assert "No warnings at epoch 3" in text
    for caution in summary(run)["cautions"]:  # 32 rows in val and test
        assert caution in text
    assert "weight_norm" in text


def test_a_dead_relu_warning_is_shown(tmp_path, no_images):
    """The warnings are those of `nntrain inspect`: a learning rate that kills the ReLUs says so."""
    quickstart = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    overrides = ["optimizer.lr=3", "optimizer.momentum=0", "train.epochs=5", "train.diagnostics=true"]  # as the README says
    api.fit(quickstart, overrides, run_dir=tmp_path / "hot")
    from nntrain.train import diagnostics

    warnings = diagnostics.inspect(tmp_path / "hot")["warnings"]
    assert warnings
    text = Page(report.render_report(tmp_path / "hot")).sections["diagnostics"]["text"]
    for warning in warnings:
        assert f"warning: {warning}" in text


def test_timings_are_the_runs(run, page):
    pairs = {row[0]: row[1] for row in Page(page).sections["timings"]["tables"][0]}
    assert pairs["wall time"].startswith(f"{summary(run)['seconds']:.2f} s")
    assert pairs["training, all epochs"].endswith("over 3 epochs")


def test_everything_from_the_run_is_escaped(run, page):
    assert "<i>" not in page and "<blue>" not in page and "data<&>" not in page
    assert "&lt;i&gt;yes&lt;/i&gt;" in page and "x&lt;1" in page and "a&amp;b" in page
    [config] = Page(page).sections["config"]["pre"]
    assert config == (run / "config.yaml").read_text()  # the whole config, unescaped by the parser
    assert "data<&>.csv" in config


def test_the_file_is_self_contained(page):
    tags = Page(page).tags
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object", "embed")]
    for tag, attrs in tags:
        for name in ("src", "href"):
            if name in attrs:
                assert not re.match(r"\s*(https?:)?//", attrs[name]), (tag, attrs[name][:80])
                assert attrs[name].startswith(("data:image/", "#")), (tag, attrs[name][:80])
    assert "http://" not in page and "https://" not in page
    assert "@import" not in page and "url(" not in page  # nothing fetched from CSS either


def test_images_are_the_plots_inlined(run, page):
    sections = Page(page).sections
    if not plots.have_matplotlib():
        pytest.fail("matplotlib is a test dependency (pip install -e '.[test]'); the report's images are not checked without it")
    [curves] = sections["curves"]["images"]
    assert curves.startswith("data:image/png;base64,")
    assert base64.b64decode(curves.split(",", 1)[1]) == plots.render([run], "curves", "png").content
    assert len(sections["outputs"]["images"]) == 2  # roc, pr: binary classification
    assert len(sections["inside"]["images"]) >= 1
    assert len(sections["diagnostics"]["images"]) == 1


def test_without_matplotlib_the_sections_stay_and_say_how_to_get_images(run, monkeypatch):
    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)
    monkeypatch.setattr(plots, "render", lambda *a, **k: pytest.fail("render called without matplotlib"))
    page = Page(report.render_report(run))
    assert all(not s["images"] for s in page.sections.values())
    for section in ("curves", "outputs", "inside", "diagnostics"):
        assert "pip install 'nntrain[plot]' gives them" in page.sections[section]["text"], section
    assert "train" in page.sections["curves"]["text"] and "┤" in page.sections["curves"]["text"]  # the text chart
    assert page.sections["model"]["tables"] and page.sections["confusion"]["tables"]


def test_a_regression_run_has_no_confusion_matrix(tmp_path, no_images):
    config = tmp_path / "sine.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "data": {"dataset": "sine", "options": {"samples": 200}},
        "model": {"layers": [{"linear": 8}, "tanh", {"linear": 1}]}, "loss": "mse",
        "optimizer": {"name": "adam", "lr": 0.01}, "train": {"epochs": 2, "metrics": ["mae"]},
    }))  # fmt: skip
    api.fit(config, run_dir=tmp_path / "sine")
    page = Page(report.render_report(tmp_path / "sine"))
    assert "confusion" not in page.sections
    assert {row[0]: row[1] for row in page.sections["data"]["tables"][0]}["task"] == "regression"
    final = summary(tmp_path / "sine")["final"]
    assert {row[0]: row[3] for row in page.sections["metrics"]["tables"][0][1:]} == {
        m: f"{v:.4f}" for m, v in final["test"].items()
    }


# --- writing --------------------------------------------------------------------------------------


def test_write_report_defaults_to_the_current_directory_and_never_writes_into_the_run(run, tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)  # where the file goes, not its images: faster
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    monkeypatch.chdir(tmp_path)
    path = report.write_report(run)
    assert path == Path("table-run-report.html")  # relative, as the command prints it
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert report.write_report(run, tmp_path / "here.html") == tmp_path / "here.html"
    folder = tmp_path / "reports"
    folder.mkdir()
    assert report.write_report(run, folder) == folder / "table-run-report.html"
    for inside in (run / "report.html", run / "checkpoints" / "r.html", run):
        with pytest.raises(NntrainError, match="inside the run directory"):
            report.write_report(run, inside)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_not_a_run_directory_is_an_error(tmp_path):
    with pytest.raises(NntrainError) as info:
        report.render_report(tmp_path)
    assert str(tmp_path) in str(info.value) and "config.yaml" in str(info.value)
    assert info.value.exit_code == 2


def test_a_run_whose_data_is_gone_still_reports_from_its_checkpoint(tmp_path, no_images):
    write_table(tmp_path / "data.csv")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "data": {"dataset": str(tmp_path / "data.csv"), "target": "label"},
        "model": {"layers": [{"linear": 8}, "relu", {"linear": 2}]}, "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"epochs": 2},
    }))  # fmt: skip
    api.fit(config, run_dir=tmp_path / "run")
    (tmp_path / "data.csv").unlink()
    page = Page(report.render_report(tmp_path / "run"))
    assert "the run's data could not be read" in page.sections["data"]["text"]
    assert "data.csv" in page.sections["data"]["text"]
    assert page.sections["model"]["tables"][0][2] == ["0", "linear", "(8,)", "40"]  # the checkpoint knows the network
    assert "the run's data could not be read" in page.sections["confusion"]["text"]  # no test rows to score
    assert {row[0]: row[1] for row in page.sections["metrics"]["tables"][0][1:]}  # summary.json still has them


def test_a_killed_run_without_summary_or_checkpoint_still_reports(run, tmp_path, no_images):
    killed = tmp_path / "killed"
    shutil.copytree(run, killed)
    (killed / "summary.json").unlink()
    for checkpoint in (killed / "checkpoints").glob("*.npz"):
        checkpoint.unlink()
    page = Page(report.render_report(killed))
    assert "no summary.json" in page.sections["overview"]["text"]
    assert "No final metrics" in page.sections["metrics"]["text"]
    assert [row[0] for row in page.sections["curves"]["tables"][0][1:]] == ["1", "2", "3"]  # metrics.csv is there
    assert "no readable checkpoint" in page.sections["model"]["text"]
    assert "confusion" not in page.sections and "outputs" not in page.sections


def test_the_checkpoint_chosen_is_named(run, no_images):
    page = Page(report.render_report(run, "last"))
    pairs = {row[0]: row[1] for row in page.sections["overview"]["tables"][0]}
    assert pairs["model and confusion from"] == "last.npz"
    expected = api.evaluate_run(run, "last", split="test")["confusion"]
    assert [[int(c) for c in row[1:]] for row in page.sections["confusion"]["tables"][0][1:]] == expected


# --- the browser check ----------------------------------------------------------------------------

BROWSER_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe",
]  # fmt: skip


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("NNTRAIN_REQUIRE_BROWSER"):
            pytest.fail("NNTRAIN_REQUIRE_BROWSER is set but no chromium is on PATH (apt-get install -y chromium)")
        pytest.skip("no chromium on PATH (apt-get install -y chromium); set NNTRAIN_REQUIRE_BROWSER to make this a failure")
    return found


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (fd 3: commands in, fd 4: replies out).

    For each page: a new tab, console / exception / log events on, navigate, wait for the load
    event, then a screenshot of the whole page and a look at every <img>. No network, no port.
    """

    def __init__(self, binary: str, width: int = 1100, height: int = 900, timeout: float = 60):
        self.deadline = time.monotonic() + timeout
        self.profile = tempfile.mkdtemp(prefix="nntrain-chromium-")
        commands_r, self.commands = os.pipe()
        self.replies, replies_w = os.pipe()
        # --remote-debugging-pipe reads commands on fd 3 and writes replies on fd 4: bash puts the pipes there
        shell = f'exec "$0" "$@" 3<&{commands_r} 4>&{replies_w} {commands_r}<&- {replies_w}>&-'
        args = [binary, *BROWSER_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"]
        self.log = open(Path(self.profile) / "chromium.log", "w+b")  # noqa: SIM115 - read by output(), closed by close()
        self.process = subprocess.Popen(["bash", "-c", shell, *args], pass_fds=(commands_r, replies_w),
                                        stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)  # fmt: skip
        os.close(commands_r)
        os.close(replies_w)
        self.buffer, self.next_id, self.events = b"", 0, []

    def _read(self) -> dict:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            ready, _, _ = select.select([self.replies], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"chromium did not answer in time; its output:\n{self.output()}")
            chunk = os.read(self.replies, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe; its output:\n{self.output()}")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> None:
        seen = lambda m: m.get("method") == method and m.get("sessionId") == session
        if any(seen(m) for m in self.events):
            return
        while not seen(message := self._read()):
            self.events.append(message)
        self.events.append(message)

    def visit(self, url: str) -> dict:
        """{"errors": [...], "screenshot": PNG bytes, "images": [[src start, complete, naturalWidth], ...]}."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session)
        self.send("Page.navigate", session, url=url)
        self.wait_for("Page.loadEventFired", session)
        images = self.send(
            "Runtime.evaluate", session, returnByValue=True,
            expression="Array.from(document.images).map(i => [i.src.slice(0, 22), i.complete, i.naturalWidth])",
        )["result"]["value"]  # fmt: skip
        size = self.send("Page.getLayoutMetrics", session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 12000), "scale": 1}
        shot = self.send("Page.captureScreenshot", session, format="png", clip=clip, captureBeyondViewport=True)
        self.send("Target.closeTarget", targetId=target)
        errors = []
        for m in self.events:
            if m.get("sessionId") != session:
                continue
            method, params = m.get("method"), m.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                errors.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                errors.append(f"exception: {details.get('text')} {details.get('exception', {}).get('description', '')}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
        return {"errors": errors, "screenshot": base64.b64decode(shot["data"]), "images": images}

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.commands)
        os.close(self.replies)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def looks_blank(png: bytes) -> str | None:
    """Why a screenshot looks blank (one colour, nearly all white, or tiny), or None when it shows something."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width < 200 or image.height < 200:
        return f"only {image.width}x{image.height} pixels"
    colours = image.getcolors(maxcolors=1 << 24)
    if len(colours) < 16:
        return f"only {len(colours)} distinct colours"
    white = sum(n for n, rgb in colours if min(rgb) >= 245)
    if white > 0.985 * image.width * image.height:
        return f"{white / (image.width * image.height):.1%} of the pixels are white"
    return None


@pytest.fixture(scope="module")
def browsed(page, tmp_path_factory):
    """The report, a page with a deliberate console.error and a blank page, each through the browser once."""
    binary = chromium()
    folder = tmp_path_factory.mktemp("browser")
    pages = {
        "report": folder / "report.html",
        "console-error": folder / "console-error.html",
        "blank": folder / "blank.html",
    }
    pages["report"].write_text(page, encoding="utf-8")
    pages["console-error"].write_text(
        "<!DOCTYPE html><html><body><h1 style='color:#c00'>a page</h1>"
        "<script>console.log('fine'); console.warn('a warning'); console.error('deliberate error')</script></body></html>"
    )
    pages["blank"].write_text("<!DOCTYPE html><html><body></body></html>")
    browser = Browser(binary)
    try:
        results = {name: browser.visit(path.resolve().as_uri()) for name, path in pages.items()}
    finally:
        browser.close()
    screenshot = os.environ.get("NNTRAIN_REPORT_SCREENSHOT")  # where to keep the report's screenshot, to look at it
    if screenshot:
        Path(screenshot).write_bytes(results["report"]["screenshot"])
    return results


def test_the_browser_renders_the_report_without_errors(browsed):
    result = browsed["report"]
    assert result["errors"] == []
    assert looks_blank(result["screenshot"]) is None
    assert result["images"], "the report shows no image"
    for src, complete, width in result["images"]:
        assert src.startswith("data:image/png;base64") and complete and width > 0, (src, complete, width)


def test_the_browser_check_can_fail(browsed):
    """The same checks see a console.error and a blank page (and so would see them in the report)."""
    assert browsed["console-error"]["errors"] == ["console.error: deliberate error"]  # console.log and warn are not errors
    assert looks_blank(browsed["blank"]["screenshot"]) is not None
