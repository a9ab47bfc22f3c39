"""Fault injection and fuzzing of the real `nntrain` command line (the fast part of benchmarks/faults.py).

Each test runs a small, fixed sample of one category of benchmarks/faults.py as subprocesses and
asserts that nntrain never fails: no traceback, no internal error (exit 70), no hang, only documented
exit codes, no invalid input accepted, short messages, and run directories that survive kills and
full / read-only disks bit-identically. A failure message lists each distinct failure with its
command and a reproducer folder (repro.sh + the input files).

The bigger samples are marked `slow` (left out of `pytest -m 'not slow'`):

    pytest tests/test_faults.py            # fast and bigger samples
    python benchmarks/faults.py            # the whole campaign
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import faults  # noqa: E402

SLOW = pytest.mark.slow  # bigger samples, sized with the whole suite's time on CI's 2 cores in mind; benchmarks/faults.py runs every case
JOBS = 2  # the machine's cores
SEED = 0


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    return faults.Campaign(root / "work", root / "failures", seed=SEED, jobs=JOBS, log=lambda *a, **k: None)


def assert_no_failures(report: faults.CategoryReport):
    assert report.status == "run", report.status
    assert report.inputs > 0 and report.commands > 0
    if report.failures:
        pytest.fail(
            f"{len(report.failures)} failures in {report.name} ({report.inputs} inputs, {report.commands} commands):\n"
            + faults.format_failures(report.failures),
            pytrace=False,
        )


def test_generators_are_deterministic_and_cover_every_family(campaign):
    first, again = faults.config_cases(SEED), faults.config_cases(SEED)
    assert [c.id for c in first] == [c.id for c in again]
    assert [c.text for c in first[:50]] == [c.text for c in again[:50]]
    families = {c.family for c in first}
    assert {"alias_bomb", "deep_nesting", "complex_keys", "wrong_types", "surrogates", "big_ints",
            "long_strings", "huge_strings", "big_config", "syntax", "set_hostile", "control", "edge_values"} <= families
    sample = faults.stratified(first, 20, SEED)
    assert len(sample) == 20 and {c.family for c in sample} == families
    files = faults.file_cases(campaign.base_run(), campaign.markers, SEED)
    assert {c.family for c in files} == {"csv", "arrow", "npz", "npy_pair", "checkpoint", "run_dir", "outputs"}
    assert len({c.id for c in files}) == len(files)


def test_the_harness_sees_a_traceback_a_hang_and_a_wrong_exit(tmp_path, campaign):
    """The checks themselves: a Python crash, a command past its timeout, and an accepted invalid input are caught."""
    env = campaign.env
    crash = faults.run(["fit", "--resume"], tmp_path, env, timeout=20)  # typer: a missing option value -> exit 2
    assert crash.rc == 2 and not faults.problems(crash)
    r = faults.Result(["validate"], str(tmp_path), 1, 0.1, 10.0, b"", "Traceback (most recent call last):\n  x\nValueError", 50)
    assert [k for k, _ in faults.problems(r, allowed={0, 2})] == ["traceback"]
    r = faults.Result(["validate"], str(tmp_path), 70, 0.1, 10.0, b"", "internal error (a bug in nntrain): X", 40)
    assert [k for k, _ in faults.problems(r)] == ["internal"]
    r = faults.Result(["validate"], str(tmp_path), 0, 0.1, 10.0, b"", "", 0)
    assert [k for k, _ in faults.problems(r, expect="refuse")] == ["invalid_accepted"]
    r = faults.Result(["validate"], str(tmp_path), None, 31.0, 10.0, b"", "", 0, timed_out=True)
    assert [k for k, _ in faults.problems(r)] == ["hang"]


def test_kills_leave_a_resumable_run_that_ends_bit_identical(campaign):
    assert_no_failures(campaign.run_category("kills", 3))


def test_hostile_configs(campaign):
    assert_no_failures(campaign.run_category("configs", 20))


def test_hostile_files_and_checkpoints(campaign):
    assert_no_failures(campaign.run_category("files", 20))


def test_full_and_read_only_disks(campaign):
    if not campaign.mount_permitted():
        pytest.skip("mounting a tmpfs is not permitted here (needs root / CAP_SYS_ADMIN)")
    assert_no_failures(campaign.run_category("disks", 4))


@SLOW
def test_kills_bigger_sample(campaign):
    assert_no_failures(campaign.run_category("kills", 12))


@SLOW
def test_hostile_configs_bigger_sample(campaign):
    assert_no_failures(campaign.run_category("configs", 100))


@SLOW
def test_hostile_files_bigger_sample(campaign):
    assert_no_failures(campaign.run_category("files", 60))


@SLOW
def test_disks_every_scenario(campaign):
    if not campaign.mount_permitted():
        pytest.skip("mounting a tmpfs is not permitted here (needs root / CAP_SYS_ADMIN)")
    assert_no_failures(campaign.run_category("disks", 0))
