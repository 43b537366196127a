#!/usr/bin/env python3
"""Write docs/bad-input.md: every malformed object of tests/integration/fixtures/invalid/,
applied to a real local control plane, and the message the user gets back.

    .venv/bin/python hack/badinput.py   # starts its own plane (builds the binaries if needed)

The same cases run as tests (tests/integration/test_bad_input.py for the API server's
answers, test_runtime_errors.py for what only the operator can tell); this script records
the messages themselves for the documentation.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import localplane
from testbed.common import CRD_NAMES

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "integration" / "fixtures" / "invalid"
OUTPUT = REPO_ROOT / "docs" / "bad-input.md"
RELEASED = {"status": {"releaseTime": "2024-05-01T12:00:00Z"}}
HEADER = """# Bad input and what the user is told

Every malformed object in `tests/integration/fixtures/invalid/` applied with `kubectl apply` to
a real API server with the CRDs installed. Each row: why the input is wrong, and the first
line of the message `kubectl` prints (objects of the `operator` stage pass the schema; the
operator marks them instead, see the last column). The API server stores nothing it refuses;
`tests/integration/test_bad_input.py` checks each refusal names the field, and
`tests/integration/test_fuzz.py` applies random mutations beside valid jobs that still run.
Regenerate with `.venv/bin/python hack/badinput.py`.

| case | why it is wrong | what the user is told |
|---|---|---|
"""


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def message_of(plane: Any, namespace: str, case: dict[str, Any]) -> str:
    manifest = case["manifest"]
    if case.get("stage", "api") == "operator":
        return "accepted; the operator marks it Failed (InvalidSpec) with: " + "; ".join(
            case["expect"]["says"]
        )
    if "existing" in case:
        plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(case["existing"]))
        plane.kubectl(
            "patch",
            "carbonawarejobs",
            manifest["metadata"]["name"],
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(RELEASED),
        )
    result = plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False
    )
    if result.returncode == 0:
        raise SystemExit(f"{manifest['metadata']['name']} was accepted: the table would lie")
    lines = [line.strip("* ").strip() for line in result.stderr.splitlines() if line.strip()]
    useful = [line for line in lines if "some validation rules were not checked" not in line]
    return " ".join(useful[:3])


def main() -> int:
    localplane.ensure_built()
    rows = []
    with tempfile.TemporaryDirectory(prefix="badinput-") as tmp:
        plane = localplane.LocalPlane(Path(tmp))
        plane.start()
        try:
            plane.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
            for crd in CRD_NAMES:
                plane.kubectl("wait", "--for=condition=Established", f"crd/{crd}")
            namespace = plane.create_namespace("badinput")
            for path in sorted(FIXTURES.glob("*.yaml")):
                text = path.read_text()
                case = yaml.safe_load(text)
                why = text.splitlines()[0].removeprefix("# ")
                rows.append(
                    f"| `{path.stem}` | {cell(why)} | {cell(message_of(plane, namespace, case))} |"
                )
        finally:
            plane.stop()
    OUTPUT.write_text(HEADER + "\n".join(rows) + f"\n\n{len(rows)} cases.\n")
    print(f"wrote {OUTPUT} ({len(rows)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
