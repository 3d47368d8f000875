"""The ``local`` engine: today's scheduler. One thread pool per stage, as wide as its
backend's concurrency; a unit starts the moment its needs are settled; the loop waits on
whichever task finishes first. Everything runs in this process."""

from __future__ import annotations

import concurrent.futures as cf

from reelforge import hookimpl
from reelforge.engine.base import Engine, ShotWork, Unit


class LocalEngine(Engine):
    """Threads in this process; the default engine."""

    name = "local"

    def run_shots(self, work: ShotWork) -> None:
        pools: dict[str, cf.ThreadPoolExecutor] = {}
        running: dict[cf.Future, Unit] = {}

        def start_ready() -> None:
            # A unit settled without work (done already) may make others ready at once.
            while ready := work.take_ready():
                for unit in ready:
                    task = work.begin(unit)
                    if task is None:
                        continue
                    if unit.stage not in pools:
                        pools[unit.stage] = cf.ThreadPoolExecutor(
                            max(1, int(work.slots(unit.stage))), thread_name_prefix=f"reelforge-{unit.stage}")
                    running[pools[unit.stage].submit(task)] = unit

        try:
            start_ready()
            while running:
                finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    unit = running.pop(fut)
                    try:
                        result = fut.result()
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:  # the backend failed this shot (after its retries)
                        work.finish(unit, error=exc)
                    else:
                        work.finish(unit, result=result)
                # Settling one unit may make others ready (a clip once its image and voice are done).
                start_ready()
        except KeyboardInterrupt:
            work.cancel.set()
            self._drain(work, running)
            raise
        except BaseException:
            work.cancel.set()  # a fatal error: running backends stop soon (renders on a server are kept)
            raise
        finally:
            for pool in pools.values():
                pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _drain(work: ShotWork, running: dict[cf.Future, Unit]) -> None:
        """After Ctrl-C: let running tasks stop, but keep any that finished meanwhile."""
        for fut in list(running):
            fut.cancel()
        for fut, unit in list(running.items()):
            if fut.cancelled():
                continue
            try:
                work.salvage(unit, fut.result())
            except BaseException:
                pass  # not finished: it stays todo and is resumed later


@hookimpl
def register_engines(register):
    register(LocalEngine)
