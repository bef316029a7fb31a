"""How busy the machine is around a timing, for a bench's header.

The load average alone misleads here: it is a decaying mean, so right after
other jobs are stopped (SIGSTOP, to time a run alone) it still counts them for
minutes. The header gives the runnable count sampled now and how many
processes are stopped next to it.
"""

import os
import time


def runnable_now(samples: int = 10, interval: float = 0.05) -> float:
    """Mean of ``procs_running`` (/proc/stat) over a short window; the reading
    process itself counts as one."""
    total = 0
    for _ in range(samples):
        with open("/proc/stat") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("procs_running"))
        time.sleep(interval)
    return total / samples


def stopped_processes() -> int:
    """Processes in state T (stopped by a signal)."""
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the process ended while being read
        count += state == "T"
    return count


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return (f"runnable now {runnable_now():.1f} (this process included), "
            f"{stopped_processes()} processes stopped; load average {one:.2f} {five:.2f} {fifteen:.2f} "
            "(a decaying mean that still counts jobs stopped in the last minutes)")
