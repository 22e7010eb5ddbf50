"""Child processes that never outlive the process that started them.

Every process the simulator starts (the broker, router workers, producers, consumers)
is spawned here: with ``PR_SET_PDEATHSIG`` on Linux, so a SIGKILLed parent still takes
its children down, and from a thread that lives as long as the process, because
PDEATHSIG fires when the *thread* that forked the child exits, not the process (an
``asyncio.to_thread`` worker would otherwise kill the child when it is recycled).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schemas.status import Crashed

_spawn_q: queue.SimpleQueue | None = None
_spawn_lock = threading.Lock()


def pdeathsig_preexec() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # parent died before prctl took effect
            os._exit(1)

    return preexec


def _spawner(q: queue.SimpleQueue) -> None:
    while True:
        fn, fut = q.get()
        try:
            fut.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            fut.set_exception(exc)


def in_long_lived_thread(fn: Callable[[], subprocess.Popen]) -> subprocess.Popen:
    """Run ``fn`` on a thread that lives as long as the process (see module docstring)."""
    global _spawn_q
    if threading.current_thread() is threading.main_thread():
        return fn()
    with _spawn_lock:
        if _spawn_q is None:
            _spawn_q = queue.SimpleQueue()
            threading.Thread(target=_spawner, args=(_spawn_q,), name="broker-spawner", daemon=True).start()
    fut: concurrent.futures.Future = concurrent.futures.Future()
    _spawn_q.put((fn, fut))
    return fut.result()


def spawn(argv: list[str], *, log_path: Path | None = None, env: dict[str, str] | None = None, new_session: bool = True) -> subprocess.Popen:
    """Start ``argv`` with output to ``log_path``; it dies with us whatever happens."""
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(log_path, "ab")  # noqa: SIM115 - the child keeps its own copy
    else:
        out = subprocess.DEVNULL
    try:
        return in_long_lived_thread(
            lambda: subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=new_session,
                preexec_fn=pdeathsig_preexec(),
            )
        )
    finally:
        if out is not subprocess.DEVNULL:
            out.close()


def terminate(proc: subprocess.Popen, timeout: float = 5.0) -> int | None:
    """SIGTERM, wait, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
        return None


def peak_rss_bytes(pid: int | str = "self") -> int:
    """Peak resident set size (VmHWM) of a process, 0 where /proc does not say."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int | str = "self") -> float | None:
    """CPU time (user + system, every thread) a process has used so far, in seconds; None
    where /proc does not say (the process is gone, or this is not Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (proc(5) fields 14, 15)
    except (OSError, ValueError, IndexError):
        return None


def machine_cpu(stat: str | None = None) -> tuple[float, float] | None:
    """(busy, elapsed) CPU seconds of the whole machine since boot, summed over its cores, from
    ``/proc/stat``'s ``cpu`` line (proc(5)): busy is user + nice + system + irq + softirq + steal
    (guest time is inside user), elapsed adds idle and iowait. Two readings give the share of the
    machine that was busy between them, whoever kept it busy. ``stat``: the file's text (tests);
    None where there is no such file."""
    try:
        if stat is None:
            with open("/proc/stat") as f:
                stat = f.readline()
        fields = [int(v) for v in stat.split()[1:9]]
        user, nice, system, idle, iowait, irq, softirq, steal = fields + [0] * (8 - len(fields))
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq + steal
    return busy / tick, (busy + idle + iowait) / tick


def process_age_s() -> float:
    """Seconds since this process was started (by the kernel's clock, so imports count)."""
    try:
        with open("/proc/self/stat") as f:
            started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


# ---------------------------------------------------------------- the collector in a long-lived worker

#: The young generation's threshold in a worker that is taking records (CPython's default
#: is 700 allocations). Routing and counting allocate thousands of short-lived objects a
#: batch, which reference counting frees; at 700 the collector ran ~70 young collections a
#: second in a busy router, each walking the live batch (docs/performance.md).
YOUNG_THRESHOLD = 50_000


def settle_heap() -> tuple[int, int, int]:
    """Freeze this process's start-up heap and make young collections rare; call it once,
    when the worker is ready (its scenario, reference data, clients and metrics built).
    Returns the thresholds it replaced, for :func:`release_heap`.

    The start-up heap (the scenario's catalogue, the reference data, Faust and aiokafka:
    130,000-270,000 objects in a Dongguan worker) lives as long as the process. Left in the
    collected generations, every full collection walked it: 100-290 ms pauses of the
    consumers' event loop, collecting nothing. A collection first, so no garbage is frozen
    for good; then ``gc.freeze()`` moves the rest to the permanent generation, and
    :data:`YOUNG_THRESHOLD` replaces the first threshold (the older two are kept).
    Cycles made later are still collected.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, before[1], before[2])
    return before


def release_heap(thresholds: tuple[int, int, int]) -> None:
    """Undo :func:`settle_heap` in a process that lives on after a run (the run controller,
    which ``--find-max-rate``, the benches and the tests call many times): the frozen objects
    are collectable again, and ``thresholds`` are back."""
    gc.unfreeze()
    gc.set_threshold(*thresholds)


# ---------------------------------------------------------------- crashes inside a live process

CRASHED = "crashed"  # the kind of status message a crash becomes (schemas/status.py Crashed); the run controller fails the run on it


class _CrashReporter(logging.Handler):
    """Turns the log records that mean "something inside this process crashed" into
    ``crashed`` status lines: a mode/Faust service, agent, task or timer that crashed
    (``Crashed reason=…``; the cancellation Faust uses to restart an agent on a rebalance
    is not a crash), and an asyncio task or callback whose exception nobody handled."""

    def __init__(self, write: Callable[..., None]) -> None:
        super().__init__(logging.ERROR)
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = crash_of(record)
            if message is not None:
                self.write(Crashed(message=message))
        except Exception:  # noqa: BLE001 - reporting must never raise into the logging call
            self.handleError(record)


def crash_of(record: logging.LogRecord) -> str | None:
    """What crashed and why (one line), when ``record`` reports a crash; else None."""
    text = str(record.msg)
    exc = record.exc_info[1] if record.exc_info else None
    if "Crashed reason=" in text:  # mode.Service.crash: "[^--Agent*: NAME]: Crashed reason=%r"
        reason = record.args[0] if isinstance(record.args, tuple) and record.args else exc
        if isinstance(reason, asyncio.CancelledError):
            return None
        where = text.split("]:", 1)[0].lstrip("[^-") if text.startswith("[") else record.name
        return f"{where} crashed: {_describe(reason)}"
    if record.name == "asyncio" and record.levelno >= logging.ERROR:
        # an exception nobody handled ("Task exception was never retrieved", "Exception in
        # callback …"); asyncio's other errors (an unclosed client found at exit) are leaks, not crashes
        if exc is None or isinstance(exc, asyncio.CancelledError):
            return None
        lines = record.getMessage().splitlines()
        task = next((m.group(1) for line in lines[1:] if (m := _CORO.search(line))), None)
        if task is not None and _AIOKAFKA_TASK.search(lines[1] if len(lines) > 1 else "") and _connection_lost(exc):
            # a connection aiokafka closed under one of its own fire-and-forget requests (a
            # fetch or a leave-group racing close() or a reconnect): the client goes on or is
            # stopping; conservation and the run's checks judge what that cost, not this line
            return None
        first = lines[0] if lines else "asyncio error"
        return f"{first}{f' ({task})' if task else ''}: {_describe(exc)}"
    return None


# asyncio's task repr: "<Task finished name='Task-5' coro=<Fetcher._proc_fetch_request() done, defined at …/aiokafka/…>"
_CORO = re.compile(r"coro=<([\w.<>]+)\(")
_AIOKAFKA_TASK = re.compile(r"defined at [^>]*[/\\]aiokafka[/\\]")


def _connection_lost(exc: BaseException) -> bool:
    from aiokafka.errors import KafkaConnectionError

    return isinstance(exc, KafkaConnectionError | ConnectionError)


def _describe(exc: Any) -> str:
    if not isinstance(exc, BaseException):
        return repr(exc)
    text = " ".join(str(exc).split())  # one line: Faust's messages span several
    if len(text) > 400:
        text = text[:399] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def report_crashes(status: Any) -> None:
    """Report every crash inside this process as a ``crashed`` line on ``status`` (a
    :class:`~exchange.runner.status.StatusWriter`), so the run fails with the reason although the
    process lives on: crashed Faust/mode services, agents, tasks and timers, unhandled
    asyncio task exceptions, and exceptions that end a thread.

    Idempotent; call it again after a framework reset the root logger's handlers (Faust's
    worker does when it sets up logging).
    """
    root = logging.getLogger()
    if not any(isinstance(h, _CrashReporter) for h in root.handlers):
        root.addHandler(_CrashReporter(status.write))
    if not getattr(threading.excepthook, "_reports_crashes", False):
        previous = threading.excepthook

        def excepthook(args: threading.ExceptHookArgs) -> None:
            if args.exc_type is not SystemExit:
                thread = args.thread.name if args.thread is not None else "a thread"
                status.write(Crashed(message=f"thread {thread} crashed: {_describe(args.exc_value)}"))
            previous(args)

        excepthook._reports_crashes = True  # type: ignore[attr-defined]
        threading.excepthook = excepthook
