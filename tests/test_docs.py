"""Every console example in README.md and docs/ is run, and its output compared with what the page shows.

```pycon blocks (Python sessions: `>>> ` and `... ` lines, then what the interpreter prints) run the
same way, in one Python process per block, in the page's sandbox.

A page's ```console blocks run in order, in one sandbox per page (a temporary folder with copies of
configs/ and datasets/), so a later block sees the runs and files an earlier one made. In a block,
a line starting with `$ ` is a command (continued by a trailing backslash); the lines after it, up
to the next command, are what it prints, stdout and stderr as they interleave. A line `...` stands
for any number of lines. A command must exit with 0 unless the page shows it printing an `error:` or
`warning:` line.

HTML comments, invisible on the rendered page, prepare what a block needs:

- `<!-- docs-test file NAME -->` before a fenced block writes the block into the sandbox as NAME;
  `<!-- docs-test file NAME base=PATH -->` writes the YAML block merged over the YAML file PATH.
- `<!-- docs-test setup: COMMAND -->` runs COMMAND (its output unchecked) before the next console block.
- `<!-- docs-test skip: REASON -->` before a console block leaves it out; the reason must say why.
- `<!-- docs-test numbers: magnitude -->` before a console block compares its numbers only to within a
  factor of 10: for figures that are rounding noise (gradcheck's relative errors of 1e-9, whose
  last digits and even exponent change between CPUs) or float32 results that drift between CPUs.

What the comparison forgives, because it changes from run to run or machine to machine:
run-directory time stamps (a run named on the page is matched with the run the command made, and
later commands use the real name), durations (`0.01s`, `"seconds": 0.2`), the numpy version, the
sandbox's path, runs of spaces, and numbers with a decimal point within 2 % or two units of their
last printed digit (float32 results differ in the last bits between CPUs; a figure that drifted by
more than that is stale and fails). Whole numbers must be equal.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")), "datasets/README.md"]
COPIED = ["configs", "datasets"]  # what the pages' commands read, copied so that nothing they do touches the checkout
DIRECTIVE = re.compile(r"^<!-- docs-test (file|setup:|skip:|numbers:)\s*(.*?)\s*-->$")
# Commands run without a terminal; `ls` lists in columns as it does on one.
PRELUDE = 'ls() { command ls -C -T 0 -w 100 "$@"; }\n'

STAMP = re.compile(r"[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*?-\d{8}-\d{6}(?:-\d+)?")
NUMBER = re.compile(r"[-+]?(?:\d+(?:,\d{3})+|\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
VOLATILE = [
    (re.compile(r"\b\d+(?:\.\d+)?(\s?m?s)\b"), r"<time>\1"),  # durations: 0.01s, 3.2 s, 12 ms
    (re.compile(r'("seconds": )[-+0-9.e]+'), r"\1<time>"),
    (re.compile(r'("numpy_version": )"[^"]*"'), r"\1<version>"),
    (re.compile(r"\d{8}-\d{6}(?:-\d+)?"), "<stamp>"),
]


@dataclass
class Block:
    page: str
    line: int  # where the block's fence is, from 1
    commands: list[tuple[str, list[str]]]  # (command, the lines it prints)
    setup: list[str] = field(default_factory=list)
    skip: str | None = None
    magnitude: bool = False  # numbers compared to within a factor of 10 (rounding noise)
    python: bool = False  # a Python session: commands are statements


@dataclass
class Page:
    files: list[tuple[int, str, str, str | None]]  # (line, name, content, base) in page order
    blocks: list[Block]


def parse(page: str) -> Page:
    lines = (ROOT / page).read_text().splitlines()
    files, blocks = [], []
    pending: list[tuple[str, str]] = []  # directives waiting for the next fenced block
    i = 0
    while i < len(lines):
        found = DIRECTIVE.match(lines[i].strip())
        if found:
            pending.append((found.group(1), found.group(2)))
        elif lines[i].startswith("```"):
            end = i + 1
            while not lines[end].startswith("```"):
                end += 1
            body = lines[i + 1 : end]
            if lines[i].strip() in ("```console", "```pycon"):
                python = lines[i].strip() == "```pycon"
                block = Block(page, i + 1, statements(body) if python else commands(body), python=python)
                for kind, text in pending:
                    if kind == "setup:":
                        block.setup.append(text)
                    elif kind == "skip:":
                        block.skip = text
                    elif kind == "numbers:":
                        assert text == "magnitude", f"{page}:{i + 1}: numbers: magnitude is the one choice"
                        block.magnitude = True
                    else:
                        raise AssertionError(f"{page}:{i + 1}: a file directive belongs before a file's block")
                blocks.append(block)
            else:
                for kind, text in pending:
                    assert kind == "file", f"{page}:{i + 1}: `{kind}` belongs before a console block"
                    name, _, base = text.partition(" base=")
                    files.append((i + 1, name, "\n".join(body) + "\n", base or None))
            pending = []
            i = end
        i += 1
    return Page(files, blocks)


def commands(body: list[str]) -> list[tuple[str, list[str]]]:
    """A console block's commands, each with the lines it prints."""
    out: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(body):
        line = body[i]
        assert line.startswith("$ "), f"a console block starts with a command: {line!r}"
        command = line[2:]
        while command.endswith("\\"):
            i += 1
            command += "\n" + body[i]
        i += 1
        printed = []
        while i < len(body) and not body[i].startswith("$ "):
            printed.append(body[i])
            i += 1
        out.append((command, printed))
    return out


def statements(body: list[str]) -> list[tuple[str, list[str]]]:
    """A Python session's statements (`>>> ` and its `... ` lines), each with what the interpreter prints."""
    out: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(body):
        assert body[i].startswith(">>> "), f"a Python session starts with a statement: {body[i]!r}"
        source = [body[i][4:]]
        i += 1
        while i < len(body) and body[i].startswith("... "):
            source.append(body[i][4:])
            i += 1
        printed = []
        while i < len(body) and not body[i].startswith(">>> "):
            printed.append(body[i])
            i += 1
        out.append(("\n".join(source), printed))
    return out


# Runs a block's statements as the interactive interpreter would, a marker line before each one's output.
SESSION = """
import code, json, sys
sys.stderr = sys.stdout
console = code.InteractiveConsole()
for source in json.load(open(sys.argv[1])):
    print(sys.argv[2], flush=True)
    for line in source.splitlines():
        console.push(line)
    console.push("")
    sys.stdout.flush()
"""
MARKER = "<<<docs-test statement>>>"


def run_session(block: Block, sandbox: Path, env: dict[str, str], names: dict[str, str]):
    """(statement, shown, printed, 0) for each statement of a pycon block, run in one interpreter."""
    sources = []
    for source, _ in block.commands:
        for shown, real in names.items():
            source = source.replace(shown, real)
        sources.append(source)
    (sandbox / "session.json").write_text(json.dumps(sources))
    done = subprocess.run(
        [sys.executable, "-c", SESSION, "session.json", MARKER], cwd=sandbox, env=env, capture_output=True, text=True,
        timeout=600,
    )
    parts = done.stdout.split(MARKER + "\n")[1:]
    assert len(parts) == len(block.commands), f"{block.page}:{block.line}: the session stopped early:\n{done.stdout}{done.stderr}"
    return [(f">>> {source}", shown, part.splitlines(), 0) for source, (_, shown), part in zip(sources, block.commands, parts)]


def merged_yaml(base: Path, extra: str) -> str:
    def merge(a, b):
        if isinstance(a, dict) and isinstance(b, dict):
            return {**a, **{k: merge(a.get(k), v) for k, v in b.items()}}
        return b

    return yaml.safe_dump(merge(yaml.safe_load(base.read_text()), yaml.safe_load(extra)), sort_keys=False)


def same_line(expected: str, actual: str, magnitude: bool = False) -> bool:
    """Equal text (runs of spaces as one), equal whole numbers, and other numbers within 2 % or two units of the
    expected one's last digit (with `magnitude`: every number within a factor of 10)."""
    e_nums, a_nums = NUMBER.findall(expected), NUMBER.findall(actual)
    if len(e_nums) != len(a_nums) or squeeze(NUMBER.sub("#", expected)) != squeeze(NUMBER.sub("#", actual)):
        return False
    for e, a in zip(e_nums, a_nums):
        if e == a:
            continue
        if not re.search("[.eE]", e) and not magnitude:
            return False  # whole numbers (counts, epochs, sizes) are exact
        x, y = float(e.replace(",", "")), float(a.replace(",", ""))
        if magnitude:
            if x == y or (x * y > 0 and max(x / y, y / x) <= 10):
                continue
            return False
        mantissa = re.split("[eE]", e)[0]
        unit = 10.0 ** -len(mantissa.split(".")[1]) if "." in mantissa else 1.0
        if "e" in e.lower():
            unit *= 10.0 ** int(re.split("[eE]", e)[1])
        if abs(x - y) > max(0.02 * abs(x), 2 * unit):
            return False
    return True


def squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def matches(expected: list[str], actual: list[str], magnitude: bool = False) -> bool:
    """Whether `actual` fits `expected`, where a line `...` in `expected` stands for any number of lines."""

    @lru_cache(maxsize=None)
    def fit(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if expected[i].strip() == "...":
            return fit(i + 1, j) or (j < len(actual) and fit(i, j + 1))
        return j < len(actual) and same_line(expected[i], actual[j], magnitude) and fit(i + 1, j + 1)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * (len(expected) + len(actual)) + 100))
    return fit(0, 0)


def normalized(lines: list[str], sandbox: Path) -> list[str]:
    out = []
    for line in lines:
        line = line.replace(str(sandbox) + "/", "").replace(str(sandbox), ".").rstrip()
        for pattern, replacement in VOLATILE:
            line = pattern.sub(replacement, line)
        out.append(line)
    return out


def run_names(lines) -> list[str]:
    """Run-directory names (with a time stamp) in order of first appearance."""
    seen: dict[str, None] = {}
    for line in lines:
        for name in STAMP.findall(line):
            seen.setdefault(name, None)
    return list(seen)


def make_sandbox(tmp: Path) -> Path:
    for name in COPIED:
        shutil.copytree(ROOT / name, tmp / name, symlinks=True)
    (tmp / "cache").mkdir()
    return tmp


def environment(sandbox: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNTRAIN_")}
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        NNTRAIN_DATA=str(sandbox / "cache"), PATH=bin_dir + os.pathsep + env.get("PATH", ""), COLUMNS="100",
        TERM="dumb", PYTHONWARNINGS="ignore",
    )
    return env


def outputs(block: Block, sandbox: Path, env: dict[str, str], names: dict[str, str]):
    """(command, what the page shows, what it printed, exit code) for each command of a block, in order.

    Console commands run one at a time, so that a run named by one is known to the next."""
    if block.python:
        yield from run_session(block, sandbox, env, names)
        return
    for command, printed in block.commands:
        for shown, real in names.items():
            command = command.replace(shown, real)
        done = subprocess.run(
            ["bash", "-c", PRELUDE + command], cwd=sandbox, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=600,
        )
        yield f"$ {command}", printed, done.stdout.splitlines(), done.returncode


def run_page(page: str, sandbox: Path, show: bool = False) -> tuple[list[str], list[Block]]:
    """Run every console block of `page`; returns (the failures, described, and the blocks that were skipped).

    `show` prints what each command printed (to update a page: `python tests/test_docs.py README.md`)."""
    parsed = parse(page)
    env = environment(sandbox)
    names: dict[str, str] = {}  # a run named on the page -> the run its command made
    failures, skipped = [], []
    file_at = 0
    for block in parsed.blocks:
        while file_at < len(parsed.files) and parsed.files[file_at][0] < block.line:  # the files written before it
            _, name, content, base = parsed.files[file_at]
            (sandbox / name).parent.mkdir(parents=True, exist_ok=True)
            (sandbox / name).write_text(merged_yaml(sandbox / base, content) if base else content)
            file_at += 1
        if block.skip is not None:
            skipped.append(block)
            continue
        for command in block.setup:
            done = subprocess.run(command, shell=True, cwd=sandbox, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{page}:{block.line}: setup `{command}` failed:\n{done.stdout}{done.stderr}"
        for command, printed, actual, code in outputs(block, sandbox, env, names):
            shown_names = [n for n in run_names(printed) if n not in names]
            real_names = [n for n in run_names(actual) if n not in names.values()]
            names.update(zip(shown_names, real_names))
            expected = printed
            for shown, real in names.items():
                expected = [line.replace(shown, real) for line in expected]
            e, a = normalized(expected, sandbox), normalized(actual, sandbox)
            if show:
                print(f"--- {page}:{block.line}: {command}\n" + "".join(line + "\n" for line in actual), end="")
            # A command may fail only where the page shows it failing.
            failed = code != 0 and not any(re.match(r"\s*(error|warning):", line) for line in printed)
            if any("internal error" in line for line in actual) or failed or not matches(e, a, block.magnitude):
                diff = "\n".join(difflib.unified_diff(e, a, "the page", "the command", lineterm="", n=1))
                failures.append(f"{page}:{block.line}: {command}\n(exit code {code})\n{diff or chr(10).join(actual)}")
    return failures, skipped


def test_every_page_is_found():
    assert all((ROOT / page).exists() for page in PAGES)
    assert sum(len(parse(page).blocks) for page in PAGES) >= 30


@pytest.mark.parametrize("page", PAGES)
def test_skipped_examples_say_why(page):
    for block in parse(page).blocks:
        if block.skip is not None:
            assert len(block.skip.split()) >= 4, f"{page}:{block.line}: say why the example cannot run here"


def test_the_comparison_can_fail():
    """The forgiving comparison still catches a changed figure, a changed word and a missing line."""
    assert same_line("loss 0.0277  accuracy 1.0000", "loss 0.0278  accuracy 1.0000")
    assert not same_line("loss 0.0277  accuracy 1.0000", "loss 0.0290  accuracy 1.0000")
    assert not same_line("dead 59.4%", "dead 43.8%")
    assert not same_line("status: completed", "status: diverged")
    assert not same_line("(True, 5)", "(True, 6)")
    assert same_line("n 4,641 parameters", "n 4,641  parameters")
    assert matches(["a", "...", "z"], ["a", "b", "c", "z"])
    assert not matches(["a", "...", "z"], ["a", "b"])
    assert not matches(["a", "b"], ["a", "b", "c"])


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_console_examples_print_what_the_page_shows(page, tmp_path):
    failures, _ = run_page(page, make_sandbox(tmp_path))
    assert not failures, f"{len(failures)} example(s) of {page} print something else:\n\n" + "\n\n".join(failures)


if __name__ == "__main__":  # print what a page's commands print today, to update the page
    import tempfile

    for name in sys.argv[1:] or PAGES:
        with tempfile.TemporaryDirectory() as tmp:
            problems, left_out = run_page(name, make_sandbox(Path(tmp)), show=True)
        print(f"=== {name}: {len(problems)} differ, {len(left_out)} skipped")
