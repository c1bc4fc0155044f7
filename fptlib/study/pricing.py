"""`fpt plan --gpu NAME`: the plan's runs priced on a GPU on paper, without one. Each run's FLOPs
(training steps, validation passes, the final scoring, a feature cache's one pass) and peak memory
come from fptlib.models.cost; hours are those FLOPs over the GPU's datasheet peak in the run's
precision, once at 100 % of it (a floor no run of the full budget can beat) and once at a stated
utilisation; runs per GPU is how many such runs fit its memory side by side.

The step budget is a cap: convergence stopping (patience) ends most runs earlier, so a run's real
FLOPs are at most these. The FLOPs count matrix products only, and the hours leave out per-step
overheads (kernel launches, Python): at the short sequences (Bit XOR's 10 tokens, a batch of 16)
those, not the FLOPs, set a GPU step's time, which `fpt plan --calibrate` on the GPU measures."""
from __future__ import annotations

import pandas as pd

from ..models import cost
from ..runs.sizing import UTILISATION, run_cost


def price(runs: pd.DataFrame, gpu_name: str, utilisation: float = UTILISATION) -> pd.DataFrame:
    """The plan's runs with their cost on GPU `gpu_name` (a cost.GPUS key): FLOPs, hours at the peak and at
    `utilisation`, peak memory and runs per GPU. Raises ValueError for an unknown GPU."""
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation {utilisation}: give a share of the peak above 0, at most 1")
    g = cost.gpu(gpu_name)
    priced = pd.DataFrame([run_cost(c, g, utilisation) for c in runs.config], index=runs.index)
    out = pd.concat([runs, priced], axis=1)
    out.attrs |= {"gpu": g, "utilisation": utilisation}
    return out


def describe(runs: pd.DataFrame) -> str:
    """What a priced plan's figures are, in words, with its totals."""
    g, u = runs.attrs["gpu"], runs.attrs["utilisation"]
    peaks = sorted({(c.precision, c.tf32) for c in runs.config})
    peak_words = ", ".join(f"{'tf32' if tf32 else p} {g.peak_tflops(p, tf32):g} TFLOP/s" for p, tf32 in peaks)
    hours = runs.hours_at_peak.sum()
    return (f"Priced on an {g.name}, on paper ({g.source}): {runs.pflop.sum():,.0f} PFLOP at every run's full step "
            f"budget (training steps, validation passes, final scoring). At the datasheet's dense peak ({peak_words}) "
            f"that is {hours:,.1f} GPU-hours: a bound from the peak, which no run of the full budget can beat "
            f"(convergence stopping ends most runs earlier; per-step overheads are not in it). At {u:.0%} of the "
            f"peak, an assumed utilisation: {hours / u:,.1f} GPU-hours. Peak memory of a run from "
            f"fptlib.models.cost; runs per GPU: how many fit in {cost.USABLE_FRACTION:.0%} of its {g.memory_gb:g} GB "
            f"with {cost.CUDA_CONTEXT_BYTES / 2**30:g} GiB of CUDA context each, at most {cost.MAX_RUNS_PER_GPU}.")


def priced_table(t: pd.DataFrame, utilisation: float) -> pd.DataFrame:
    """`plan.totals` of a priced plan, its columns named and rounded for reading."""
    names = {"pflop": "PFLOP", "hours_at_peak": "GPU-hours at peak",
             "hours_at_utilisation": f"GPU-hours at {utilisation:.0%}", "peak_gib": "peak GiB (largest run)",
             "runs_per_gpu": "runs per GPU"}
    out = t.round({"pflop": 1, "hours_at_peak": 2, "hours_at_utilisation": 2, "peak_gib": 2})
    return out.astype({"runs_per_gpu": int}).rename(columns=names)

