"""Batch requests: a config grid as an OpenAI Batch input file (`files`), submitted, polled and
downloaded (`api`) or answered against any OpenAI-compatible server, since self-hosted servers have
no Batch API (`local`, like vLLM's `run_batch`), then ingested into a normal run directory (`ingest`).

`custom_id` is the collector's `request_id`, so a batch answer joins back to its plan (dataset,
item, expected answer, configuration) and compares item by item with the same grid run online.
The `frontier batch` commands are in toolkit.cli_batch.
"""
from toolkit.batch.api import TERMINAL, BatchProgress, download, download_finished, submit, wait
from toolkit.batch.files import URLS, build_batch_input, group_path, read_batch_input, split_batch_input, write_jsonl
from toolkit.batch.ingest import batch_info, host_of, ingest
from toolkit.batch.local import (BatchFileSummary, answer_lines, is_success, read_sidecar, run_batch_file,
                                 sidecar_path, write_sidecar)

__all__ = [
    "TERMINAL", "URLS", "BatchFileSummary", "BatchProgress", "answer_lines", "batch_info", "build_batch_input",
    "download", "download_finished", "group_path", "host_of", "ingest", "is_success", "read_batch_input",
    "read_sidecar", "run_batch_file", "sidecar_path", "split_batch_input", "submit", "wait", "write_jsonl",
    "write_sidecar",
]
