"""Rules of the test suite itself, checked so they keep holding."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def test_no_test_imports_from_a_conftest_file() -> None:
    # pytest loads conftest files itself, once; importing one as a module loads it a second
    # time under another name (two copies of its fixtures' state). Helpers live in helpers.py.
    offenders = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(name.split(".")[-1] == "conftest" for name in names):
                offenders.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    assert offenders == []


def test_shared_helpers_live_in_helper_modules_not_in_test_modules() -> None:
    # Importing a test module runs its module-level code and collects its tests a second
    # time under the importer's name, and ties the importer to a file that changes for its
    # own tests' sake: what several test files use belongs in a helper module.
    imports = set()
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                if name.startswith("tests.") and name.split(".")[-1].startswith("test_"):
                    imports.add(f"{path.relative_to(TESTS)} imports {name}")
    assert imports == set()
