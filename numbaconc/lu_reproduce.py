"""``numbaconc reproduce cifar10-lu``: the label-uncertainty setting of Zhang
and Evans (ICLR 2022) on CIFAR-10 with CIFAR-10H, seeded and under holdout.

Only the 10,000 CIFAR-10 test images carry soft labels. Their code splits
them 50/50 (fit / report) with an unseeded permutation, 3 trials. Here each
seed s writes a view (numbaconc.lu.write_view): train = a seeded half of the
test images, test = the other half; ``holdout`` then carves its validation
split (20 %) from the train half with the same seed, so fit / validation /
report = 40 / 10 / 50 % of the images, and test figures carry Clopper-Pearson
intervals. Rows are cached by digest in ``results.json`` like every
reproduce target (a rerun skips finished rows).

Rows, per seed: their setting (l-inf cubes eps = 8/255, T = 10; l2 balls
eps = 0.5, T = 5; alpha = 0.05, delta = 0.05, gamma = 0.17), each with and
without the constraint; and the alpha sweep (l-inf cubes 8/255, T = 10,
alpha from 0.01 to 0.15) with and without it.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from pathlib import Path

import numpy as np

from . import datasets, lu
from .datasets import atomic_path
from .errors import NumbaconcError
from .reproduction import RowSpec, _opts

SEEDS = (0, 1, 2)
ALPHAS = (0.01, 0.03, 0.05, 0.07, 0.09, 0.11, 0.13, 0.15)
QUICK_ALPHAS = (0.03, 0.05, 0.1)
SETTING = dict(alpha=0.05, delta=0.05, gamma=lu.GAMMA_2022)
CUBES = dict(metric="linf", epsilon=8 / 255, epsilon_text="8/255", clusters=10)
BALLS = dict(metric="l2", epsilon=0.5, epsilon_text="0.5", clusters=5)
FIT_FRACTION = 0.5
SOURCES = ("cifar-10/cifar10.npz", "cifar-10h")


def dataset_name(seed: int) -> str:
    return f"cifar10-lu-seed{seed}"


def plan(seed: int, lu_digest: str, *, quick: bool = False) -> list[RowSpec]:
    """Their setting (with and without LU) and the alpha sweep for one seed's view."""
    rows = []
    gamma = SETTING["gamma"]
    for gamma_opt in (gamma, None):
        lu_opt = lu_digest if gamma_opt is not None else None
        for setting, family in ((CUBES, "cubes"), (BALLS, "balls")):
            rows.append(RowSpec(
                dataset=dataset_name(seed), metric=setting["metric"], alpha=SETTING["alpha"],
                epsilon=setting["epsilon"], epsilon_text=setting["epsilon_text"], family=family,
                protocol="holdout", group="setting",
                options=_opts(clusters=setting["clusters"], delta=SETTING["delta"],
                              gamma=gamma_opt, lu=lu_opt)))
        for alpha in (QUICK_ALPHAS if quick else ALPHAS):
            rows.append(RowSpec(
                dataset=dataset_name(seed), metric="linf", alpha=alpha, epsilon=CUBES["epsilon"],
                epsilon_text=CUBES["epsilon_text"], family="cubes", protocol="holdout",
                group="sweep",
                options=_opts(clusters=CUBES["clusters"], delta=SETTING["delta"], gamma=gamma_opt,
                              lu=lu_opt)))
    # the sweep's alpha = 0.05 rows are the setting's cubes rows: same key, run once
    unique = {}
    for r in rows:
        unique.setdefault(r.key, r)
    return list(unique.values())


class Sources:
    """The CIFAR-10 test split and CIFAR-10H under ``data_dir``, loaded once
    and only if some view is not in the cache yet."""

    def __init__(self, data_dir: Path):
        self.paths = [Path(data_dir) / rel for rel in SOURCES]
        missing = [str(p) for p in self.paths if not p.exists()]
        if missing:
            raise NumbaconcError(f"cifar10-lu needs {', '.join(missing)} (--data-dir)")
        files = [self.paths[0]] + sorted(self.paths[1].glob("*.npy"))
        self.checksum = datasets.file_sha256(files)
        self._loaded = None

    @property
    def loaded(self) -> dict:
        if self._loaded is None:
            self._loaded = lu.cifar10h_lu(self.paths[1], self.paths[0])
        return self._loaded

    def agreement(self) -> float:
        """Share of test images whose human majority class is the CIFAR-10
        label (reads only the labels, not the images)."""
        if self._loaded is not None:
            return self._loaded["agreement"]
        with np.load(self.paths[0]) as npz:
            y = np.asarray(npz["y_test"]).reshape(-1)
        return float((lu.load_cifar10h(self.paths[1])["probs"].argmax(axis=1) == y).mean())

    def lu_vector(self) -> tuple[np.ndarray, Path]:
        """The LU vector of the test split, written to the cache once."""
        out = datasets.cache_dir() / f"cifar10h-lu-{self.checksum[:16]}.npy"
        if not out.is_file():
            lu.write_lu(out, self.loaded["lu"])
        return lu.load_lu(out, 10000, "CIFAR-10 test"), out

    def view(self, seed: int):
        out = datasets.cache_dir() / f"cifar10h-view-{self.checksum[:16]}-seed{seed}.h5"
        datasets.cached_import(out, lambda path: lu.write_view(
            path, self.loaded, seed=seed, fit_fraction=FIT_FRACTION, name=dataset_name(seed)))
        return datasets.open_dataset(out)


def run(runner, data_dir: Path, *, seeds=SEEDS, quick: bool = False, report_only: bool = False,
        log=print, progress_for=None) -> dict:
    """Run (or, ``report_only``, only verify) every row; returns the agreement
    figure and the LU summary for the report."""
    if quick:  # one seed, three alphas: a smoke run
        seeds = seeds[:1]
    src = Sources(data_dir)
    vector, lu_path = src.lu_vector()
    digest = datasets.file_sha256([lu_path])[:16]  # part of every constrained row's key
    for seed in seeds:
        ds = src.view(seed)
        with ds:
            runner.seed = seed
            runner.weights = lu.LabelWeights.from_file(ds, lu_path, SETTING["gamma"])
            if progress_for is not None:
                runner.progress = progress_for
            if not report_only:
                runner.run_all(plan(seed, digest, quick=quick), ds, f"<view seed {seed}>")
            runner.verify_rows(dataset_name(seed), ds)
    return dict(lu_mean=float(vector.mean()), lu_share=float((vector >= SETTING["gamma"]).mean()),
                agreement=src.agreement(), seeds=list(seeds))


# ------------------------------------------------------------------- report


def _with_lu(row) -> bool:
    return row["spec"]["options"].get("gamma") is not None


def _summary(rows: list[dict]) -> dict:
    """Mean ± std over seeds of the test figures, the span of the per-seed
    95 % intervals, how many seeds had test risk >= alpha, mean LU; and the
    frontier's reading at alpha (numbaconc.frontier) over the seeds that have
    one, with the reasons of those that do not."""
    test = [r["test"] for r in rows]
    adv = np.array([t["adv_risk"] for t in test])
    risk = np.array([t["risk"] for t in test])
    lu_test = [t.get("mean_lu") for t in test if t.get("mean_lu") is not None]
    lu_fit = [r["train"].get("mean_lu") for r in rows if r["train"].get("mean_lu") is not None]
    read = [t for t in test if t.get("adv_risk_at_alpha") is not None]
    at = np.array([t["adv_risk_at_alpha"] for t in read])
    unread = sorted({(r.get("frontier") or {}).get("reading", {}).get("note") or "no frontier"
                     for r in rows if r["test"].get("adv_risk_at_alpha") is None})
    return dict(n=len(rows), risk=risk.mean(), risk_std=risk.std(), adv=adv.mean(),
                adv_std=adv.std(), lo=min(t["adv_risk_ci"][0] for t in test),
                hi=max(t["adv_risk_ci"][1] for t in test),
                valid=sum(r["valid"] for r in rows),
                at_n=len(read), at=float(at.mean()) if len(read) else None,
                at_std=float(at.std()) if len(read) else None,
                at_lo=min((t["adv_risk_at_alpha_ci"][0] for t in read), default=None),
                at_hi=max((t["adv_risk_at_alpha_ci"][1] for t in read), default=None),
                unread=unread,
                lu=float(np.mean(lu_test)) if lu_test else None,
                lu_fit=float(np.mean(lu_fit)) if lu_fit else None,
                fit_risk=float(np.mean([r["train"]["risk"] for r in rows])),
                balls=float(np.mean([r["params"]["balls_used"] for r in rows])),
                stopped=sum(bool(r["params"].get("stopped")) for r in rows))


def _at_cell(s: dict) -> str:
    """The reading at alpha: mean ± std over the seeds [span of their 95 % intervals]."""
    if not s["at_n"]:
        return "no reading"
    seeds = "" if s["at_n"] == s["n"] else f" ({s['at_n']}/{s['n']} seeds)"
    return (f"**{100 * s['at']:.2f} ± {100 * s['at_std']:.2f}** [{100 * s['at_lo']:.2f}, "
            f"{100 * s['at_hi']:.2f}]{seeds}")


def _cell(s: dict) -> str:
    """The fitted region's own test risk / adversarial risk [span of its intervals]."""
    return (f"{100 * s['risk']:.2f} ± {100 * s['risk_std']:.2f} / {100 * s['adv']:.2f} ± "
            f"{100 * s['adv_std']:.2f} [{100 * s['lo']:.2f}, {100 * s['hi']:.2f}]")


def _groups(rows, group):
    """Rows by (family, metric, alpha, with LU); the sweep also takes the
    setting's cubes rows (alpha = 0.05: one row serves both)."""
    out = defaultdict(list)
    for r in rows:
        in_sweep = r["spec"]["family"] == "cubes"
        if (r["spec"]["group"] == group or (group == "sweep" and in_sweep)) and "error" not in r:
            out[(r["spec"]["family"], r["spec"]["metric"], r["spec"]["alpha"], _with_lu(r))].append(r)
    return out


def write_lu_report(rows: list[dict], out_dir: Path, *, command: str, versions: dict,
                    wall_seconds: float, info: dict) -> Path:
    rows = [r for r in rows if r["spec"]["dataset"].startswith("cifar10-lu-seed")]
    failed = [r for r in rows if "error" in r]
    lines = ["# numbaconc: label uncertainty on CIFAR-10 (Zhang and Evans, ICLR 2022)", "",
             f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by "
             f"`{command}`. numbaconc {versions.get('numbaconc')}, numba {versions.get('numba')}, "
             f"numpy {versions.get('numpy')}; wall time of this run {wall_seconds:.0f} s (rows "
             "computed by an earlier run are reused).", "",
             "LU(x) = 1 − (p_y(x) − max_{k≠y} p_k(x)) ∈ [0, 2] from the CIFAR-10H soft labels, y the "
             f"CIFAR-10 label; mean LU of the 10,000 test images {info['lu_mean']:.4f}, "
             f"{100 * info['lu_share']:.2f} % of them at LU ≥ γ = {SETTING['gamma']:g}"
             + (f"; the human majority class equals the CIFAR-10 label on "
                f"{100 * info['agreement']:.2f} % of the images" if info.get("agreement") else "")
             + ".", "",
             "Data: per seed s ∈ {" + ", ".join(map(str, info["seeds"])) + "}, a view whose train "
             "split is a seeded half of the CIFAR-10 test images and whose test split is the other "
             "half (`numbaconc data import cifar10h … --view V.h5 --seed s`); under `holdout` the "
             "validation split (20 %) is carved from the train half with the same seed: fit / "
             "validation / report = 40 / 10 / 50 % (their code: 50 / 50, unseeded, no selection "
             "split). The constrained greedy skips every candidate ball or cube whose newly covered "
             "fitting points have mean LU < γ, so the region's mean LU on the fitting set is ≥ γ; "
             "when no candidate meets γ it stops (their code appends the previous ball again).", "",
             "**At α** (the headline): the test adversarial risk of the region family at test risk "
             "exactly α, read off a frontier the fitting split fixes (numbaconc.frontier: the "
             "greedy's own prefixes, the last ball's radius running on), mean ± std over the seeds "
             "that have a reading, in percent; in brackets the span of their 95 % intervals (which "
             "cover the test sampling and the interpolation). Under the constraint the frontier "
             "keeps only prefixes whose partial last ball's newly covered fitting points have mean "
             "LU ≥ γ, so it is a reading of the constrained family; where no such member reaches α "
             "there is no reading (the reasons follow the table). An upper bound of 100.00 means that "
             "no member is certified above α on the test set (under the constraint the last cube "
             "cannot grow much past α): the reading is then an interpolation with a one-sided "
             "interval. **Region**: the fitted region's "
             "own test risk / adversarial risk, mean ± std [span of the 95 % Clopper–Pearson "
             "intervals of the adversarial risk]; it aims at the selection target, above α. "
             "`valid`: seeds whose region has test risk ≥ α. Mean LU: of the fitting / test points "
             "inside the region (the constraint binds the fitting points only).", ""]
    setting = _groups(rows, "setting")
    sweep = _groups(rows, "sweep")
    unread = {}  # reason -> rows (labels) without a reading at alpha
    lines += ["## Their setting (α = 0.05, δ = 0.05, γ = 0.17)", "",
              "| region | LU constraint | at α [95 %] | region: test risk / adv risk | valid | "
              "mean LU fit / test | balls used | stopped early |", "|---|---|---|---|---|---|---|---|"]
    for (family, metric, alpha, with_lu), items in sorted(setting.items()):
        s = _summary(items)
        label = ("l-inf cubes, ε = 8/255, T = 10" if family == "cubes"
                 else "l2 balls, ε = 0.5, T = 5")
        constraint = "γ = 0.17" if with_lu else "none"
        _note_unread(unread, s, f"{label}, {constraint}")
        lines.append(f"| {label} | {constraint} | {_at_cell(s)} | {_cell(s)} | "
                     f"{s['valid']}/{s['n']} | {_lu_text(s)} | {s['balls']:.1f} | {s['stopped']} |")
    lines += ["", "## Adversarial risk against α (l-inf cubes, ε = 8/255, T = 10)", "",
              "| α | without LU: at α | region (valid) | with LU (γ = 0.17): at α | region (valid) | "
              "mean LU fit / test (with) | fit risk (with) | stopped early (with) |",
              "|---|---|---|---|---|---|---|---|"]
    for alpha in sorted({k[2] for k in sweep}):
        free = sweep.get(("cubes", "linf", alpha, False))
        cons = sweep.get(("cubes", "linf", alpha, True))
        cells = []
        for items, extra in ((free, False), (cons, True)):
            if not items:
                cells += ["–", "–"] + (["–", "–", "–"] if extra else [])
                continue
            st = _summary(items)
            _note_unread(unread, st, f"α = {alpha:g}, {'γ = 0.17' if extra else 'no LU'}")
            cells += [_at_cell(st), f"{_cell(st)} ({st['valid']}/{st['n']})"]
            if extra:
                cells += [_lu_text(st), f"{100 * st['fit_risk']:.2f}", f"{st['stopped']}/{st['n']}"]
        lines.append(f"| {alpha:g} | " + " | ".join(cells) + " |")
    if unread:
        lines += ["", "No reading at α (per row, the frontier's `reading.note`):", ""]
        lines += [f"- {'; '.join(dict.fromkeys(where))}: {why}" for why, where in unread.items()]
    short = sorted(k[2] for k, items in sweep.items()
                   if k[3] and all(r["params"].get("stopped") for r in items))
    if short:
        lines += ["", f"With the constraint, at α ∈ {{{', '.join(f'{a:g}' for a in short)}}} the "
                  "greedy stopped short on every seed: no cube covering the required number of new "
                  "fitting points (⌈need / (T − t)⌉ up to need) has mean LU ≥ γ, so the region "
                  "covers less than α and its own figures are no estimate at α. The 2022 code "
                  "appends the previous ball again at this point and counts its points twice."]
    if sweep:
        try:
            path = plot_lu_sweep(sweep, out_dir / "cifar10-lu-alpha.png")
            lines += ["", f"![adversarial risk against alpha]({path.name})"]
        except NumbaconcError as exc:
            lines += ["", f"(no plot: {exc})"]
    if failed:
        lines += ["", "## Rows that failed", ""]
        lines += [f"- {r.get('command', r['key'])}: {r['error']}" for r in failed]
    lines += ["", "## Commands (one per row; `<view seed s>` is the seed's view file)", "", "```"]
    lines += sorted({r["command"] for r in rows if r.get("command") is not None})
    lines += ["```", ""]
    out = Path(out_dir) / "report.md"
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return out


def _note_unread(unread: dict, s: dict, where: str) -> None:
    for why in s["unread"]:
        unread.setdefault(why, []).append(where)


def _lu_text(s) -> str:
    if s is None or s["lu"] is None:
        return "–"
    return f"{s['lu_fit']:.3f} / {s['lu']:.3f}"


def plot_lu_sweep(sweep: dict, out: Path) -> Path:
    """Test adversarial risk against alpha, with and without the constraint:
    the reading at alpha (mean over the seeds that have one, bars = std, band
    = span of the 95 % intervals; hollow where some seed has none), and the
    fitted region's own figure (thin dashed)."""
    from .plots import _pyplot, _save

    Figure = _pyplot()
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    top = 0.0  # the y range: every figure but an uninformative upper bound of 100 %
    for with_lu, colour, label in ((False, "tab:blue", "cubes, no LU constraint"),
                                   (True, "tab:red", f"cubes, mean LU ≥ {SETTING['gamma']:g}")):
        alphas = sorted(k[2] for k in sweep if k[3] == with_lu)
        if not alphas:
            continue
        stats = [_summary(sweep[("cubes", "linf", a, with_lu)]) for a in alphas]
        top = max([top] + [100 * v for s in stats for v in (s["adv"], s["at"], s["at_hi"])
                           if v is not None and v < 1.0])
        xs = np.array(alphas) * 100
        ax.plot(xs, np.array([s["adv"] for s in stats]) * 100, "--", color=colour, linewidth=0.8,
                alpha=0.7, label=f"{label}: fitted region")
        read = np.array([s["at_n"] > 0 for s in stats])
        if not read.any():
            continue
        st = [s for s, r in zip(stats, read) if r]
        ys = np.array([s["at"] for s in st]) * 100
        ax.errorbar(xs[read], ys, yerr=np.array([s["at_std"] for s in st]) * 100, fmt="-",
                    color=colour, label=f"{label}: at α", capsize=3)
        whole = np.array([s["at_n"] == s["n"] for s in st])
        ax.plot(xs[read][whole], ys[whole], "o", color=colour)
        ax.plot(xs[read][~whole], ys[~whole], "o", mfc="white", color=colour)
        ax.fill_between(xs[read], [100 * s["at_lo"] for s in st], [100 * s["at_hi"] for s in st],
                        color=colour, alpha=0.15, linewidth=0)
    ax.plot([1, 15], [1, 15], ":", color="black", linewidth=0.8, label="adv risk = α")
    ax.plot([], [], "o", mfc="white", color="gray", label="hollow: no reading at α on some seed")
    ax.set_ylim(0, 1.15 * max(top, 15.0))  # a band running off the top: upper bound 100 %
    ax.set_xlabel("α (%)")
    ax.set_ylabel("test adversarial risk (%), ε = 8/255")
    ax.set_title("CIFAR-10 (CIFAR-10H labels), l-inf cubes, T = 10")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out)
