"""The request guard's judgement of a multipart upload, before and after its plain-shape check: the trial parse with
Starlette's parser (before, on every request) against `_multipart_problem` (after: the plain-shape check, which
answers for these bodies without a parse). Bodies as httpx writes them, with bench/serving.py's 256 px photo-like
JPEGs; alternated rounds; microseconds per request, median of the repeats.

    PYTHONPATH=. python bench/results/2026-12-06-cpu/guard_probe.py [--rounds 3] [--repeat 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
from starlette.datastructures import Headers

sys.path.insert(0, "bench")
from serving import sample_images

from modelyard.bento.middleware import _multipart_problem, trial_parse_problem

Judge = Callable[[Headers, bytes, str], Awaitable[str | None]]


def per_request(judge: Judge, headers: Headers, body: bytes, repeat: int) -> float:
    async def run() -> list[float]:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            assert await judge(headers, body, "images") is None
            times.append(time.perf_counter() - started)
        return times

    return statistics.median(asyncio.run(run())) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    images = sample_images(16, 256, "jpeg")
    print(f"{sum(map(len, images)) / len(images) / 1024:.1f} KiB per JPEG on average, median of {args.repeat}")
    for count in (1, 16):
        files = [("images", (f"{index}.jpg", images[index], "image/jpeg")) for index in range(count)]
        request = httpx.Request("POST", "http://127.0.0.1/predict", files=files)
        headers, body = Headers({"content-type": request.headers["content-type"]}), request.read()
        for round_ in range(args.rounds):
            before = per_request(trial_parse_problem, headers, body, args.repeat)
            after = per_request(_multipart_problem, headers, body, args.repeat)
            print(
                f"{count:2d} image(s), round {round_ + 1}: trial parse {before:7.1f} us, "
                f"plain-shape check {after:6.1f} us, {before / after:5.1f}x"
            )


if __name__ == "__main__":
    main()
