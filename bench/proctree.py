"""CPU time, memory and CPU pinning of a whole process tree, read from /proc.

A server may be one process (ours, the sink) or a tree (the Node peer: a cluster
primary that accepts and hands sockets to its workers). Its cost is the sum over
the tree, or a 2-process server would look half as expensive as it is.

Compared with ``../shared/tools/proc_cpu.sh``, which this replaces in the benchmark:
descendants are followed to any depth, the CPU of children that already exited and
were reaped (``cutime``/``cstime``) is kept, and nothing is forked per sample, so
sampling does not itself cost the machine a bash and two pgreps every half second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """One reading of a tree."""

    cpu_s: float  # user + system, own and reaped children's, summed over the tree
    rss_kb: int  # VmRSS summed over the tree now
    hwm_kb: int  # VmHWM (each process's own peak) summed over the tree


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from the kernel's per-thread child lists."""
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = list((PROC / str(current) / "task").iterdir())
        except OSError:
            continue  # exited meanwhile
        for task in tasks:
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            todo.extend(int(child) for child in children)
    return found


def _cpu_ticks(pid: int) -> int:
    stat = (PROC / str(pid) / "stat").read_text()
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime, stime, cutime, cstime are fields 14 to 17, i.e. 11 to 14 after the name.
    return sum(int(value) for value in fields[11:15])


def _memory_kb(pid: int) -> tuple[int, int]:
    rss = hwm = 0
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return rss, hwm


def usage(pid: int) -> Usage:
    """CPU and memory of ``pid`` and all its descendants (processes that vanish while
    being read are skipped: their CPU moves to their parent's ``cutime`` when reaped)."""
    ticks = rss = hwm = 0
    for member in descendants(pid):
        try:
            ticks += _cpu_ticks(member)
            member_rss, member_hwm = _memory_kb(member)
        except (OSError, ValueError):
            continue
        rss += member_rss
        hwm += member_hwm
    return Usage(ticks / TICK, rss, hwm)


def pin(pid: int, cpus: set[int]) -> int:
    """Move every thread of the tree onto ``cpus``; returns how many threads moved.

    Pinning after start rather than with ``taskset`` at exec: Node sizes its cluster
    from the CPUs it may use, so a peer started under ``taskset -c 0`` would fork one
    worker instead of the two it is configured with. Threads created later inherit
    the affinity of the thread that creates them.
    """
    moved = 0
    for member in descendants(pid):
        try:
            tids = [int(t.name) for t in (PROC / str(member) / "task").iterdir()]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                continue
            moved += 1
    return moved
