"""Split a bundled virtual environment between RPM subpackages.

    filelist.py snapshot BUILDROOT VENV OUT        record every path under BUILDROOT/VENV
    filelist.py split CORE ALL CORE_OUT EXTRA_OUT  %files lists for the two subpackages

The spec snapshots the venv after installing the core, then again after the neuron's
extras. The core owns what it installed and is still there (the extras may upgrade a
shared dependency, which removes the old files); the neuron owns everything else.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def snapshot(buildroot: str, venv: str, out: str) -> None:
    root = Path(buildroot)
    lines = []
    for directory, dirnames, filenames in os.walk(root / venv.lstrip("/")):
        here = "/" + str(Path(directory).relative_to(root))
        lines.append(f"d {here}")
        lines.extend(f"f {here}/{name}" for name in filenames)
        # os.walk does not descend into symlinked directories: list them as files.
        lines.extend(
            f"f {here}/{name}" for name in dirnames if (Path(directory) / name).is_symlink()
        )
    Path(out).write_text("\n".join(sorted(lines)) + "\n")


def split(core: str, everything: str, core_out: str, extra_out: str) -> None:
    core_paths = _read(core)
    all_paths = _read(everything)
    _write(core_out, core_paths & all_paths)
    _write(extra_out, all_paths - core_paths)


def _read(path: str) -> set[str]:
    return set(Path(path).read_text().split("\n")) - {""}


def _write(out: str, entries: set[str]) -> None:
    rendered = []
    for entry in sorted(entries):
        kind, path = entry.split(" ", 1)
        quoted = f'"{path}"' if " " in path else path
        rendered.append(f"%dir {quoted}" if kind == "d" else quoted)
    Path(out).write_text("\n".join(rendered) + "\n")


def main(argv: list[str]) -> int:
    if argv[:1] == ["snapshot"] and len(argv) == 4:
        snapshot(*argv[1:])
    elif argv[:1] == ["split"] and len(argv) == 5:
        split(*argv[1:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
