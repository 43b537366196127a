"""Long texts split into numbered env vars for the runner pod, and joined back."""

from __future__ import annotations

import pytest

from carbonaware.errors import SpecError
from carbonaware.runners.podenv import (
    CHUNK_BYTES,
    MAX_ENV_STRING_BYTES,
    check_fits,
    exec_bytes,
    join_env_value,
    split_env_value,
)


def kubelet_expand(value: str, defined: dict[str, str]) -> str:
    """What the kubelet makes of a container env or command value (Kubernetes'
    ``third_party/forked/golang/expansion``): ``$$`` is ``$``, ``$(NAME)`` of a variable
    defined before it is its value, anything else stays as written."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "$" and i + 1 < len(value):
            following = value[i + 1]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "(" and (close := value.find(")", i + 2)) != -1:
                name = value[i + 2 : close]
                if name in defined:
                    out.append(defined[name])
                    i = close + 1
                    continue
        out.append(value[i])
        i += 1
    return "".join(out)


def as_environ(entries: list[dict[str, str]]) -> dict[str, str]:
    """The runner's environment once the kubelet expanded the pod's entries in order."""
    environ = {"HOME": "/home/runner"}
    for entry in entries:
        environ[entry["name"]] = kubelet_expand(entry["value"], environ)
    return environ


def test_a_value_that_fits_stays_in_one_variable() -> None:
    entries = split_env_value("CARBONAWARE_SSH_SCRIPT", "echo hi\n")

    assert entries == [{"name": "CARBONAWARE_SSH_SCRIPT", "value": "echo hi\n"}]
    assert join_env_value("CARBONAWARE_SSH_SCRIPT", as_environ(entries)) == "echo hi\n"
    assert join_env_value("CARBONAWARE_SSH_SCRIPT", {}) is None


@pytest.mark.parametrize("character", ["a", "é", "€", "\U0001f600"])
def test_a_256_kib_text_round_trips_in_chunks_of_whole_characters(character: str) -> None:
    header = "#!/bin/sh\n"
    text = header + character * ((256 * 1024 - len(header)) // len(character.encode()))

    entries = split_env_value("CARBONAWARE_SSH_SCRIPT", text)

    assert entries[0] == {"name": "CARBONAWARE_SSH_SCRIPT_CHUNKS", "value": str(len(entries) - 1)}
    fewest = -(-len(text.encode()) // CHUNK_BYTES)
    assert fewest <= len(entries) - 1 <= fewest + 1
    for entry in entries[1:]:
        assert len(entry["value"].encode()) <= CHUNK_BYTES
        assert len(f"{entry['name']}={entry['value']}".encode()) + 1 <= MAX_ENV_STRING_BYTES
    assert join_env_value("CARBONAWARE_SSH_SCRIPT", as_environ(entries)) == text


def test_a_character_across_a_chunk_boundary_is_kept_whole() -> None:
    text = "a" * (CHUNK_BYTES - 1) + "\U0001f600" + "b"

    entries = split_env_value("X", text)

    assert [entry["name"] for entry in entries] == ["X_CHUNKS", "X_0", "X_1"]
    assert entries[1]["value"] == "a" * (CHUNK_BYTES - 1)
    assert entries[2]["value"] == "\U0001f600b"
    assert join_env_value("X", as_environ(entries)) == text


@pytest.mark.parametrize("size", [10, CHUNK_BYTES - 1, CHUNK_BYTES, 3 * CHUNK_BYTES + 7])
def test_dollars_reach_the_runner_as_written_whatever_the_chunks(size: int) -> None:
    """A script's ``$$``, ``$(HOME)`` and ``$(date)`` are not the kubelet's to expand."""
    pattern = 'echo "$$ $(HOME) $(date +%s) ${X} $"\n'
    text = (pattern * (size // len(pattern) + 1))[:size]

    entries = split_env_value("CARBONAWARE_SSH_SCRIPT", text)

    assert join_env_value("CARBONAWARE_SSH_SCRIPT", as_environ(entries)) == text
    for entry in entries:
        assert len(entry["value"].encode()) <= CHUNK_BYTES


@pytest.mark.parametrize(
    "environ",
    [
        {"X_CHUNKS": "2", "X_0": "a"},
        {"X_CHUNKS": "1", "X_0": "a", "X": "a"},
        {"X_CHUNKS": "0"},
        {"X_CHUNKS": "many"},
        {"X_CHUNKS": "100000"},
    ],
)
def test_joining_refuses_missing_or_doubled_values(environ: dict[str, str]) -> None:
    with pytest.raises(SpecError):
        join_env_value("X", environ)


def test_exec_bytes_count_strings_nuls_and_pointers() -> None:
    assert exec_bytes(["ab", "c"], [{"name": "N", "value": "v"}]) == (2 + 9) + (1 + 9) + (3 + 9)


def test_check_fits_refuses_an_oversized_variable_or_total() -> None:
    with pytest.raises(SpecError, match="Linux allows"):
        check_fits([], [{"name": "X", "value": "x" * MAX_ENV_STRING_BYTES}])
    too_many = [{"name": f"X_{index}", "value": "x" * CHUNK_BYTES} for index in range(11)]
    with pytest.raises(SpecError, match="KiB"):
        check_fits([], too_many)
    check_fits([], too_many[:9])
