"""Every sample config in samples/deployments validates (against an empty home of its own)."""

from pathlib import Path

import pytest

from benchbed import api, config

SAMPLES = sorted((Path(__file__).parents[2] / "samples" / "deployments").glob("*.*"))


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.name)
def test_sample_is_valid(sample: Path, monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for name in ("OS_PASSWORD", "BENCH_PASSWORD"):
        monkeypatch.setenv(name, "sample")
    # whether a sample's network is free on this machine right now is not the sample's fault
    monkeypatch.setattr("benchbed.networks._taken_here", lambda: [])
    api.validate(config.expand_env(config.load_file(sample)))


def test_there_are_samples() -> None:
    assert len(SAMPLES) >= 4
