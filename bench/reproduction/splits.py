"""Held-out test risk over seeded validation splits, per family (issue 15, item 1).

Runs the installed CLI once per (row, seed):

    numbaconc measure DATA --metric M --epsilon E --alpha A --method F \
        --protocol holdout --seed S [family options] --json OUT

each seed drawing its own validation split (and k-means seeds), and tabulates
the JSON files: the achieved test risk against alpha, the selection target,
the test adversarial risk and the frontier read at alpha
(``test.adv_risk_at_alpha`` and its interval). Resumable: a (row, seed) whose
JSON exists and parses is not run again.

    export NUMBACONC_CACHE=/work/wt/cache-study
    numbaconc data import mnist ../shared/data/mnist -o $NUMBACONC_CACHE/mnist.h5
    numbaconc data import cifar10 ../shared/data/cifar-10/cifar10.npz -o $NUMBACONC_CACHE/cifar10.h5
    python bench/reproduction/splits.py run --data-dir $NUMBACONC_CACHE --dataset mnist --seeds 0-9
    python bench/reproduction/splits.py run --data-dir $NUMBACONC_CACHE --dataset cifar10 --seeds 0-9
    python bench/reproduction/splits.py table      # rewrites the table in SPLITS.md

Each run is wrapped as ``nice -n 15 memcap 4G`` (``--wrap`` to change it); its
console output, with memcap's peak line, goes to a ``.log`` next to the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "splits"
REPORT = HERE / "SPLITS.md"
BEGIN, END = "<!-- splits table: written by splits.py table -->", "<!-- end of splits table -->"


@dataclass(frozen=True)
class Row:
    """One row of the paper's tables under holdout, with reproduce's holdout options."""
    dataset: str
    metric: str
    epsilon: str
    alpha: float
    family: str
    options: tuple = ()
    tag: str = ""               # a variant of the row (other options), kept in its own files

    @property
    def name(self) -> str:
        eps = self.epsilon.replace("/", "of")
        return f"{self.dataset}-{self.metric}-{eps}-{self.family}" + (f"-{self.tag}" if self.tag else "")

    def args(self, data: str, seed: int, json_path: Path) -> list[str]:
        return ["measure", data, "--metric", self.metric, "--epsilon", self.epsilon,
                "--alpha", f"{self.alpha:g}", "--method", self.family, "--protocol", "holdout",
                "--seed", str(seed), *self.options, "--json", str(json_path)]


# the options reproduce plans for its holdout rows (numbaconc/reproduction.py:
# tight boxes tuned over the paper's T grid, balls with delta 0 and their T and coverage
# tuned on the validation split over a grid holding the paper's T; the earlier runs at
# the paper's T alone are the variants T20 (MNIST) and T5 (CIFAR-10))
ROWS = (
    Row("mnist", "linf", "0.3", 0.01, "halfspace"),
    Row("mnist", "linf", "0.3", 0.01, "boxes", ("--box", "tight", "--tune", "--t-grid", "5,10,15,20")),
    Row("mnist", "l2", "3.16", 0.01, "balls", ("--tune", "--t-grid", "10,20,40")),
    Row("mnist", "l2", "3.16", 0.01, "halfspace"),
    Row("cifar10", "linf", "8/255", 0.05, "halfspace"),
    Row("cifar10", "linf", "8/255", 0.05, "boxes",
        ("--box", "tight", "--tune", "--t-grid", "10,20,40,75")),
    Row("cifar10", "l2", "0.4905", 0.05, "balls", ("--tune", "--t-grid", "5,10,20")),
)


def json_path(row: Row, seed: int) -> Path:
    return OUT / f"{row.name}-seed{seed}.json"


def load(path: Path) -> dict | None:
    """The run's JSON, or None if it is missing or does not parse (then it is rerun)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def parse_seeds(text: str) -> list[int]:
    seeds = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        seeds.extend(range(int(a), int(b or a) + 1))
    return seeds


def cli() -> str:
    found = shutil.which("numbaconc") or str(Path(sys.executable).with_name("numbaconc"))
    return found


def run(args) -> None:
    rows = [r for r in ROWS if (not args.dataset or r.dataset == args.dataset)
            and (not args.family or r.family in args.family.split(","))
            and (not args.metric or r.metric == args.metric)]
    if args.options is not None or args.data:
        if not args.tag:
            raise SystemExit("--options and --data need a --tag (variants are kept in their own files)")
    if args.tag:
        rows = [replace(r, tag=args.tag, options=r.options if args.options is None
                        else tuple(shlex.split(args.options))) for r in rows]
    OUT.mkdir(exist_ok=True)
    wrap = shlex.split(args.wrap)
    order = [(s, r) for s in parse_seeds(args.seeds) for r in rows]  # seed-major: early seeds first
    for seed, row in order:
        path = json_path(row, seed)
        if load(path) is not None:
            continue
        data = args.data or str(Path(args.data_dir) / f"{row.dataset}.h5")
        cmd = [*wrap, cli(), *row.args(data, seed, path)]
        if path.exists():  # a damaged JSON: rerun over it
            cmd.append("--force")
        t0 = time.time()
        print(f"{time.strftime('%H:%M:%S')} {row.name} seed {seed} ...", flush=True)
        with open(path.with_suffix(".log"), "w") as log:
            log.write(" ".join(shlex.quote(c) for c in cmd) + "\n")
            log.flush()
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
            log.write(f"wall {time.time() - t0:.1f} s (shared machine), exit {rc}\n")
        print(f"    exit {rc}, {time.time() - t0:.0f} s", flush=True)


# ----------------------------------------------------------------- tabulating


def target(d: dict) -> float:
    """The selection target alpha + z sqrt(alpha (1 - alpha) (1/n_val + 1/n_test)),
    z = 1.645 (``Concentration.selection_alpha``), from the sizes in the JSON."""
    a = d["alpha"]
    return a + 1.645 * math.sqrt(a * (1 - a) * (1 / d["validation"]["n"] + 1 / d["test"]["n"]))


def choice(d: dict) -> str:
    p = d.get("params", {})
    if d["family"] == "boxes":
        return f"T={p.get('clusters')}, q={p.get('q', float('nan')):.3f}"
    if d["family"] == "balls":
        tuned = f"T={p.get('clusters')} of {p.get('t_grid')}, " if p.get("tuned") else ""
        return f"{tuned}{p.get('balls_used')} balls"
    return f"pc {p.get('component')}, e {p.get('power', 0):g}"


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def summary(row: Row, runs: dict[int, dict]) -> dict:
    a = row.alpha
    seeds = sorted(runs)
    risk = [runs[s]["test"]["risk"] for s in seeds]
    val = [runs[s]["validation"]["risk"] for s in seeds]
    # the whole training set: fitting and validation points pooled
    pooled = [(runs[s]["train"]["risk"] * runs[s]["train"]["n"]
               + runs[s]["validation"]["risk"] * runs[s]["validation"]["n"])
              / (runs[s]["train"]["n"] + runs[s]["validation"]["n"]) for s in seeds]
    adv = [runs[s]["test"]["adv_risk"] for s in seeds]
    at = [runs[s]["test"].get("adv_risk_at_alpha") for s in seeds]
    ci = [runs[s]["test"].get("adv_risk_at_alpha_ci") for s in seeds]
    have = [x for x in at if x is not None]
    at_mean = statistics.mean(have) if have else None
    covers = sum(1 for x, c in zip(at, ci) if x is not None and c and c[0] <= at_mean <= c[1])
    sd = statistics.stdev if len(seeds) > 1 else (lambda v: 0.0)
    return dict(
        seeds=seeds, n=len(seeds), target=statistics.mean(target(runs[s]) for s in seeds),
        n_val=runs[seeds[0]]["validation"]["n"], n_test=runs[seeds[0]]["test"]["n"],
        n_train=runs[seeds[0]]["validation"]["n"] + runs[seeds[0]]["train"]["n"],
        val_mean=statistics.mean(val), risk=risk, val=val, pooled=pooled,
        risk_mean=statistics.mean(risk), risk_sd=sd(risk), risk_min=min(risk), risk_max=max(risk),
        at_least_alpha=sum(r >= a for r in risk), adv_mean=statistics.mean(adv), adv_sd=sd(adv),
        at_mean=at_mean, at_sd=sd(have) if len(have) > 1 else None, at_n=len(have),
        at_min=min(have) if have else None, at_max=max(have) if have else None, covers=covers,
        ci_width=statistics.median(c[1] - c[0] for c in ci if c) if any(ci) else None,
        ci_open=sum(1 for c in ci if c and (c[0] <= 0.0 or c[1] >= 0.5)),
        choices=[choice(runs[s]) for s in seeds])


def collect() -> dict[Row, dict[int, dict]]:
    """Every parsed JSON under splits/, by row (variants as rows with their tag) and seed."""
    found: dict[Row, dict[int, dict]] = {}
    for base in ROWS:
        for path in sorted(OUT.glob(f"{base.name}-*seed*.json")):
            tag, _, seed = path.stem[len(base.name) + 1:].rpartition("-")
            d = load(path)
            if d is None or not seed.startswith("seed") or not seed[4:].isdigit():
                continue
            row = base if not tag else replace(base, tag=tag, options=())
            found.setdefault(row, {})[int(seed[4:])] = d
    return found


HEADER = ("| dataset | metric, ε, α | family | splits | target | val. risk, mean | "
          "**test risk** mean (sd) [min, max] | ≥ α | test adv. risk mean (sd) | "
          "**adv. risk at α** mean (sd) [min, max] | its CI covers the mean | median CI width | CIs open |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def summary_line(row: Row, s: dict) -> str:
    at = ("–" if s["at_mean"] is None else
          f"{pct(s['at_mean'])} ({pct(s['at_sd'] or 0)}) [{pct(s['at_min'])}, {pct(s['at_max'])}]")
    width = "–" if s["ci_width"] is None else pct(s["ci_width"])
    family = row.family + (f" ({row.tag})" if row.tag else "")
    return (f"| {row.dataset} | {row.metric}, {row.epsilon}, {row.alpha:g} | {family} | "
            f"{s['n']} | {pct(s['target'])} | {pct(s['val_mean'])} | "
            f"{pct(s['risk_mean'])} ({pct(s['risk_sd'])}) [{pct(s['risk_min'])}, {pct(s['risk_max'])}] | "
            f"{s['at_least_alpha']} / {s['n']} | {pct(s['adv_mean'])} ({pct(s['adv_sd'])}) | {at} | "
            f"{s['covers']} / {s['at_n']} | {width} | {s['ci_open']} |")


def diagnosis(row: Row, s: dict, runs: dict[int, dict]) -> list[str]:
    """For a row under alpha in more than 10 % of its splits: the validation-test
    gap against its binomial spread, and the target that would have lifted
    90 % of the splits to alpha if each region's test risk moved with it."""
    a, n = row.alpha, s["n"]
    if n - s["at_least_alpha"] <= max(1, n // 10):
        return []
    d0 = runs[s["seeds"][0]]
    sd_diff = math.sqrt(a * (1 - a) * (1 / s["n_val"] + 1 / s["n_test"]))
    gaps = [v - r for v, r in zip(s["val"], s["risk"])]
    need = math.ceil(0.9 * n)                      # splits that must reach alpha
    short = sorted(s["risk"])[n - need]            # the lowest test risk among those
    lift = max(0.0, a - short)
    z = (s["target"] + lift - a) / sd_diff
    return [f"- {row.name}: {n - s['at_least_alpha']} of {n} splits under α. Validation "
            f"{s['n_val']} points (val. fraction {d0['inputs'].get('val_fraction')}), test "
            f"{s['n_test']}; validation − test risk {pct(statistics.mean(gaps))} points on "
            f"average (sd {pct(statistics.stdev(gaps) if n > 1 else 0)}; the binomial sd of "
            f"that difference for one fixed region at α is {pct(sd_diff)}). "
            f"For {need} of {n} splits at α the test risks would have to rise by "
            f"{pct(lift)} points: a target of {pct(s['target'] + lift)} % "
            f"(z = {z:.2f} instead of 1.645), if each region's test risk moved with its target."]


def tables() -> str:
    found = collect()
    main = {r: summary(r, runs) for r, runs in found.items() if not r.tag}
    variants = {r: runs for r, runs in found.items() if r.tag}
    lines = ["Held-out (`--protocol holdout`), one validation split per seed (20 % of the "
             "training set unless a variant says otherwise); figures in % of the test set "
             "(10,000 points).", "", *HEADER]
    lines += [summary_line(r, s) for r, s in main.items()]
    lines += ["", "Per split (seed: validation risk / whole training set's risk, fitting and "
              "validation points pooled (not for boxes: in-sample) → test risk, the choice):", ""]
    for row, s in [*main.items(), *((r, summary(r, runs)) for r, runs in variants.items())]:
        # boxes are grown around their fitting points, so their fitting-set risk
        # is in-sample (far below alpha): only the validation risk compares
        pooled = s["pooled"] if row.family != "boxes" else [None] * s["n"]
        per = "; ".join(f"{seed}: {pct(v)}{'' if u is None else ' / ' + pct(u)} → {pct(r)}"
                        f"{' †' if r < row.alpha else ''} ({c})"
                        for seed, v, u, r, c in zip(s["seeds"], s["val"], pooled, s["risk"],
                                                    s["choices"]))
        sd = statistics.stdev if s["n"] > 1 else (lambda v: 0.0)
        a = row.alpha
        diff = [r - v for r, v in zip(s["risk"], s["val"])]
        text = (f"Test minus validation risk, in points: mean {pct(statistics.mean(diff))}, sd {pct(sd(diff))} "
                f"(binomial sd at α: {pct(math.sqrt(a * (1 - a) * (1 / s['n_val'] + 1 / s['n_test'])))})")
        if row.family != "boxes":
            diff = [r - u for r, u in zip(s["risk"], s["pooled"])]
            text += (f"; test minus whole-training risk: mean {pct(statistics.mean(diff))}, sd "
                     f"{pct(sd(diff))} (binomial sd at α: "
                     f"{pct(math.sqrt(a * (1 - a) * (1 / s['n_train'] + 1 / s['n_test'])))})")
        lines.append(f"- {row.name}: {per}. {text}.")
    lines += ["", "† = test risk below α. sd: standard deviation over the splits. "
              "\"Its CI covers the mean\": in how many splits `test.adv_risk_at_alpha_ci` "
              "contains the mean of `test.adv_risk_at_alpha` over the splits. \"CIs open\": splits "
              "whose interval reaches 0 or runs past 50 % (no frontier member certified on that "
              "side of α)."]
    notes = [line for r, s in main.items() for line in diagnosis(r, s, found[r])]
    notes += [line for r, runs in variants.items() for line in diagnosis(r, summary(r, runs), runs)]
    if notes:
        lines += ["", "Rows under α in more than 1 split of 10:", "", *notes]
    if variants:
        lines += ["", "Variants (the options in each run's `.log`, first line):", "", *HEADER]
        lines += [summary_line(r, summary(r, runs)) for r, runs in variants.items()]
        lines += ["", "| variant | seed | options | val. risk | val. adv. risk | test risk | "
                  "test adv. risk | adv. risk at α [95 %] |", "|---|---|---|---|---|---|---|---|"]
        for row, runs in variants.items():
            for seed, d in sorted(runs.items()):
                v, t = d["validation"], d["test"]
                at = t.get("adv_risk_at_alpha")
                ci = t.get("adv_risk_at_alpha_ci") or [float("nan")] * 2
                at_text = "–" if at is None else f"{pct(at)} [{pct(ci[0])}, {pct(ci[1])}]"
                lines.append(f"| {row.name} | {seed} | {choice(d)} | {pct(v['risk'])} | "
                             f"{pct(v['adv_risk'])} | {pct(t['risk'])} | {pct(t['adv_risk'])} | "
                             f"{at_text} |")
    return "\n".join(lines)


def table(args) -> None:
    text = tables()
    print(text)
    if REPORT.exists():
        old = REPORT.read_text()
        if BEGIN in old and END in old:
            head, rest = old.split(BEGIN, 1)
            REPORT.write_text(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])
            return
    REPORT.write_text(f"# Held-out test risk over seeded validation splits\n\n{BEGIN}\n{text}\n{END}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the missing (row, seed) JSON files")
    r.add_argument("--data-dir", default=".", help="folder with mnist.h5 and cifar10.h5")
    r.add_argument("--data", default=None,
                   help="another dataset file for the selected rows (a variant; needs --tag)")
    r.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,3,5-7")
    r.add_argument("--dataset", choices=("mnist", "cifar10"))
    r.add_argument("--family", help="halfspace, boxes, balls or a comma list (default: all)")
    r.add_argument("--metric", choices=("linf", "l2"))
    r.add_argument("--options", default=None,
                   help="family options replacing the row's (a variant; needs --tag)")
    r.add_argument("--tag", default="", help="name of the variant, part of its file names")
    r.add_argument("--wrap", default="nice -n 15 /work/shared/tools/memcap 4G",
                   help="command prefix for each run ('' for none)")
    r.set_defaults(func=run)
    t = sub.add_parser("table", help="tabulate the JSON files into SPLITS.md")
    t.set_defaults(func=table)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
