"""The analyses the notebooks present, one module each: `from toolkit.analysis import accuracy, latency`."""
from toolkit.analysis import (accuracy, caching, cascade, cost_model, findings, frontier, latency, latency_fit,
                              overview)

__all__ = ["accuracy", "caching", "cascade", "cost_model", "findings", "frontier", "latency", "latency_fit",
           "overview"]
