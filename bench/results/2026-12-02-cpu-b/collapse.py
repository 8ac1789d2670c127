"""Shares of a py-spy raw profile (collapsed stacks) by function, inclusive and by leaf.

python bench/results/2026-12-02-cpu-b/collapse.py PROFILE [TOP]
"""

import collections
import gzip
import sys


def key(frame: str) -> str:
    function = frame.split(" (")[0]
    where = frame.split("/")[-1].split(":")[0] if "/" in frame else ""
    return f"{function} {where}".strip()


def main(path: str, top: int) -> None:
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as lines:
        for line in lines:
            stack, count = line.rstrip().rsplit(" ", 1)
            samples = int(count)
            total += samples
            frames = [key(frame) for frame in stack.split(";")]
            for name in set(frames):
                inclusive[name] += samples
            leaf[frames[-1]] += samples
    print("samples", total)
    for name, samples in inclusive.most_common(top):
        print(f"{samples / total:6.1%} {name}")
    print("--- leaf functions")
    for name, samples in leaf.most_common(30):
        print(f"{samples / total:6.1%} {name}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 60)
