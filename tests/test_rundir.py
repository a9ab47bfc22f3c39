"""nntrain.train.rundir: a new run directory appears complete (config.yaml and checkpoints/) or not at all."""

from __future__ import annotations

import os

import pytest

from nntrain.errors import NntrainError
from nntrain.train.rundir import RunDir, new_directory


def test_a_run_directory_appears_with_its_config(tmp_path):
    run = RunDir.create(tmp_path, "r", tmp_path / "run", b"seed: 0\n")
    assert run.config_file.read_bytes() == b"seed: 0\n" and run.checkpoints.is_dir()
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no temporary folder left beside it


def test_a_stop_while_it_is_filled_leaves_no_directory(tmp_path):
    """A kill (here: an error) before the rename leaves nothing a later `--run-dir` would refuse."""
    seen = []

    def fill(folder):
        seen.append(folder)
        assert not (tmp_path / "run").exists()  # invisible under its final name while filled
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        new_directory(tmp_path, "r", tmp_path / "run", "run directory", fill=fill)
    assert seen[0].name.startswith(".run.tmp-") and os.listdir(tmp_path) == []
    assert RunDir.create(tmp_path, "r", tmp_path / "run", b"a: 1\n").config_file.is_file()


def test_a_given_path_that_exists_is_refused_and_automatic_names_count_up(tmp_path):
    RunDir.create(tmp_path, "r", tmp_path / "run", b"")
    with pytest.raises(NntrainError, match="already exists"):
        RunDir.create(tmp_path, "r", tmp_path / "run", b"")
    names = {RunDir.create(tmp_path / "runs", "q", None, b"").path.name for _ in range(3)}
    assert len(names) == 3 and all(n.startswith("q-") for n in names)
