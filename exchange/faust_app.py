"""The router's Faust app: control agent, approval and authority tables, timers.

The ingress records do not go through Faust (see :mod:`exchange.ingress`), so its
consumer only reads the control topic and the tables' changelogs: low volume, read with
a longer fetch wait than Faust's own 1.5 s would give a user approving a subscription,
and shorter than the idle polling it would cost at the ingress consumer's 10 ms.
"""

from __future__ import annotations

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

CONTROL_FETCH_WAIT_MS = 100


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = CONTROL_FETCH_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self):
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class RouterApp(faust.App):
    """A Faust app whose consumer polls its low-volume topics every 100 ms."""

    def _new_transport(self):
        return _Transport(self.conf.broker_consumer, self)
