"""The worker pool of `modistill prepare` and its flow pass: spawned, single-threaded-OpenCV processes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

__all__ = ["run_tasks"]


def _init_worker() -> None:
    # Each worker is one process: keep OpenCV/FFmpeg single-threaded so N workers use N cores, not N^2.
    import cv2

    cv2.setNumThreads(1)


def run_tasks(
    fn: Callable,
    tasks: Sequence,
    workers: int,
    progress: bool,
    desc: str,
    on_broken: Callable[[Any, BaseException], Any],
) -> Iterator:
    """Yield ``fn(task)`` for every task (any order); in-process when ``workers <= 1``.

    ``fn`` must never raise (it returns its own failure records). A task whose worker process died yields
    ``on_broken(task, exc)`` instead, so the rest of the job goes on. ``progress`` shows a tqdm bar ``desc``.
    """
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc=desc, unit="sample", disable=not progress, file=sys.stderr)
    try:
        if workers <= 1 or len(tasks) <= 1:
            for t in tasks:
                yield fn(t)
                bar.update(1)
            return
        import multiprocessing as mp

        # spawn, not fork: a child forked after the parent used OpenCV's or FFmpeg's thread pools (an
        # in-process run, a fallback pass, a library caller) can deadlock in them; measured here as a hang.
        # Start-up costs the import of modistill.data per worker (well under a second), paid once per pool.
        ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)
        try:
            futures = {ex.submit(fn, t): t for t in tasks}
            for fut in as_completed(futures):
                try:
                    res = fut.result()
                except BrokenProcessPool as exc:
                    res = on_broken(futures[fut], exc)
                yield res
                bar.update(1)
        finally:
            # On Ctrl-C (or an error in the consumer) drop the queued samples instead of finishing them all.
            ex.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
