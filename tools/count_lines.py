"""Lines of the runtime package, split into platform and domains: the size figure of issue 24.

The rule: every ``.py`` file under ``bgworkers/`` except ``migrations/versions/`` (generated
once, never edited), counted as physical lines (``wc -l``: blank lines, comments and
docstrings included). The domains are the packages named in :data:`DOMAINS`; everything else
(root modules included) is platform.

    python tools/count_lines.py            # the working tree
    python tools/count_lines.py 99e3759    # any commit, read with git
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOMAINS = ("reminders", "email", "files", "sync", "users", "maintenance")
ROOT = Path(__file__).resolve().parents[1]


def counted(path: str) -> bool:
    return (
        path.startswith("bgworkers/")
        and path.endswith(".py")
        and not path.startswith("bgworkers/migrations/versions/")
    )


def files_at(commit: str | None) -> dict[str, str]:
    """Each counted file's text, at ``commit`` or in the working tree."""
    if commit is None:
        paths = [p.relative_to(ROOT).as_posix() for p in (ROOT / "bgworkers").rglob("*.py")]
        return {p: (ROOT / p).read_text() for p in paths if counted(p)}
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", commit, "bgworkers/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        p: subprocess.run(
            ["git", "show", f"{commit}:{p}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        for p in listing
        if counted(p)
    }


def main(argv: list[str]) -> int:
    commit = argv[0] if argv else None
    platform = domain = 0
    for path, text in files_at(commit).items():
        lines = text.count("\n")
        if path.split("/")[1] in DOMAINS:
            domain += lines
        else:
            platform += lines
    print(f"platform_lines={platform}")
    print(f"domain_lines={domain}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
