"""Shell completion (typer's --install-completion / --show-completion): commands, option values, dataset names."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The installed script: completion is keyed to the program's name, `nntrain`.
NNTRAIN = shutil.which("nntrain", path=str(Path(sys.executable).parent)) or shutil.which("nntrain")


def complete(words: str) -> list[str]:
    """What bash completion offers for the last word of `words` (as the script from --show-completion asks)."""
    parts = words.split(" ")
    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1), "_NNTRAIN_COMPLETE": "complete_bash"}
    out = subprocess.run([NNTRAIN], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_show_completion_prints_a_bash_script():
    env = {**os.environ, "SHELL": "/bin/bash"}
    out = subprocess.run(
        [NNTRAIN, "--show-completion", "bash"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "complete -o default -F _nntrain_completion nntrain" in out.stdout


@pytest.mark.parametrize(
    "words, expected",
    [
        ("nntrain fi", ["fit"]),
        ("nntrain eval run --split v", ["val"]),
        ("nntrain eval run --checkpoint ", ["best", "last"]),
        ("nntrain datasets download ", ["mnist", "fashion_mnist"]),
        ("nntrain datasets show spi", ["spirals"]),
        ("nntrain sweep c.yaml --seeds p", ["per_trial"]),
    ],
)
def test_completion_offers_commands_and_values(words, expected):
    assert complete(words) == expected
