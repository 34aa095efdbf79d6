"""The manifest loader and `portico validate` against hostile input: alias bombs,
recursive aliases, deep nesting, control characters, keys that are not strings.
Every input is answered with errors and exit status 0 or 1, never a traceback, and
quickly (a bomb is rejected without expanding it)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from portico.cli import app
from portico.cli.validate import validate_text
from portico.provider.manifests import MAX_DEPTH, parse_json, parse_yaml

HEAD = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n"


def billion_laughs(levels: int = 9) -> str:
    lines = [HEAD.rstrip("\n"), 'data:', '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"  a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "alias bomb": (billion_laughs(), "values once its aliases are expanded"),
    "recursive alias": (HEAD + "data: &a {x: *a}\n", "recursive alias"),
    "deep nesting": (HEAD + "data: {x: " + "[" * (MAX_DEPTH + 20) + "]" * (MAX_DEPTH + 20) + "}\n",
                     "nested deeper"),
    "very deep nesting": (HEAD + "data: " + "[" * 5000 + "]" * 5000 + "\n", "nest"),
    "control character": (HEAD + 'data: {x: "\x07"}\n', "control character"),
    "null key": (HEAD + "data: {null: 1}\n", "mapping key None is not a string"),
    "binary value": (HEAD + "data: {x: !!binary aGk=}\n", "bytes is not JSON"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_documents_are_rejected_quickly(name: str, tmp_path: Path) -> None:
    text, expected = HOSTILE[name]
    start = time.monotonic()
    result = parse_yaml(text, "f.yaml")
    assert not result.documents and expected in result.errors[0].message
    path = tmp_path / "m.yaml"
    path.write_text(text)
    run = CliRunner().invoke(app, ["validate", str(path)])
    assert run.exit_code == 1 and (run.exception is None or isinstance(run.exception, SystemExit))
    assert "Traceback" not in run.output and expected.split()[0] in run.output
    assert time.monotonic() - start < 10  # not 4 GB in 4 minutes


def test_deep_json_is_rejected() -> None:
    result = parse_json("[" * 100_000 + "]" * 100_000, "f.json")
    assert not result.documents and "nested deeper" in result.errors[0].message


# YAML-ish text: structure characters, anchors, aliases, tags, control characters
_ALPHABET = st.sampled_from(list("abk:-[]{},&*!'\"#|> \n\t\x00\x07\x1b.01") + ["---\n", "apiVersion: v1\n",
                                                                              "kind: ConfigMap\n", "&a ", "*a",
                                                                              "metadata: {name: x}\n"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ALPHABET, max_size=60).map("".join))
def test_fuzz_loader_and_validator_never_raise(text: str) -> None:
    for file in ("f.yaml", "f.json"):
        reports, _ = validate_text(text, file)
        assert all(r.line >= 1 for r in reports)
