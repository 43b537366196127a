"""Validation of the SSH run and target value types."""

from __future__ import annotations

import pytest

from carbonaware.errors import SpecError
from carbonaware.runners.sshspec import (
    HostKeyPolicy,
    SshRunSpec,
    SshTargetSpec,
    env_pairs,
    validate_run_id,
)

KEY_TEXT = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1ib2R5\n-----END OPENSSH PRIVATE KEY-----\n"
)


def test_target_repr_hides_the_private_key() -> None:
    target = SshTargetSpec(host="server.example", user="batch", private_key=KEY_TEXT)

    assert "c2VjcmV0LWtleS1ib2R5" not in repr(target)
    assert "c2VjcmV0LWtleS1ib2R5" not in str(target)
    assert target.host_key_policy is HostKeyPolicy.STRICT


def test_target_accepts_policy_names() -> None:
    target = SshTargetSpec(
        host="h",
        user="u",
        private_key=KEY_TEXT,
        host_key_policy="AcceptAny",  # type: ignore[arg-type]
    )

    assert target.host_key_policy is HostKeyPolicy.ACCEPT_ANY


@pytest.mark.parametrize(
    "overrides",
    [{"host": ""}, {"host": "two words"}, {"user": ""}, {"port": 0}, {"port": 70000}],
)
def test_target_rejects_invalid_fields(overrides: dict[str, object]) -> None:
    values: dict[str, object] = {"host": "h", "user": "u", "private_key": KEY_TEXT, **overrides}

    with pytest.raises(SpecError):
        SshTargetSpec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"command": "a", "script": "b"},
        {"command": "   "},
        {"command": "echo \0"},
        {"command": "x", "env": (("1BAD", "v"),)},
        {"command": "x", "env": (("A-B", "v"),)},
        {"command": "x", "env": (("A", "nul\0"),)},
        {"command": "x", "timeout_seconds": 0},
        {"command": "x", "timeout_seconds": float("nan")},
        {"command": "x", "kill_grace_seconds": -1},
        {"command": "x", "working_dir": ""},
        {"command": "x", "run_id": ""},
        {"command": "x", "run_id": "a/b"},
        {"command": "x", "run_id": "x" * 65},
        {"command": "x", "reattach_seconds": -1},
        {"command": "x", "reattach_seconds": float("inf")},
    ],
)
def test_run_spec_rejects_invalid_combinations(overrides: dict[str, object]) -> None:
    with pytest.raises(SpecError):
        SshRunSpec(**overrides)  # type: ignore[arg-type]


def test_env_pairs_accept_the_crd_list_and_a_mapping() -> None:
    assert env_pairs([{"name": "A", "value": "1"}, {"name": "B"}]) == (("A", "1"), ("B", ""))
    assert env_pairs({"A": "1"}) == (("A", "1"),)
    assert env_pairs(None) == ()
    with pytest.raises(SpecError):
        env_pairs([{"value": "1"}])


@pytest.mark.parametrize(
    "run_id", ["0b9c3e52-5b8e-4a0c-9d77-1f0e6c1c2a44", "a", "-leading-dash", "Z" * 64]
)
def test_run_ids_of_letters_digits_and_dashes_are_accepted(run_id: str) -> None:
    assert validate_run_id(run_id) == run_id
    assert SshRunSpec(command="x", run_id=run_id).run_id == run_id


@pytest.mark.parametrize(
    "run_id",
    ["", "x" * 65, "a/b", "../up", ".", "a b", "a_b", "a\nb", "$(id)", "`id`", "a;b", "ü", "a\0"],
)
def test_run_ids_unsafe_in_a_shell_path_are_refused(run_id: str) -> None:
    with pytest.raises(SpecError, match="run id"):
        validate_run_id(run_id)
    with pytest.raises(SpecError):
        SshRunSpec(command="x", run_id=run_id)


def test_run_spec_defaults_to_a_fresh_run_and_five_minutes_of_reattaching() -> None:
    spec = SshRunSpec(command="x")

    assert spec.run_id is None
    assert spec.reattach_seconds == 300
