"""The commit pipeline: offsets only after their batch's outputs are acked, in fetch order."""

from __future__ import annotations

import asyncio
import time

import pytest

from exchange.router import commits
from exchange.router.commits import CommitPipeline


@pytest.fixture(autouse=True)
def commit_at_once(monkeypatch):
    monkeypatch.setattr(commits, "COMMIT_INTERVAL_S", 0.0)


def test_a_batch_is_committed_only_after_it_and_every_earlier_batch_are_acked():
    async def scenario():
        committed: list[dict] = []

        async def commit(offsets):
            committed.append(dict(offsets))

        waits: list[float] = []
        pipeline = CommitPipeline(commit, observe=waits.append)
        first, second = asyncio.get_running_loop().create_future(), asyncio.get_running_loop().create_future()
        await pipeline.add({("t", 0): 10}, first)
        await pipeline.add({("t", 1): 5}, second)
        second.set_result(None)  # the later batch is acked first: nothing may be committed yet
        await asyncio.sleep(0.01)
        assert committed == []
        first.set_result(None)
        await pipeline.flush()
        merged = {k: v for c in committed for k, v in c.items()}
        assert merged == {("t", 0): 10, ("t", 1): 5}
        assert len(waits) == 2 and all(w >= 0 for w in waits)
        await pipeline.stop()

    asyncio.run(scenario())


def test_a_batch_that_was_not_acked_stops_commits_and_fails_the_next_add():
    async def scenario():
        committed: list[dict] = []

        async def commit(offsets):
            committed.append(dict(offsets))

        pipeline = CommitPipeline(commit)
        failed = asyncio.get_running_loop().create_future()
        await pipeline.add({("t", 0): 10}, failed)
        failed.set_exception(RuntimeError("broker refused"))
        await asyncio.sleep(0.01)
        acked = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        with pytest.raises(RuntimeError, match="broker refused"):
            await pipeline.add({("t", 0): 20}, acked)
        assert committed == []

    asyncio.run(scenario())


def test_add_waits_while_the_pipeline_is_full():
    async def scenario():
        async def commit(offsets):
            pass

        pipeline = CommitPipeline(commit, max_in_flight=2)
        loop = asyncio.get_running_loop()
        acks = [loop.create_future() for _ in range(3)]
        await pipeline.add({("t", 0): 1}, acks[0])
        await pipeline.add({("t", 0): 2}, acks[1])
        third = asyncio.ensure_future(pipeline.add({("t", 0): 3}, acks[2]))
        await asyncio.sleep(0.01)
        assert not third.done()
        acks[0].set_result(None)
        await asyncio.wait_for(third, 1)
        for a in acks[1:]:
            a.set_result(None)
        await pipeline.stop()

    asyncio.run(scenario())


def test_a_batch_added_while_a_commit_is_under_way_is_committed_without_another_add(monkeypatch):
    """The pipeline's task must not go to sleep on a batch that arrived during a commit's round
    trip: the last batch of a stream would then stay uncommitted until the next add or a flush."""

    monkeypatch.setattr(commits, "COMMIT_INTERVAL_S", 0.2)  # offsets wait for the interval, then commit

    async def scenario():
        committed: list[dict] = []
        in_commit, release = asyncio.Event(), asyncio.Event()

        async def commit(offsets):
            committed.append(dict(offsets))
            if len(committed) == 1:  # the first commit takes a while
                in_commit.set()
                await release.wait()

        pipeline = CommitPipeline(commit)
        acked = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        await pipeline.add({("t", 0): 1}, acked)
        await asyncio.wait_for(in_commit.wait(), 1)
        await pipeline.add({("t", 0): 2}, acked)  # during the first commit
        release.set()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(committed) == 2:
                break
        assert committed == [{("t", 0): 1}, {("t", 0): 2}]
        await pipeline.stop()

    asyncio.run(scenario())


def test_a_commit_refused_by_a_rebalance_is_skipped_and_later_batches_still_commit(caplog):
    from aiokafka.errors import CommitFailedError

    async def scenario():
        committed: list[dict] = []
        outcomes = [CommitFailedError("already rebalanced"), False, None]

        async def commit(offsets):
            outcome = outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            if outcome is None:
                committed.append(dict(offsets))
            return outcome

        waits: list[float] = []
        pipeline = CommitPipeline(commit, observe=waits.append)
        for offset in (10, 20, 30):
            acked = asyncio.get_running_loop().create_future()
            acked.set_result(None)
            await pipeline.add({("t", 0): offset}, acked)
            await pipeline.flush()
        assert committed == [{("t", 0): 30}] and pipeline.failed is None
        assert len(waits) == 1  # only the commit that happened is observed
        await pipeline.stop()

    with caplog.at_level("INFO", logger="exchange.router.commits"):
        asyncio.run(scenario())
    assert sum("skipped" in r.getMessage() for r in caplog.records) == 2


def test_a_bug_in_the_commit_fails_the_pipeline_loudly_instead_of_dropping_offsets(caplog):
    async def scenario():
        async def commit(offsets):
            raise TypeError("a bug")

        pipeline = CommitPipeline(commit)
        acked = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        await pipeline.add({("t", 0): 10}, acked)
        await pipeline.flush()
        with pytest.raises(TypeError, match="a bug"):
            await pipeline.add({("t", 0): 20}, acked)
        await pipeline.stop()

    asyncio.run(scenario())
    [record] = [r for r in caplog.records if r.name == "exchange.router.commits"]
    assert record.levelname == "ERROR" and record.exc_info is not None


def test_a_flush_given_up_on_does_not_cancel_the_batches_still_waiting_for_their_acks():
    """A revoke waits for the flush at most a few seconds; its timeout must leave the sends
    alone (a cancelled ack failed the pipeline, and the worker, when a Kafka node died)."""

    async def scenario():
        committed: list[dict] = []

        async def commit(offsets):
            committed.append(dict(offsets))

        pipeline = CommitPipeline(commit)
        ack = asyncio.ensure_future(asyncio.sleep(0.2))  # the leader moves, then the ack comes
        await pipeline.add({("t", 0): 10}, ack)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pipeline.flush(), 0.05)
        assert not ack.cancelled()
        await ack
        await asyncio.sleep(0.01)
        assert pipeline.failed is None and committed == [{("t", 0): 10}]
        await pipeline.stop()

    asyncio.run(scenario())


def test_idle_offsets_are_committed_once_per_interval_not_once_per_batch(monkeypatch):
    """A router at a low rate empties its queue after every batch; each batch used to be committed
    on its own (a broker round trip through Faust's thread): now at most one commit an interval,
    and the last batch is still committed within it, with no further add."""
    monkeypatch.setattr(commits, "COMMIT_INTERVAL_S", 0.3)

    async def scenario():
        committed: list[tuple[float, dict]] = []

        async def commit(offsets):
            committed.append((time.monotonic(), dict(offsets)))

        pipeline = CommitPipeline(commit)
        acked = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        t0 = time.monotonic()
        for n in range(1, 11):  # ten batches, 50 ms apart: each acked before the next comes
            await pipeline.add({("t", 0): n}, acked)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        # 0.5 s of batches and an idle 0.5 s: two or three commits, the last one of offset 10
        assert 1 <= len(committed) <= 3, committed
        assert committed[-1][1] == {("t", 0): 10}
        assert all(b - a >= 0.29 for (a, _), (b, _) in zip([(t0, None), *committed], committed, strict=False))
        await pipeline.stop()

    asyncio.run(scenario())
