"""Importers of other people's data: each turns one foreign format into a requests table.

Every importer is `import_<kind>(path, **options) -> (requests table, manifest dict)`;
`import_to_run_dir` writes the result as an ordinary run directory, so notebooks read imported data
exactly like collected data.  Published aggregates that are not requests (FrugalGPT's summary
points) are read by `load_reference_points` instead.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from toolkit.errors import ParameterError
from toolkit.importers.alpacaeval import import_alpacaeval
from toolkit.importers.frugalgpt import import_frugalgpt, load_reported_costs
from toolkit.importers.frugalgpt_summary import load_reference_points
from toolkit.importers.generic import import_generic
from toolkit.importers.helicone import import_helicone
from toolkit.importers.langfuse import import_langfuse
from toolkit.importers.langsmith import import_langsmith
from toolkit.importers.llmperf import import_llmperf
from toolkit.importers.openai_batch import import_openai_batch, parse_batch_output
from toolkit.importers.otel import import_otel
from toolkit.importers.traces import import_azure2023, import_mooncake
from toolkit.store import save_run

Importer = Callable[..., tuple[pd.DataFrame, dict]]

IMPORTERS: dict[str, Importer] = {
    "llmperf": import_llmperf,
    "alpacaeval": import_alpacaeval,
    "frugalgpt": import_frugalgpt,
    "openai_batch": import_openai_batch,
    "generic": import_generic,
    "azure2023": import_azure2023,
    "mooncake": import_mooncake,
    "otel": import_otel,
    "langfuse": import_langfuse,
    "langsmith": import_langsmith,
    "helicone": import_helicone,
}

__all__ = [
    "IMPORTERS", "import_alpacaeval", "import_azure2023", "import_frugalgpt", "import_generic",
    "import_helicone", "import_langfuse", "import_langsmith", "import_llmperf", "import_mooncake",
    "import_openai_batch", "import_otel", "import_to_run_dir", "load_reference_points", "load_reported_costs",
    "parse_batch_output",
]


def import_to_run_dir(kind: str, path: str | os.PathLike, out_dir: str | os.PathLike,
                      **options: object) -> Path:
    """Import `path` with the `kind` importer and write it as the run dir `out_dir`.

    The run id is the folder's name unless `run_id=` is given in options.
    """
    if kind not in IMPORTERS:
        raise ParameterError(f"unknown importer {kind!r}; known: {', '.join(sorted(IMPORTERS))}")
    options.setdefault("run_id", Path(out_dir).name)
    table, manifest = IMPORTERS[kind](path, **options)
    return save_run(out_dir, table, manifest)
