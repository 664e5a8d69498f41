"""frontier: find the balance of accuracy, latency and cost for LLM applications."""
from toolkit.errors import (ConfigError, DataFileError, EndpointError, FrontierError, NotebookError,
                            ParameterError, PriceError, RunDirError)
from toolkit.schema import REQUEST_COLUMNS, RequestRecord, coerce_requests
from toolkit.store import columns_but, load_run, load_sample, open_run, read_manifest

__version__ = "0.1.0"

__all__ = [
    "REQUEST_COLUMNS", "ConfigError", "DataFileError", "EndpointError", "FrontierError",
    "NotebookError", "ParameterError", "PriceError", "RequestRecord", "RunDirError",
    "coerce_requests", "columns_but", "load_run", "load_sample", "open_run", "read_manifest",
]
