"""Markdown rows of the MNIST-60k density-score comparison (bench/boxes_density.sh)."""

import json
import sys
from pathlib import Path

import numpy as np

out = Path(sys.argv[1])
rows = []
for variant in ("exact", "20000", "10000", "1000"):
    path = out / f"mnist-{variant}.json"
    if not path.exists():
        continue
    r = json.loads(path.read_text())
    cpu = json.loads((out / f"mnist-{variant}.cpu.json").read_text())
    p, d = r["params"], r["params"]["density"]
    adv = np.array([x["test"]["adv_risk"] for x in r["repeats"]])
    risk = np.array([x["test"]["risk"] for x in r["repeats"]])
    name = "exact (all pairs, k = 50)" if d["variant"] == "exact" else \
        f"sample m = {d['sample_rows']:,}, k' = {d['k_sample']}"
    stages = {row["stage"]: row for row in cpu["stages"]}
    score = stages.get("density_sample", stages.get("knn_l1"))["cpu_seconds"]
    rows.append(f"| {name} | {p['clusters']} | {p['q']:.4f} | {100 * r['validation']['adv_risk']:.2f} | "
                f"{100 * risk[0]:.2f} / {100 * adv[0]:.2f} | "
                f"{100 * risk.mean():.2f} ± {100 * risk.std():.2f} / "
                f"{100 * adv.mean():.2f} ± {100 * adv.std():.2f} | "
                f"{'yes' if r['valid'] else 'no'} | {score:.1f} | {cpu['total_cpu_seconds']:.0f} |")
print("\n".join(rows))
