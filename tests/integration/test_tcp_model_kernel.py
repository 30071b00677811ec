"""experiments.tcp_model with the kernel: one tiny cell, two kernel runs, the TCP driver.

Skips with the reason ``transports.netns.support()`` gives where the kernel
backend is unusable (not Linux, not root, no ``ip``/``nft``), like
tests/integration/test_netns.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.tcp_model import main
from transports.netns import support

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def kernel() -> None:
    reason = support().skip_reason()
    if reason is not None:
        pytest.skip(reason)


def test_one_tiny_kernel_cell_keeps_every_run_and_judges_the_model(tmp_path: Path) -> None:
    argv = ["--semantics", "at-least-once", "--loss", "0.1", "--timeouts", "1.5s",
            "--ops", "16", "--clients", "2", "--kernel-runs", "2", "--jobs", "1",
            "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    data = json.loads((tmp_path / "tcp_model.json").read_text())
    (cell,) = data["cells"]
    assert cell["kernel_source"] == "measured" and len(cell["kernel"]) == 2
    for run in cell["kernel"]:
        assert run["audit"]["ops"] == 16
        assert run["packets"]["a->b"]["packets"] > 0  # the kernel saw the traffic
    assert cell["model_tcp_source"] == "run" and cell["model_tcp"]["ops"] == 16
    assert cell["comparisons"]["ok"]["match"] in (True, False)
    assert data["environment"]["kernel_run_seconds"] > 0
    # The same kernel runs judge a recomputed model in a second.
    assert main([*argv, "--kernel-from", str(tmp_path / "tcp_model.json"), "--name", "re"]) == 0
    again = json.loads((tmp_path / "re.json").read_text())
    assert again["cells"][0]["kernel"] == cell["kernel"]
    assert again["cells"][0]["model"] == cell["model"]
