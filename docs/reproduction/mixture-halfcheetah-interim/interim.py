"""Interim: HalfCheetah K=4 MRP (stopped at 148k) vs the paper arm at equal env steps."""
import csv, json, sys
import numpy as np
sys.path.insert(0, "/work/main")
from experiments import reproduce, verdict
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
out = "/work/main/docs/reproduction/mixture-halfcheetah-interim"
ps, pc = reproduce.read_arm("/work/runs/reproduce/cpu/halfcheetah-paper")
ms, mc = reproduce.read_arm("/work/runs/reproduce/cpu/halfcheetah-mrp")
upto = int(ms.max())
steps = ps[ps <= upto]
assert list(steps) == list(ms), (steps, ms)
last = steps[-3:]
def fin(curves, st): return {s: float(np.mean(c[np.isin(st, last)])) for s, c in curves.items()}
pf, mf = fin(pc, ps), fin(mc, ms)
def auc(curves, st): return {s: float(np.mean(c[st <= upto])) for s, c in curves.items()}
pa, ma = auc(pc, ps), auc(mc, ms)
res = dict(env_steps=upto, last_evals=[int(x) for x in last],
           final=dict(paper_likelihood_ratio=pf, mrp=mf),
           auc=dict(paper_likelihood_ratio=pa, mrp=ma),
           final_mrp_minus_lr=verdict.compare(list(mf.values()), list(pf.values())),
           auc_mrp_minus_lr=verdict.compare(list(ma.values()), list(pa.values())))
json.dump(res, open(f"{out}/interim.json", "w"), indent=2)
with open(f"{out}/curves.csv", "w", newline="") as f:
  w = csv.writer(f); w.writerow(["arm", "seed", "env_step", "eval_return"])
  for arm, st, cv in (("K=4 likelihood ratio", ps, pc), ("K=4 marginalized reparam.", ms, mc)):
    for s, c in cv.items():
      for t, r in zip(st, c):
        if t <= upto: w.writerow([arm, s, int(t), f"{r:.2f}"])
fig, ax = plt.subplots(figsize=(7, 4.2))
for arm, st, cv, col in (("K=4 likelihood ratio (paper)", ps, pc, "C0"), ("K=4 marginalized reparam.", ms, mc, "C1")):
  sel = st <= upto
  arr = np.stack([c[sel] for c in cv.values()])
  for c in arr: ax.plot(st[sel], c, color=col, lw=0.6, alpha=0.35)
  m = arr.mean(0); ax.plot(st[sel], m, color=col, lw=2, label=f"{arm}: mean of 5 seeds")
ax.set_xlabel("env steps"); ax.set_ylabel("deterministic eval return (5 episodes)")
ax.set_title(f"HalfCheetah-v5, paper config (scale 10), seeds 100-104: interim at {upto//1000}k of 300k", fontsize=9)
ax.legend(fontsize=8); ax.grid(alpha=0.3); fig.tight_layout(); fig.savefig(f"{out}/figure.png", dpi=110)
print(json.dumps({k: res[k] for k in ("final", "final_mrp_minus_lr", "auc_mrp_minus_lr")}, indent=1))
