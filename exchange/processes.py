"""Child processes that never outlive the process that started them.

Every process the simulator starts (the broker, router workers, producers, consumers)
is spawned here: with ``PR_SET_PDEATHSIG`` on Linux, so a SIGKILLed parent still takes
its children down, and from a thread that lives as long as the process, because
PDEATHSIG fires when the *thread* that forked the child exits, not the process (an
``asyncio.to_thread`` worker would otherwise kill the child when it is recycled).
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

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

