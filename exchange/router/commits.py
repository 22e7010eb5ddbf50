"""Offsets committed in fetch order, each only once everything its batch produced is acked.

At-least-once, pipelined: the router routes a batch and gets back an awaitable that
resolves when the broker has acknowledged its outputs; the next fetch does not wait for
it. A crash re-delivers at most the batches in flight, and consumers drop the duplicates
by trace id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

MAX_BATCHES_IN_FLIGHT = 8
#: at most one commit this often, busy or idle (a commit is a broker round trip on Faust's
#: consumer thread; Faust itself commits every 2.8 s); a stream's last batch is committed within it
COMMIT_INTERVAL_S = 1.0

TP = Hashable  # a topic partition: aiokafka's TopicPartition or Faust's TP


class CommitPipeline:
    """Commits offsets in fetch order, each only once its batch's outputs are acked.

    ``commit`` commits a mapping of topic partition to next offset; it returns False (or
    raises aiokafka's ``KafkaError``) when the partitions went to another worker, and the
    commit is skipped: their new owner re-reads from the last commit. Any other exception
    is a bug: the pipeline stops committing and :meth:`add` raises it, failing the worker.
    """

    def __init__(
        self,
        commit: Callable[[dict[TP, int]], Awaitable[bool | None]],
        max_in_flight: int = MAX_BATCHES_IN_FLIGHT,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self._commit = commit
        self._observe = observe  # seconds from a batch added to its offsets committed
        self._added: list[float] = []  # when each batch now pending was added
        self._max = max_in_flight
        self._queue: deque[tuple[dict[TP, int], asyncio.Future, float]] = deque()
        self._room = asyncio.Event()
        self._work = asyncio.Event()
        self._pending: dict[TP, int] = {}
        self._task: asyncio.Task | None = None
        self.failed: BaseException | None = None
        self.commit_seconds = 0.0

    async def add(self, offsets: dict[TP, int], done: Awaitable[None]) -> None:
        """Queue a routed batch: ``offsets`` (topic partition → next offset to read) are
        committed once ``done`` (its outputs acknowledged) resolves and every earlier batch's
        did. Waits while ``max_in_flight`` batches are queued; raises the failure of an
        earlier batch whose outputs were not acknowledged, or of a commit that failed with a
        bug (nothing after it is committed)."""
        if self.failed is not None:
            raise self.failed
        while len(self._queue) >= self._max:
            self._room.clear()
            await self._room.wait()
        self._queue.append((offsets, asyncio.ensure_future(done), time.monotonic()))
        self._work.set()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        last_commit = time.monotonic()
        while True:
            if not self._queue:
                # idle with acked offsets: commit them once the interval is up, or go on with a
                # batch that comes first. Committing at once cost a commit (a broker round trip
                # through Faust's consumer thread) per batch at low rates: a cascade hub's
                # router, ~30 batches of 1-2 records a second. Nothing pending: wait for work.
                wait = COMMIT_INTERVAL_S - (time.monotonic() - last_commit) if self._pending else None
                if wait is not None and wait <= 0:
                    await self._commit_pending()
                    last_commit = time.monotonic()
                    continue  # a batch may have come during the commit: look again before sleeping
                self._work.clear()  # no await between the check and the clear: no wake-up is lost
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._work.wait(), wait)
                continue
            offsets, done, added = self._queue[0]
            try:
                await done
            except BaseException as exc:  # noqa: BLE001 - outputs not acked: never commit past this batch
                self.failed = exc
                log.error("a routed batch was not acknowledged (%r); its offsets stay uncommitted", exc)
                self._queue.clear()
                self._room.set()
                return
            self._queue.popleft()
            self._room.set()
            self._pending.update(offsets)
            self._added.append(added)
            if time.monotonic() - last_commit >= COMMIT_INTERVAL_S:
                await self._commit_pending()
                last_commit = time.monotonic()

    async def _commit_pending(self) -> None:
        pending, self._pending = self._pending, {}
        added, self._added = self._added, []
        t0 = time.perf_counter()
        try:
            done = await self._commit(pending)
        except KafkaError as exc:  # a rebalance took the partitions: the new owner re-reads them
            log.info("commit of %s skipped: %r", sorted(map(str, pending)), exc)
        except Exception as exc:  # a bug: never hide it, stop committing (the next add raises it)
            self.failed = exc
            log.error("commit of %s failed; no more offsets are committed", sorted(map(str, pending)), exc_info=exc)
        else:
            if done is False:  # the committer declined (Faust: partitions already rebalanced away)
                log.info("commit of %s skipped: partitions no longer assigned", sorted(map(str, pending)))
            elif self._observe is not None:
                now = time.monotonic()
                for at in added:
                    self._observe(now - at)
        self.commit_seconds += time.perf_counter() - t0

    async def flush(self) -> None:
        """Wait for every batch in flight and commit; called before partitions go away."""
        while self._queue and self.failed is None:
            # shielded: a caller that gives up waiting (the revoke's timeout) must not cancel the
            # batches' sends, which would fail the pipeline and the worker (seen when a Kafka node
            # died: acks waited for the leaders to move, and a rebalance came first)
            await asyncio.gather(*(asyncio.shield(done) for _, done, _ in list(self._queue)), return_exceptions=True)
            await asyncio.sleep(0)
        if self._pending:
            await self._commit_pending()

    async def stop(self) -> None:
        """Commit every batch whose outputs are acknowledged (:meth:`flush`), then stop."""
        await self.flush()
        if self._task is not None:
            self._task.cancel()
