"""The operator's side of the audit process (aidp.audit.worker): start it, hand it its request,
log what it logs, wait for its summary; kill it when it outlives its time or the caller is
cancelled (the operator stopping, the leadership lost)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections import deque
from collections.abc import Callable, Sequence

from aidp.audit import protocol

log = logging.getLogger("aidp.audit")

TAIL_LINES = 20  # of the process's stderr, quoted when it fails
LINE_LIMIT = 1 << 20  # a log line (a traceback) may be long; StreamReader's default is 64 KiB
COMMAND: tuple[str, ...] = (sys.executable, "-m", protocol.MODULE)


class WorkerError(RuntimeError):
    """The audit process failed, hung, or printed no summary; the message says which, and ends
    with the last lines it wrote on stderr."""


def forward(line: str) -> None:
    """Log one line of the process's stderr as the operator's own record."""
    level, name, message = protocol.parse_log_line(line)
    logging.getLogger(name).log(level, "%s", message)


def exit_reason(returncode: int) -> str:
    """How the process ended, in words (a negative code is the signal that killed it)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    hint = (
        " (out of memory? the container's memory limit covers the audit process too)"
        if name == "SIGKILL"
        else ""
    )
    return f"was killed by {name}{hint}"


def failure(what: str, tail: Sequence[str]) -> WorkerError:
    lines = [protocol.parse_log_line(line)[2] for line in tail]
    text = "\n".join(lines)[-4000:]
    return WorkerError(f"{what}; its last output:\n{text}" if text else f"{what}; it wrote nothing on stderr")


async def run(
    request: protocol.Request,
    time_limit: float,
    *,
    command: Sequence[str] = COMMAND,
    on_line: Callable[[str], None] = forward,
) -> protocol.Summary:
    """Run one audit process to its end; its Summary, or WorkerError. The process is killed when
    it runs longer than `time_limit` seconds, and when this coroutine is cancelled."""
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=LINE_LIMIT,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    async def feed() -> None:
        try:
            stdin.write(protocol.encode_request(request))
            await stdin.drain()
            stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it ended before reading: its exit code and stderr say why

    async def pump() -> None:
        while True:
            try:
                raw = await stderr.readline()
            except ValueError:  # a line over LINE_LIMIT: what was read of it is dropped
                continue
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\n")
            tail.append(line)
            on_line(line)

    try:
        async with asyncio.timeout(time_limit):
            out, _, _, returncode = await asyncio.gather(stdout.read(), feed(), pump(), proc.wait())
    except TimeoutError:
        await _kill(proc)
        raise failure(f"the audit process ran longer than {time_limit:.0f}s and was killed", tail) from None
    except BaseException:  # cancelled: the process must not go on writing for a former leader
        await _kill(proc)
        raise
    if returncode != 0:
        raise failure(f"the audit process {exit_reason(returncode)}", tail)
    try:
        return protocol.decode_summary(out)
    except ValueError as err:
        raise failure(str(err), tail) from None


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await asyncio.shield(proc.wait())
