"""Clock offsets measured over Kafka (exchange/kafka/timesync.py), on both brokers: one machine
measures ~0 (the estimator is unbiased), a process under libfaketime (+500 ms) measures −500 ms,
and nobody answering is one clear error."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import sys

import orjson
import pytest
import pytest_asyncio

from exchange.kafka import clients
from exchange.kafka.timesync import ClockProbeFailed, ClockServer, clock_topic, measure_offset
from schemas.clock import ClockOffset

from .harness import broker_kinds, running_broker

MS = 1_000_000
#: Debian's libfaketime (package faketime), wherever the architecture puts it; "" when missing
LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), "")


def faketime_env(offset: str) -> dict[str, str]:
    """The environment of a process whose wall clock is shifted by ``offset`` (``+0.5``: 500 ms
    ahead) by libfaketime; its monotonic clock is left alone, as on a machine whose wall
    clock is merely wrong (asyncio's timers run on the monotonic clock)."""
    return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


needs_faketime = pytest.mark.skipif(not LIBFAKETIME or shutil.which("faketime") is None, reason="libfaketime missing (apt-get install faketime)")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=broker_kinds())
async def broker(request, tmp_path_factory):
    async with running_broker(request.param, log_path=tmp_path_factory.mktemp(f"timesync-{request.param}") / "broker.log") as b:
        yield b


@pytest.mark.asyncio(loop_scope="module")
async def test_one_machine_measures_no_offset(broker) -> None:
    """Two workers at once against the server on one machine: ~0, and 0 within the error bound
    (on Kafka with the server's long wait: a fetch there ends when a probe arrives)."""
    topic = clock_topic("sameclock")
    async with ClockServer(bootstrap=broker.bootstrap, topic=topic, broker_kind=broker.kind) as server:
        got = await asyncio.gather(*(measure_offset(bootstrap=broker.bootstrap, topic=topic, worker=f"w{i}") for i in range(2)))
        # a reply that came after its probe's timeout (a first fetch on a JVM warming up) is answered, not used
        assert server.answered >= sum(g.samples for g in got)
    for g in got:
        assert g.samples >= 16, g  # a few probes may time out while a fresh JVM warms up
        assert abs(g.offset_ns) <= g.error_ns, g
        assert abs(g.offset_ns) < 20 * MS, g  # the tolerance; ~1 ms measured


@pytest.mark.asyncio(loop_scope="module")
async def test_the_server_deletes_its_topic_when_asked(broker) -> None:
    """On a cluster that outlives the run (exchange run --bootstrap) the per-run topic goes with the run."""
    kept, deleted = clock_topic("kept"), clock_topic("deleted")
    async with ClockServer(bootstrap=broker.bootstrap, topic=kept), ClockServer(bootstrap=broker.bootstrap, topic=deleted, delete_topic=True):
        pass
    async with clients.started(clients.admin("topology", broker.bootstrap), broker.bootstrap, "listing") as admin:
        names = set(await admin.list_topics())
    assert kept in names and deleted not in names


@pytest.mark.asyncio(loop_scope="module")
async def test_nobody_answering_is_one_clear_error(broker) -> None:
    topic = clock_topic("nobody")
    async with ClockServer(bootstrap=broker.bootstrap, topic=topic):
        pass  # the topic exists, its server is gone
    with pytest.raises(ClockProbeFailed, match=r"0 of 8 clock probes answered on dx\.clock\.nobody at .* is the run's controller up\?"):
        await measure_offset(bootstrap=broker.bootstrap, topic=topic, worker="w", samples=8, timeout_s=1.0, probe_timeout_s=0.2)


@needs_faketime
@pytest.mark.asyncio(loop_scope="module")
async def test_a_shifted_clock_is_measured(broker) -> None:
    """A process 500 ms ahead (libfaketime) measures an offset of −500 ms, within 20 ms and within its own bound."""
    topic = clock_topic("shifted")
    code = (
        "import asyncio, sys\n"
        "from exchange.kafka.timesync import measure_offset\n"
        "got = asyncio.run(measure_offset(bootstrap=sys.argv[1], topic=sys.argv[2], worker='shifted'))\n"
        "print(got.model_dump_json())\n"
    )
    async with ClockServer(bootstrap=broker.bootstrap, topic=topic):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            broker.bootstrap,
            topic,
            env={**os.environ, **faketime_env("+0.5")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    got = ClockOffset.model_validate(orjson.loads(out.splitlines()[-1]))
    assert abs(got.offset_ns + 500 * MS) <= 20 * MS, got
    assert abs(got.offset_ns + 500 * MS) <= got.error_ns, got  # FAKETIME=+0.5 shifts by exactly 500 ms
