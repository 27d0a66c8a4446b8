"""A (schema, config) pair that passed jsonschema skips it next time; nothing else does."""

import datetime
from pathlib import Path

import pytest

from benchbed import plugin, schema_passes
from benchbed.errors import ConfigError

SCHEMA = {"type": "object", "properties": {"amount": {"type": "integer"}},
          "additionalProperties": False}


def test_a_pass_is_remembered_for_that_pair_only(home: Path) -> None:
    key = schema_passes.digest(SCHEMA, {"amount": 2})
    assert not schema_passes.passed(key)
    plugin._check_schema(SCHEMA, {"amount": 2}, "")
    assert schema_passes.passed(key)
    assert (home / schema_passes.FILE_NAME).stat().st_mode & 0o777 == 0o600
    assert not schema_passes.passed(schema_passes.digest(SCHEMA, {"amount": 3}))
    other_schema = {**SCHEMA, "properties": {"amount": {"type": "integer", "maximum": 1}}}
    assert not schema_passes.passed(schema_passes.digest(other_schema, {"amount": 2}))
    with pytest.raises(ConfigError, match=r"maximum|at most 1"):
        plugin._check_schema(other_schema, {"amount": 2}, "")


@pytest.mark.parametrize("config", [{"amount": True}, {"amount": 2.0}, {"amount": "2"},
                                    {"amount": 2, "extra": 1}])
def test_a_failure_is_never_remembered(home: Path, config: dict) -> None:
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"amount|extra"):
            plugin._check_schema(SCHEMA, config, "")
    assert not (home / schema_passes.FILE_NAME).exists()


@pytest.mark.parametrize("config", [{1: 2}, {"amount": float("nan")},
                                    {"amount": datetime.date(2026, 1, 1)}, {"a": (1,)}])
def test_what_json_cannot_write_exactly_has_no_digest(config: dict) -> None:
    assert schema_passes.digest(SCHEMA, config) is None


def test_the_file_keeps_the_newest_digests(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema_passes, "KEEP", 3)
    keys = [schema_passes.digest(SCHEMA, {"amount": n}) for n in range(7)]
    for key in keys:
        schema_passes.remember(key)
    schema_passes._known.cache_clear()
    assert [schema_passes.passed(key) for key in keys] == [False] * 4 + [True] * 3
