"""Formatting helpers and look-ups into the results dict, shared by the report modules."""

from __future__ import annotations

import math


def f(x: object, nd: int = 1, suffix: str = "") -> str:
    """A number for a table cell (``–`` for missing/NaN)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int, float)):
        return f"{x:.{nd}f}{suffix}"
    return str(x)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def ok(passed: bool | None) -> str:
    return "–" if passed is None else ("**met**" if passed else "**not met**")


def reps(results: dict, name: str) -> list[dict]:
    return [r for r in results.get("e2e", []) if r["name"] == name]


def best_run(results: dict, name: str) -> dict | None:
    """The best repetition (highest pipeline fps) of a configuration."""
    found = reps(results, name)
    return max(found, key=lambda r: r["pipeline_fps"]) if found else None


def correct_mean(run: dict) -> float:
    """A run's mean correction time over its window (older results: the end-of-window moving
    average)."""
    mean = run.get("correct_ms_mean")
    if mean is None or not math.isfinite(mean):
        return float(run["correct_ms"])
    return float(mean)


def mean_cpu_ms(results: dict, name: str) -> float | None:
    found = reps(results, name)
    return sum(r["daemon_cpu_ms_per_frame"] for r in found) / len(found) if found else None


def decode_cpu_ms(results: dict, res: str) -> float | None:
    """Mean decode-only CPU ms per frame (stable under load, unlike fps)."""
    vals = [r["read"]["cpu_ms_per_frame"] for r in results.get("decode", {}).get(res, [])]
    return sum(vals) / len(vals) if vals else None


def paired_ratios(results: dict, name: str) -> list[float]:
    """Each repetition's pipeline fps ÷ the mean of the decode-only baselines of its clip taken
    just before and just after that repetition's block of runs (``run_e2e`` takes baseline k
    before repetition k and one more at the end), in repetition order.

    Pairing each run with the baselines around it cancels the slow drift of a shared machine
    that the best-of ratio (best repetition ÷ best baseline, taken minutes apart) does not."""
    out = []
    runs = sorted(reps(results, name), key=lambda r: r.get("rep", 1))
    dec = [d["read"]["fps"] for d in results.get("decode", {}).get(runs[0]["res"], [])] \
        if runs else []
    for r in runs:
        k = int(r.get("rep", 1))
        around = dec[k - 1 : k + 1]
        if around:
            out.append(r["pipeline_fps"] / (sum(around) / len(around)))
    return out


def decode_fps(results: dict, res: str, key: str = "read") -> float | None:
    """Best decode-only rate of the clip over the baselines taken in this run."""
    vals = [r[key]["fps"] for r in results.get("decode", {}).get(res, [])]
    return max(vals) if vals else None


# Backend label of the detector rows measured without the stacked estimators.
NETWORK_ONLY = "onnxruntime (network only)"
# ... and with the estimators run on every frame (the shipped detector skips them where the
# network rules their anomaly out).
ALL_ESTIMATORS = "onnxruntime (estimators on every frame)"


def det(results: dict, backend: str, threads: int, res: str, part: str = "analyze",
         stat: str | None = "median_ms") -> float | None:
    """A detector row's ``part`` (its ``stat``; stat None: the value itself), or None."""
    for r in results.get("model", {}).get("detector", []):
        if r["backend"] == backend and r["threads"] == threads and r["res"] == res:
            value = r.get(part)
            return value if stat is None or value is None else value[stat]
    return None


def ipc(results: dict, clients: str, method: str) -> dict | None:
    data = results.get("ipc", {}).get(clients)
    if not data:
        return None
    return next((r for r in data["results"] if r["method"] == method), None)
