"""Run the benchmarks: ``python benchmarks/run.py [NAME ...] [OPTIONS]`` (``make bench``).

Every ``benchmarks/bench_<name>.py`` defines ``main(argv: list[str]) -> None``
that measures vecexplore side by side with its reference in one run and prints
a table. With no names, all run in alphabetical order.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(HERE))
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    # names come first; everything from the first option on (values included) goes to each benchmark
    first = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, extra = argv[:first], argv[first:]
    paths = sorted(HERE.glob("bench_*.py"))
    if names:
        paths = [p for p in paths if p.stem.removeprefix("bench_") in names]
        if not paths:
            print(f"no benchmark named {names}; have: {[p.stem.removeprefix('bench_') for p in sorted(HERE.glob('bench_*.py'))]}")
            return 2
    for path in paths:
        print(f"\n=== {path.stem.removeprefix('bench_')} ===", flush=True)
        start = time.perf_counter()
        _load(path).main(extra)
        print(f"({path.stem} took {time.perf_counter() - start:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
