"""A CPU-time stack sampler started in every Python process that has this folder on its PYTHONPATH.

py-spy cannot attach on the GPU machine (it records a handful of samples there), so `bench/serving.py --sample-stacks
DIR` puts this folder first on the service's PYTHONPATH instead. While the file DIR/on exists, each process charges
the CPU time of its threads to the stacks they are in, and writes DIR/<pid>.txt every few seconds as py-spy's
collapsed stacks ("thread;frame;frame microseconds", a frame being "function (file:line)"); `shares.py` beside this
file sums them.

Two samplers, because of the GIL:
- the main thread (a worker's event loop) is sampled from a SIGPROF handler, which Python runs in the main thread
  at its next bytecode: the handler sees the very frame the loop is executing, and charges it the main thread's own
  CPU time since the last sample (`time.thread_time()`), whichever thread's CPU made the timer fire;
- every other thread is sampled by a thread of this module every MODELYARD_SAMPLE_INTERVAL_MS (default 2), which
  charges each the CPU time its own clock counted since the last look. That thread can only look when it holds the
  GIL, so it sees a thread that runs Python when the thread lets the GIL go; threads that work in C with the GIL
  released (torch, Pillow) are seen where they are.
A first version weighed wall time and looked at every thread from the sampler thread: it saw the event loop only
where the loop released the GIL (decoding, logging, waiting) and called 83% of a saturated worker's loop idle.
"""

from __future__ import annotations

import atexit
import collections
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

INTERVAL = float(os.environ.get("MODELYARD_SAMPLE_INTERVAL_MS", "2")) / 1000


def _stack(thread: str, frame: FrameType | None) -> str:
    frames: list[str] = []
    while frame is not None:
        code = frame.f_code
        frames.append(f"{code.co_name} ({code.co_filename}:{frame.f_lineno})")
        frame = frame.f_back
    return ";".join([thread, *reversed(frames)])


class Sampler:
    def __init__(self, folder: Path) -> None:
        self.output = folder / f"{os.getpid()}.txt"
        self.switch = folder / "on"
        self.counts: collections.Counter[str] = collections.Counter()
        self.sampling = False
        self.main_cpu = time.thread_time()
        self.main = threading.main_thread()

    def on_sigprof(self, signum: int, frame: FrameType | None) -> None:
        now = time.thread_time()
        spent, self.main_cpu = now - self.main_cpu, now
        if self.sampling:
            self.counts[_stack(self.main.name, frame)] += round(spent * 1e6)

    def write(self) -> None:
        counts = dict(self.counts)  # one C call: the signal handler cannot change it midway
        if counts:
            temporary = self.output.with_suffix(".tmp")
            temporary.write_text("".join(f"{stack} {count}\n" for stack, count in counts.items()))
            temporary.replace(self.output)

    def run(self) -> None:
        me, main = threading.get_ident(), self.main.ident
        clocks: dict[int, int] = {}
        spent: dict[int, float] = {}
        last_write = last_check = time.monotonic()
        while True:
            time.sleep(INTERVAL)
            now = time.monotonic()
            if now - last_check > 0.1:
                self.sampling, last_check = self.switch.exists(), now
            frames = sys._current_frames()
            # A thread's ident can be reused by a later thread: forget the clocks of threads that are gone.
            for gone in clocks.keys() - frames.keys():
                del clocks[gone]
                spent.pop(gone, None)
            names = {thread.ident: thread.name for thread in threading.enumerate()} if self.sampling else {}
            for ident, frame in frames.items():
                if ident in (me, main):
                    continue
                try:
                    if ident not in clocks:
                        clocks[ident] = time.pthread_getcpuclockid(ident)
                    cpu = time.clock_gettime(clocks[ident])
                except OSError:  # the thread ended since
                    continue
                before = spent.get(ident, cpu)
                spent[ident] = cpu
                if self.sampling and cpu > before:
                    self.counts[_stack(names.get(ident, str(ident)), frame)] += round((cpu - before) * 1e6)
            if now - last_write > 3:
                self.write()
                last_write = now


def stop(sampler: Sampler) -> None:
    # Before the interpreter restores the default handler, whose action for SIGPROF is to end the process.
    signal.setitimer(signal.ITIMER_PROF, 0)
    sampler.write()


def start(folder: Path) -> None:
    sampler = Sampler(folder)
    signal.signal(signal.SIGPROF, sampler.on_sigprof)
    # ITIMER_PROF counts the process's CPU time: it fires as often while the process works, never while it idles.
    signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)
    atexit.register(stop, sampler)
    threading.Thread(target=sampler.run, name="stack-sampler", daemon=True).start()


if os.environ.get("MODELYARD_STACK_SAMPLES") and threading.current_thread() is threading.main_thread():
    start(Path(os.environ["MODELYARD_STACK_SAMPLES"]))
