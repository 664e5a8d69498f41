"""A Helicone export built in the formats `npx @helicone/export` writes (helicone.py says where
each field's meaning comes from): JSON lines of query-clickhouse rows, and its CSV columns."""
import csv
import json

import pandas as pd
import pytest

from toolkit.errors import DataFileError
from toolkit.importers import IMPORTERS
from toolkit.importers.helicone import import_helicone
from toolkit.schema import REQUEST_COLUMNS

BODY = {"model": "gpt-4o-mini", "stream": True,
        "messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Capital of France?"}]}


def request(id_, **fields):
    row = {"request_id": id_, "request_created_at": "2025-03-04T10:00:00.000Z",
           "response_id": "resp-" + id_, "response_created_at": "2025-03-04T10:00:02.250Z", "response_status": 200,
           "model": "gpt-4o-mini", "request_model": "gpt-4o-mini", "response_model": "gpt-4o-mini-2024-07-18",
           "provider": "OPENAI", "target_url": "https://api.openai.com/v1/chat/completions",
           "delay_ms": 2250, "time_to_first_token": 610,
           # Helicone's current OpenAI mapping: cached tokens taken out of prompt_tokens, total kept
           "prompt_tokens": 512, "prompt_cache_read_tokens": 1536, "prompt_cache_write_tokens": 0,
           "completion_tokens": 120, "total_tokens": 2168, "prompt_audio_tokens": None,
           "completion_audio_tokens": None, "costUSD": 0.000264, "request_body": BODY,
           "properties": {"Helicone-Property-App": "support-bot"}, "country_code": "DE"}
    return {**row, **fields}


OLDER = request("r2", request_created_at="2025-03-04T10:00:03Z", response_created_at="2025-03-04T10:00:04Z",
                delay_ms=1000, prompt_tokens=2048)  # older Helicone: cached tokens inside prompt_tokens
ANTHROPIC = request("r3", request_created_at="2025-03-04T10:00:05Z", response_created_at="2025-03-04T10:00:09.250Z",
                    delay_ms=4250, time_to_first_token=1200, model="claude-3-5-sonnet-20241022",
                    request_model="claude-3-5-sonnet-20241022", provider="ANTHROPIC",
                    target_url="https://api.anthropic.com/v1/messages", prompt_tokens=20,
                    prompt_cache_read_tokens=2000, prompt_cache_write_tokens=500, completion_tokens=300,
                    total_tokens=2820, costUSD=0.007035)
NOT_STREAMED = request("r4", request_created_at="2025-03-04T10:00:10Z", response_created_at="2025-03-04T10:00:10.900Z",
                       delay_ms=900, time_to_first_token=0, prompt_tokens=30, prompt_cache_read_tokens=0,
                       completion_tokens=5, total_tokens=35, costUSD=0.0000075)
LIMITED = request("r5", request_created_at="2025-03-04T10:00:11Z", response_created_at="2025-03-04T10:00:11.180Z",
                  delay_ms=180, time_to_first_token=None, response_status=429, prompt_tokens=None,
                  prompt_cache_read_tokens=None, completion_tokens=None, total_tokens=None, costUSD=None)


def jsonl(tmp_path, *rows, name="output.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def imported(tmp_path):
    return import_helicone(jsonl(tmp_path, request("r1"), OLDER, ANTHROPIC, NOT_STREAMED, LIMITED))


def test_a_streamed_openai_request(imported):
    table, _ = imported
    assert list(table.columns) == list(REQUEST_COLUMNS) and "helicone" in IMPORTERS
    row = table.set_index("request_id").loc["r1"]
    assert row["started_at"] == pd.Timestamp("2025-03-04T10:00:00Z")
    assert row["ttft_s"] == pytest.approx(0.61) and row["e2e_s"] == pytest.approx(2.25)
    # the cached part, stored apart (total 2168 = 512 + 1536 + 120), is added back
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (2048, 1536, 120)
    assert (row["model"], row["config_id"], row["endpoint"]) == ("gpt-4o-mini", "gpt-4o-mini", "api.openai.com")
    assert (row["status"], row["usage_source"]) == ("ok", "server")
    assert row["reported_cost_usd"] == pytest.approx(0.000264) and len(row["prompt_hash"]) == 16


def test_each_row_says_by_its_total_where_the_cache_was(imported):
    table, manifest = imported
    rows = table.set_index("request_id")
    assert (rows.loc["r2", "prompt_tokens"], rows.loc["r2", "cached_tokens"]) == (2048, 1536)  # 2168 = 2048 + 120
    # Anthropic: reads and writes apart from input (2820 = 20 + 2000 + 500 + 300)
    assert (rows.loc["r3", "prompt_tokens"], rows.loc["r3", "cached_tokens"]) == (2520, 2000)
    assert manifest["cache_parts"] == {"parts apart, added to prompt_tokens": 2, "parts inside prompt_tokens": 1,
                                       "no cache or audio parts": 2}


def test_a_zero_ttft_is_not_a_measurement_and_429_is_an_error(imported):
    table, manifest = imported
    rows = table.set_index("request_id")
    assert pd.isna(rows.loc["r4", "ttft_s"]) and manifest["ttft_zero_read_as_missing"] == 1
    limited = rows.loc["r5"]
    assert (limited["status"], limited["error_type"], limited["http_status"]) == ("error", "rate_limited", 429)
    assert limited["e2e_s"] == pytest.approx(0.18) and pd.isna(limited["prompt_tokens"])
    assert rows["sequence"].to_dict() == {"r1": 0, "r2": 1, "r3": 2, "r4": 3, "r5": 4}


def test_the_reported_cost_is_compared_with_ours(imported):
    _, manifest = imported
    compared = {entry["model"]: entry for entry in manifest["reported_cost"]}
    # r1 and r2 are the same request: (512 x 0.15 + 1536 x 0.075 + 120 x 0.6) / 1e6 each
    assert compared["gpt-4o-mini"]["requests"] == 3
    assert compared["gpt-4o-mini"]["priced_usd"] == pytest.approx(2 * 0.000264 + (30 * 0.15 + 5 * 0.6) / 1e6)
    assert compared["gpt-4o-mini"]["reported_over_priced"] == pytest.approx(1.0)
    assert compared["claude-3-5-sonnet-20241022"]["reported_over_priced"] == pytest.approx(0.007035 / 0.00666)


CSV_COLUMNS = ["response_id", "response_created_at", "response_status", "request_created_at", "request_body",
               "request_properties", "request_user_id", "model", "prompt_tokens", "completion_tokens", "latency",
               "cost"]


def write_csv(tmp_path, rows):
    path = tmp_path / "output.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)  # the export tool quotes every cell
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else json.dumps(row[c]) if isinstance(row.get(c), dict)
                             else row[c] for c in CSV_COLUMNS])
    return path


def test_the_export_tools_csv(tmp_path):
    path = write_csv(tmp_path, [
        {"response_id": "resp-1", "response_created_at": "2025-03-04T10:00:02.250Z", "response_status": 200,
         "request_created_at": "2025-03-04T10:00:00.000Z", "request_body": BODY, "model": "gpt-4o-mini",
         "prompt_tokens": 2048, "completion_tokens": 120, "latency": 2250, "cost": 0.000264},
        {"response_id": "resp-2", "response_created_at": "2025-03-04T10:00:04.000Z", "response_status": 500,
         "request_created_at": "2025-03-04T10:00:03.500Z", "model": "gpt-4o-mini"},
    ])
    table, _ = import_helicone(path)
    rows = table.set_index("request_id")
    assert rows.loc["resp-1", "e2e_s"] == pytest.approx(2.25) and pd.isna(rows.loc["resp-1", "ttft_s"])
    assert (rows.loc["resp-1", "prompt_tokens"], rows.loc["resp-1", "completion_tokens"]) == (2048, 120)
    assert rows.loc["resp-1", "reported_cost_usd"] == pytest.approx(0.000264)
    # the CSV keeps the body as JSON text: the same prompt hashes alike
    assert rows.loc["resp-1", "prompt_hash"] == import_helicone(jsonl(tmp_path, request("r1")))[0]["prompt_hash"][0]
    # no latency column value: the two timestamps give e2e
    assert (rows.loc["resp-2", "status"], rows.loc["resp-2", "http_status"]) == ("error", 500)
    assert rows.loc["resp-2", "e2e_s"] == pytest.approx(0.5)


def test_a_total_that_settles_nothing_needs_the_option(tmp_path):
    odd = request("r9", total_tokens=9999)
    with pytest.raises(DataFileError) as caught:
        import_helicone(jsonl(tmp_path, odd))
    assert str(caught.value) == (f'{tmp_path / "output.jsonl"} line 1: field "total_tokens": is 9999, neither 2168 '
                                 "(cache and audio tokens apart from prompt_tokens) nor 632 (inside them): pass "
                                 "cache_in_prompt_tokens=true or false to say which")
    with pytest.raises(DataFileError, match='"total_tokens": is missing, so nothing says whether prompt_tokens '
                                            "includes the 1536 cache and audio tokens"):
        import_helicone(jsonl(tmp_path, request("r9", total_tokens=None)))
    table, _ = import_helicone(jsonl(tmp_path, odd), cache_in_prompt_tokens=False)
    assert table["prompt_tokens"][0] == 2048
    table, _ = import_helicone(jsonl(tmp_path, odd), cache_in_prompt_tokens=True)
    assert table["prompt_tokens"][0] == 512


@pytest.mark.parametrize("change, field, message", [
    ({"request_created_at": None}, "request_created_at", "is missing"),
    ({"response_created_at": "2025-03-04T09:59:00Z"}, "response_created_at", "is 60 s before the start"),
    ({"delay_ms": -5}, "delay_ms", "is negative (-5)"),
    ({"delay_ms": None, "response_created_at": None}, "response_created_at",
     "is missing, and so are delay_ms and latency"),
    ({"time_to_first_token": 3000}, "time_to_first_token", "3000 ms is longer than the request (2250 ms)"),
    ({"completion_tokens": -1}, "completion_tokens", "is negative (-1)"),
    ({"response_status": "ok"}, "response_status", "not a number ('ok')"),
    ({"request_id": None, "response_id": None}, "request_id", "is missing"),
])
def test_broken_rows_name_file_line_and_field(tmp_path, change, field, message):
    path = jsonl(tmp_path, request("ok"), request("bad", **change))
    with pytest.raises(DataFileError) as caught:
        import_helicone(path)
    assert (caught.value.line, caught.value.field) == (2, field)
    assert str(caught.value).startswith(f'{path} line 2: field "{field}": {message}')


def test_a_broken_csv_row_names_its_line(tmp_path):
    path = write_csv(tmp_path, [
        {"response_id": "a", "response_status": 200, "request_created_at": "2025-03-04T10:00:00Z", "latency": 5},
        {"response_id": "b", "response_status": 200, "request_created_at": "2025-03-04T10:00:01Z", "latency": "slow"},
    ])
    with pytest.raises(DataFileError, match=r'output.csv line 3: field "latency": not a number \(\'slow\'\)'):
        import_helicone(path)


def test_csv_lines_count_quoted_newlines_and_blank_lines(tmp_path):
    path = tmp_path / "output.csv"
    path.write_text('response_id,response_status,request_created_at,latency,request_body\n'
                    '"a",200,2025-03-04T10:00:00Z,5,"{""messages"": ""two\nlines""}"\n'
                    '\n'
                    '"b",200,2025-03-04T10:00:01Z,-7,\n')
    with pytest.raises(DataFileError) as caught:
        import_helicone(path)
    assert caught.value.line == 5 and caught.value.field == "latency"
