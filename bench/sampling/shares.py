"""Where the CPU time of sampled processes goes: collapsed stacks (this folder's sampler, or py-spy's raw output)
summed over all the files given, by thread.

    python bench/sampling/shares.py STACKS/*.txt [--top 40]
    python bench/sampling/shares.py --py-spy PROFILE.txt

For each kind of thread (names without their numbers: MainThread is a worker's event loop, "AnyIO worker thread" runs
the batched model call) it prints the CPU time and its shares by function: inclusive (the function or anything it
called) and innermost. The event loop's own C code (uvloop, httptools) shows as asyncio's Runner.run, innermost.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path


def frame_key(frame: str) -> tuple[str, str]:
    """("function", "file.py") of a frame written "function (path/file.py:line)"."""
    function, _, where = frame.partition(" (")
    return function, where.rsplit("/", 1)[-1].split(":", 1)[0]


def thread_kind(name: str) -> str:
    return re.sub(r"[\s_-]*\d+$", "", name.split(" (")[0]) or name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--py-spy", action="store_true", help="the files are py-spy's: counts are samples, not µs")
    args = parser.parse_args()
    total: collections.Counter[str] = collections.Counter()
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    innermost: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for path in args.files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if args.py_spy:  # no thread names: threads start in Thread._bootstrap, the rest is the main thread's
                frames = stack.split(";")
                thread = "other threads" if frames[0].startswith("Thread._bootstrap") else "MainThread"
            else:
                thread, *frames = stack.split(";")
            kind, weight = thread_kind(thread), int(count)
            total[kind] += weight
            keys = [frame_key(frame) for frame in frames]
            if not keys:
                continue
            for function, where in set(keys):
                inclusive[kind][f"{function} ({where})"] += weight
            innermost[kind][f"{keys[-1][0]} ({keys[-1][1]})"] += weight
    unit, name = (1.0, "samples") if args.py_spy else (1e6, "s")
    for kind, weight in total.most_common():
        print(f"== {kind}: {weight / unit:.2f} {name} of CPU")
        for title, counts in (("inclusive", inclusive[kind]), ("innermost", innermost[kind])):
            print(f"-- by function, {title}")
            for function, share in counts.most_common(args.top):
                print(f"{share / weight:7.1%}  {function}")


if __name__ == "__main__":
    main()
