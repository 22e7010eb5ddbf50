"""Expected failures, and the exit codes the command line gives them.

Every failure a user can cause or meet (no broker at an address, a topic that does not
exist or has other settings than a run needs, a refused workflow action, a file that is
not there) is an :class:`ExchangeError`: the command line catches it in one place
(``exchange.cli``) and prints its message as one line, without a traceback. Its
``exit_code`` says which kind of failure it is:

* :data:`EXIT_FAILED` (1): the check ran and failed (a broken audit chain, a refused
  action, a run that failed or whose conservation check did not hold);
* :data:`EXIT_COULD_NOT_CHECK` (2): nothing could be checked (bad input, no broker,
  an unknown topic, a timeout waiting for an answer).

Anything else escaping a command is a bug, and keeps its traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_COULD_NOT_CHECK = 2
EXIT_INTERRUPTED = 130


class ExchangeError(Exception):
    """An expected failure: printed as one line, the process exits with ``exit_code``."""

    exit_code: int = EXIT_COULD_NOT_CHECK
    label: str = "error"  # what the one line starts with


class BrokerUnreachable(ExchangeError):
    """No Kafka broker answered at the bootstrap address."""


class KafkaRequestFailed(ExchangeError):
    """The broker answered a request with an error."""


class TopicNotFound(ExchangeError):
    """A topic the command reads does not exist on the broker."""


class TopicMismatch(ExchangeError):
    """Topics exist with other settings (partitions) than the run needs."""


@contextlib.contextmanager
def kafka_errors(bootstrap: str, doing: str) -> Iterator[None]:
    """Turn aiokafka's errors inside the block into :class:`BrokerUnreachable` (or
    :class:`KafkaRequestFailed`) naming
    ``bootstrap`` and what was being done (``"publishing to dx.dg.control"``)."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    try:
        yield
    except KafkaConnectionError:
        # a part without a port is Kafka's 9092 (exchange/kafka/clients.py check_bootstrap): say so
        hosts = _hosts(bootstrap)
        portless = [host for host, has_port in hosts if not has_port]
        unknown = [host for host, _ in hosts if not _resolves(host)]
        hints = ([f"no port given for {', '.join(portless)}: Kafka's 9092 was tried"] if portless else []) + (
            [f"no such host name: {', '.join(unknown)}"] if unknown else []
        )
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise BrokerUnreachable(f"no Kafka broker answered at {bootstrap} while {doing}{hint}") from None
    except KafkaError as exc:
        raise KafkaRequestFailed(f"Kafka at {bootstrap} failed while {doing}: {type(exc).__name__}: {_first_line(exc)}") from None


def _hosts(bootstrap: str) -> list[tuple[str, bool]]:
    """Each part of ``bootstrap`` as (host, whether a port is given), IPv6 brackets kept."""
    out = []
    for part in (p.strip() for p in bootstrap.split(",") if p.strip()):
        has_port = ":" in part.rpartition("]")[2]
        out.append((part.rpartition(":")[0] if has_port else part, has_port))
    return out


def _resolves(host: str) -> bool:
    """Whether ``host`` resolves (the error path only: one lookup)."""
    import socket

    try:
        socket.getaddrinfo(host.strip("[]"), None)
    except (OSError, UnicodeError):
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
