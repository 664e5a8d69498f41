"""The analyses the notebooks present, one module each: `from toolkit.analysis import accuracy, latency`.

Analysis modules compute tables, numbers and dataclasses; `toolkit.present` turns them into words.
"""
from toolkit.analysis import (accuracy, caching, cascade, cascade_study, cost_model, frontier, latency, latency_fit,
                              latency_model, load, rows)

__all__ = ["accuracy", "caching", "cascade", "cascade_study", "cost_model", "frontier", "latency", "latency_fit",
           "latency_model", "load", "rows"]
