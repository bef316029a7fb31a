"""report.md for ``numbaconc reproduce``: paper vs numbaconc, per dataset."""

from __future__ import annotations

import datetime
from collections import defaultdict
from pathlib import Path

from .datasets import atomic_path

MEANING = """\
**What the numbers mean.** For a risk level α and a budget ε, each method picks an
error region E with measure ≥ α on the data it is fitted on and reports, on the
test set, *risk* = μ̂(E) and *adversarial risk* = μ̂(E_ε) (all points within ε of
E). Any classifier whose error region has measure ≥ α has adversarial risk at least
the concentration h(μ, α, ε); a smaller adversarial risk here is a tighter
(lower) estimate of that limit. The test adversarial risk is meaningful only where
the test risk is ≥ α too (rows where it is not are marked †).
Half-spaces and balls count E_ε exactly; for boxes (ℓ∞) the counted set, the
complement of the ungrown boxes, contains E_ε, so the figure is an **upper
bound** on μ̂(E_ε). The `paper` rows count it as the 2019 code does; the `holdout`
rows count it within the pixel range [0, 1]^d, where E and the adversary's points
live: a face of a grown box that lies outside that range binds nothing, which
gives a smaller upper bound of the same μ̂(E_ε) (`--no-domain` restores the 2019
count). Intervals are 95 % Clopper–Pearson intervals of the test
proportion (sampling error only); "± s" is the standard deviation over k-means restarts.

**At α.** A fitted region aims at a risk somewhat above α (the selection target), and
its adversarial risk rises with its risk, so it overstates the concentration at α.
Half-spaces and balls move along one parameter (the threshold on the chosen
direction; the balls' coverage, read off the greedy's own prefixes): the fitting
split fixes a nested frontier of such regions, from a risk below to above α, and
the test set evaluates it. "**x** at α [lo, hi]" is that test frontier read at test
risk α (linear interpolation between the two members that bracket α), with a 95 %
interval from Clopper–Pearson bounds of the members certified below and above α
(the outer envelope of the bracket: it covers both the test sampling and the
interpolation). Where it exists it is the headline; the region's own test risk /
adversarial risk follow in brackets. Boxes (whose q does not give nested regions)
show the region's figures only.

**Protocols.** `paper` reproduces the 2019 code: regions fitted on the whole
training set, with (T, q) and, for `best`, the family chosen by looking at the
**test** set (a leak, kept only to compare with the paper). `holdout` (numbaconc's
default) carves a seeded 20 % validation split out of the training set, fits on the
rest, makes every choice on the validation split, and touches the test set only to
report."""


def headline(test: dict) -> tuple[float, list, bool]:
    """(value, 95 % interval, read at alpha?): the frontier read at test risk
    alpha where the family has one, else the fitted region's test figure."""
    at = test.get("adv_risk_at_alpha")
    if at is not None:
        return at, test["adv_risk_at_alpha_ci"], True
    return test["adv_risk"], test["adv_risk_ci"], False


def cell(row: dict | None, *, with_params: bool = False) -> str:
    if row is None:
        return "–"
    if "error" in row:
        return f"failed: {row['error']}"
    t = row["test"]
    mark = "" if t["risk"] >= row["alpha"] else " †"
    adv = f"{100 * t['adv_risk']:.2f}"
    if "adv_risk_std" in t:
        adv += f" ± {100 * t['adv_risk_std']:.2f}"
    value, ci, at_alpha = headline(t)
    if at_alpha:  # the region's own figures follow in brackets; † does not apply to the reading
        text = (f"**{100 * value:.2f}** at α [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}] "
                f"(region: {100 * t['risk']:.2f} / {adv}{mark})")
    else:
        text = f"{100 * t['risk']:.2f} / **{adv}** [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]{mark}"
    if with_params:
        p = row["params"]
        bits = []
        if row["family"] in ("boxes", "balls"):
            bits.append(f"T={p.get('clusters')}")
        if p.get("q") is not None:
            bits.append(f"q={p['q']:.3f}")
        if row["family"] == "halfspace":
            bits.append(f"pc {p.get('component')}, e={p.get('power'):g}")
        if row["spec"]["family"] == "best":
            bits.insert(0, row["family"])
        text += f" ({', '.join(bits)})" if bits else ""
    return text


def paper_cell(paper: dict, key="adv_risk") -> str:
    if not paper or key not in paper:
        return "–"
    text = f"{paper.get('risk', float('nan')):.2f} / **{paper[key]:.2f}**" if key == "adv_risk" else f"**{paper[key]:.2f}**"
    if key == "adv_risk" and "adv_risk_std" in paper:
        text = f"{paper['risk']:.2f} / **{paper['adv_risk']:.2f} ± {paper['adv_risk_std']:.2f}**"
    return text


def write_report(rows: list[dict], out: Path, *, command: str, versions: dict, wall_seconds: float,
                 data_notes: dict, pictures: dict, bounds: dict | None = None) -> Path:
    """Render every finished row of ``results.json`` as report.md.

    ``bounds``: {dataset: {(metric, epsilon): bound row}} from
    ``reproduce.report_bounds``, shown beside the estimates and defences."""
    bounds = bounds or {}
    by_dataset = defaultdict(list)
    for row in rows:
        by_dataset[row["spec"]["dataset"]].append(row)
    lines = ["# numbaconc: concentration of measure, reproduced", "",
             f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}`.",
             f"Machine: {versions.get('processor')}, {versions.get('cores', '?')} cores; numbaconc "
             f"{versions.get('numbaconc')}, numba {versions.get('numba')}, numpy {versions.get('numpy')}, "
             f"Python {versions.get('python')}. Wall time of this run: {wall_seconds:.0f} s "
             f"(rows computed by an earlier run are reused and keep their own times).", "", MEANING, "",
             "Cells: test risk / **test adversarial risk** [95 % interval], in percent; "
             "parameters in brackets.", ""]
    for name, items in by_dataset.items():
        lines += [f"## {name}", ""]
        if data_notes.get(name):
            lines += [data_notes[name], ""]
        found = bounds.get(name, {})
        lines += (_estimates_table(items, found) + _linf_table(items, found) + _as_2019_table(items)
                  + _l2_table(items, found) + _defence_table(items, found))
        if found:
            from .optimal_loss import DEFINITIONS

            lines += [f"**The lower bound beside each estimate.** {_bound_intro()} {DEFINITIONS}", ""]
        if pictures.get(name):
            lines += ["### Pictures", ""]
            for caption, path in pictures[name]:
                lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
        lines += ["### Commands (one per row)", "", "```"]
        seen = set()
        for row in items:  # rows run without a row_command (the Python API) have none
            if row.get("command") is not None and row["command"] not in seen:
                seen.add(row["command"])
                lines.append(row["command"])
        lines += ["```", ""]
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return out


def _index(items, metric, group="table"):
    table = defaultdict(dict)
    for row in items:
        spec = row["spec"]
        if spec["metric"] == metric and spec["group"] == group:
            table[(spec["epsilon"], spec["epsilon_text"], spec["alpha"])][(spec["family"], spec["protocol"])] = row
    return dict(sorted(table.items()))


def _time(cells: dict) -> str:
    return f"{sum(r.get('wall_seconds', 0.0) for r in cells.values()):.0f} s"


def _bound_column(bounds, lines: list[str], epsilons, metric) -> list[str]:
    """Append the lower bound at each row's epsilon as a last column (header,
    rule, then one cell per row of ``epsilons``)."""
    if not bounds:
        return lines
    head, rule, body = lines[2], lines[3], lines[4:]
    cells = [_bound_cell(bounds, metric, e) for e in epsilons]
    return lines[:2] + [head + " label-aware lower bound, test split |", rule + "---|"] + [
        line + f" {c} |" for line, c in zip(body, cells)]


def _linf_table(items, bounds=None) -> list[str]:
    table = _index(items, "linf")
    if not table:
        return []
    out = ["### ℓ∞ (boxes: adversarial risk is an upper bound; half-spaces: exact)", "",
           "| ε | α | paper 2019, boxes (T, q) | numbaconc, paper protocol, same (T, q), symmetric | "
           "holdout: tight boxes, tuned, counted in [0, 1]^d | holdout: half-space search | holdout: best of | time |",
           "|---|---|---|---|---|---|---|---|"]
    for (eps, text, alpha), cells in table.items():
        paper = next((r["spec"]["paper"] for r in cells.values() if r["spec"]["paper"]), {})
        opts = cells.get(("boxes", "paper"), {}).get("spec", {}).get("options", {})
        tq = f" (T={opts.get('clusters')}, q={opts.get('q')})" if opts else ""
        out.append(f"| {text} | {alpha:g} | {paper_cell(paper)}{tq} | {cell(cells.get(('boxes', 'paper')))} | "
                   f"{cell(cells.get(('boxes', 'holdout')), with_params=True)} | "
                   f"{cell(cells.get(('halfspace', 'holdout')), with_params=True)} | "
                   f"{cell(cells.get(('best', 'holdout')), with_params=True)} | {_time(cells)} |")
    return _bound_column(bounds, out, [k[0] for k in table], "linf") + [""]


def _is_valid(row) -> bool:
    """A headline that counts: read at alpha, or the region's test risk >= alpha."""
    if "error" in row or "test" not in row:
        return False
    return headline(row["test"])[2] or row["test"]["risk"] >= row["alpha"]


def _bound_intro() -> str:
    return ("The label-aware lower bound (`numbaconc bound`, the test split, degree 2) is the "
            "smallest adversarial 0-1 loss any classifier can reach on the labelled test points "
            "against an attacker within the same ε.")


def _bound_cell(bounds: dict, metric: str, epsilon: float) -> str:
    found = bounds.get((metric, round(epsilon, 10)))
    if found is None:
        return "–"
    if found["edges"] == 0:
        return "0 exactly (no conflict pairs)"
    return f"{100 * found['lower_bound']:.2f} % ({found['edges']:,} conflict pairs)"


def _estimates_table(items, bounds=None) -> list[str]:
    """First table: per (metric, epsilon), the lowest valid leak-free (holdout)
    headline over the families run, with the family that gave it; the
    label-aware lower bound at the same epsilon beside it when known."""
    bounds = bounds or {}
    best = {}
    for row in items:
        spec = row["spec"]
        if spec["group"] != "table" or spec["protocol"] != "holdout" or not _is_valid(row):
            continue
        key = (spec["metric"], spec["epsilon"], spec["alpha"])
        if key not in best or headline(row["test"])[0] < headline(best[key]["test"])[0]:
            best[key] = row
    if not best:
        return []
    lines = []
    for (metric, _, alpha), row in sorted(best.items()):
        name = "ℓ∞" if metric == "linf" else "ℓ2"
        paper = row["spec"]["paper"]
        bound = f" {_bound_cell(bounds, metric, row['spec']['epsilon'])} |" if bounds else ""
        lines.append(f"| {name} | {row['spec']['epsilon_text']} | {alpha:g} | {row['family']} | "
                     f"{cell(row, with_params=True)} | {paper_cell(paper)} |{bound}")
    return _table("Estimates (holdout: leak-free, valid rows only)",
                  "The lowest valid test figure of the families run under `holdout` at each "
                  "setting: read at α where the family has a frontier (half-spaces, balls), "
                  "else a region whose test risk is ≥ α. The paper's figure (boxes or balls, "
                  "its own protocol) for comparison; the full tables follow.",
                  ["metric", "ε", "α", "family", "numbaconc (holdout)", "paper 2019"]
                  + (["label-aware lower bound, test split (corrupted-input loss)"] if bounds else []),
                  lines)


def _as_2019_table(items) -> list[str]:
    """Paper rows at the stated epsilon and at the decimal the 2019 code passed."""
    rows = [r for r in items if r["spec"]["group"] == "as_2019"]
    if not rows:
        return []
    stated = {(r["spec"]["epsilon_text"], r["spec"]["alpha"]): r for r in items
              if r["spec"]["group"] == "table" and r["spec"]["family"] == "boxes"
              and r["spec"]["protocol"] == "paper"}
    lines = []
    for row in rows:
        spec, paper = row["spec"], row["spec"]["paper"]
        text = paper.get("stated_epsilon_text", "?")
        lines.append(f"| {text} | {spec['epsilon_text']} ({255 * spec['epsilon']:.5f}) | {paper_cell(paper)} | "
                     f"{cell(stated.get((text, spec['alpha'])))} | {cell(row)} |")
    return _table(
        "ℓ∞ paper rows as the 2019 code ran them",
        "The 2019 code passed its ε as truncated decimals (0.007843 for 2/255, 0.03137 for "
        "8/255); its box faces sit on pixel levels (mean ± max deviation), so a pixel two "
        "(eight) levels past a face is never inside and the row ran, in effect, at 1/255 "
        "(7/255). Same (T, q), paper protocol, symmetric boxes, 2019 count.",
        ["stated ε", "2019 code's ε (pixel levels)", "paper 2019", "numbaconc at the stated ε",
         "numbaconc at the 2019 decimal"], lines)


def _table(title: str, intro: str, columns: list, lines: list) -> list[str]:
    """A titled markdown table: heading, one paragraph, header, rows."""
    return ([f"### {title}", "", intro, "", "| " + " | ".join(columns) + " |",
             "|" + "---|" * len(columns)] + lines + [""])


def _l2_table(items, bounds=None) -> list[str]:
    table = _index(items, "l2")
    if not table:
        return []
    out = ["### ℓ2 (balls and half-spaces: exact expansions)", "",
           "| ε | α | paper 2019, balls | paper 2019, top-PC half-space (adv) | numbaconc, paper protocol, balls | "
           "numbaconc, top-PC half-space | holdout: balls | holdout: half-space search | holdout: best of | time |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for (eps, text, alpha), cells in table.items():
        paper = next((r["spec"]["paper"] for r in cells.values() if r["spec"]["paper"]), {})
        out.append(f"| {text} | {alpha:g} | {paper_cell(paper)} | {paper_cell(paper, 'pca_adv_risk')} | "
                   f"{cell(cells.get(('balls', 'paper')), with_params=True)} | {cell(cells.get(('pca', 'paper')))} | "
                   f"{cell(cells.get(('balls', 'holdout')), with_params=True)} | "
                   f"{cell(cells.get(('halfspace', 'holdout')), with_params=True)} | "
                   f"{cell(cells.get(('best', 'holdout')), with_params=True)} | {_time(cells)} |")
    return _bound_column(bounds, out, [k[0] for k in table], "l2") + [""]


def _defence_table(items, bounds=None) -> list[str]:
    bounds = bounds or {}
    rows = [r for r in items if r["spec"]["group"] == "defence"]
    if not rows:
        return []
    out = []
    for row in rows:
        spec, paper = row["spec"], row["spec"]["paper"]
        metric = "ℓ∞" if spec["metric"] == "linf" else "ℓ2"
        gap = "–"
        if "test" in row:
            gap = f"{paper['defence_adv_risk'] - 100 * headline(row['test'])[0]:.2f} points"
        bound = ""
        if bounds:
            bound = f" {_bound_cell(bounds, spec['metric'], spec['epsilon'])}"
            found = bounds.get((spec["metric"], round(spec["epsilon"], 10)))
            if found is not None and found["edges"] == 0:
                bound += (f": label overlap explains none of the {paper['defence_adv_risk']:.2f} % "
                          "attack success")
            bound += " |"
        out.append(f"| {metric} ≤ {spec['epsilon_text']} | {paper['defence']} ({paper['defence_risk']:.2f} %, "
                   f"{paper['defence_adv_risk']:.2f} %) | {spec['alpha']:g} | {paper['risk']:.2f} %, "
                   f"{paper['adv_risk']:.2f} % | {cell(row, with_params=True)} | {gap} |{bound}")
    return _table("Against state-of-the-art defences",
                  "The concentration estimate at the α of each defence's own standard error, next to "
                  "the attack success rate reported for that defence. The gap is room that "
                  "concentration alone does not explain.",
                  ["budget", "defence (risk, adv risk)", "α", "2019 estimate (risk, adv risk)",
                   "numbaconc best of, holdout", "gap: defence adv risk − numbaconc estimate"]
                  + (["label-aware lower bound, test split"] if bounds else []), out)
