"""Run one numbaconc command and record each stage's CPU seconds (user + sys
of the whole process, all threads: ``time.process_time``) next to its wall
seconds, from the start / done lines of the ``numbaconc.stages`` logger.

    python bench/stage_cpu.py OUT.json numbaconc-arguments...

e.g. ``python bench/stage_cpu.py cpu.json --memory 1500M measure MNIST-1M.h5 ...``.
OUT.json gets one row per stage name (occurrences, CPU and wall seconds
summed; nested stages count towards their parents too) and the process's
total CPU seconds. On a shared machine CPU seconds are a scaling measure,
not a timing of record.
"""

from __future__ import annotations

import json
import logging
import sys
import time


class StageCpu(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.open: dict = {}
        self.rows: dict = {}

    def emit(self, record):
        message = record.msg
        if not record.args:
            return
        name = record.args[0]
        now = (time.process_time(), time.perf_counter())
        if message.startswith("start "):
            self.open.setdefault(name, []).append(now)
        elif message.startswith("done ") and self.open.get(name):
            cpu0, wall0 = self.open[name].pop()
            row = self.rows.setdefault(name, dict(stage=name, count=0, cpu_seconds=0.0,
                                                  wall_seconds=0.0))
            row["count"] += 1
            row["cpu_seconds"] += now[0] - cpu0
            row["wall_seconds"] += now[1] - wall0
            print(f"stage {name}: {now[0] - cpu0:.1f} CPU-s, {now[1] - wall0:.1f} s", file=sys.stderr,
                  flush=True)


def main(out: str, args: list[str]) -> int:
    import signal

    from numbaconc_cli.main import app

    def stop(signum, frame):  # SIGTERM: still write what was measured
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)

    handler = StageCpu()
    log = logging.getLogger("numbaconc.stages")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    log.propagate = False
    code = 0
    try:
        result = app(args, standalone_mode=False)
        code = result if isinstance(result, int) else 0  # click returns an Exit's code
    except SystemExit as exc:  # typer.Exit from a handled error
        code = int(exc.code or 0)
    finally:
        total = time.process_time()
        with open(out, "w") as f:
            json.dump(dict(command=["numbaconc"] + args, total_cpu_seconds=total,
                           stages=list(handler.rows.values())), f, indent=2)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
