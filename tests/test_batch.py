"""Batch input from a grid, run through a local server or the Batch stand-in, ingested and compared
item by item with the same grid collected online."""
import argparse
import json
from pathlib import Path

import openai
import pandas as pd
import pytest
import yaml

from toolkit.batch import (BatchProgress, build_batch_input, download, ingest, read_batch_input, run_batch_file,
                           split_batch_input, submit, wait, write_jsonl)
from toolkit.cli_batch import register_cli
from toolkit.collect import collect
from toolkit.config_file import load_config
from toolkit.errors import DataFileError
from toolkit.runner import plan
from toolkit.store import REQUESTS, load_run, read_manifest
from toolkit.testing.batch_server import BatchServer
from toolkit.testing.scripted_server import Behaviour, Script, ScriptedServer

REPO = Path(__file__).resolve().parents[1]
MODEL = "scripted-model"


def write_config(tmp_path: Path, *, variants=("zero_shot", "chat"), items=4, endpoint=None, **grid) -> Path:
    raw = {"name": "batchtest", "datasets": ["capitals"], "items_per_dataset": items, "seed": 1,
           "evals_dir": str(REPO / "data" / "evals"), "prompts_dir": str(REPO / "data" / "prompts"),
           "endpoints": [endpoint or {"name": "scripted", "kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                                      "models": [MODEL]}],
           "grid": {"prompt_variants": list(variants), "max_tokens": [8], **grid}}
    path = tmp_path / "batchtest.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def script_for(config_path: Path, faults: dict[int, list[Behaviour]] | None = None) -> tuple[Script, list]:
    """Each planned request (keyed by the X-Client-Request-Id header, its request_id) answers the
    expected city on even items and a wrong one on odd items."""
    rules, planned = {}, plan(load_config(config_path))
    for index, p in enumerate(planned):
        answer = p.item.expected if int(p.item.item_id[-1]) % 2 == 0 else "Atlantis"
        good = Behaviour(text=answer, prompt_tokens=40 + index)
        rules[p.request_id] = (faults or {}).get(index, []) + [good] * 6
    return Script(rules=rules), planned


def test_input_lines_are_the_collector_requests_without_stream(tmp_path):
    config = load_config(write_config(tmp_path))
    lines = build_batch_input(config)
    planned = plan(config)
    assert [line["custom_id"] for line in lines] == [p.request_id for p in planned]
    assert {line["method"] for line in lines} == {"POST"}
    chat = next(line for line in lines if line["url"] == "/v1/chat/completions")
    completion = next(line for line in lines if line["url"] == "/v1/completions")
    assert chat["body"]["messages"][0]["role"] == "system" and "stream" not in chat["body"]
    assert completion["body"] == {"model": MODEL, "max_tokens": 8, "temperature": 0.0, "stop": ["\n"],
                                  "prompt": completion["body"]["prompt"]}
    assert sorted(split_batch_input(lines)) == [("/v1/chat/completions", MODEL), ("/v1/completions", MODEL)]
    assert len(build_batch_input(config, items_per_dataset=2)) == 4


def test_run_batch_file_then_ingest_equals_the_online_run_item_by_item(tmp_path):
    config_path = write_config(tmp_path)
    script, planned = script_for(config_path)
    with ScriptedServer(script) as server:
        online = load_run(collect(config_path, runs_root=tmp_path / "runs", run_id="online",
                                  base_url=server.base_url).run_dir)
        input_path = write_jsonl(build_batch_input(load_config(config_path)), tmp_path / "in.jsonl")
        summary = run_batch_file(input_path, tmp_path / "out.jsonl", base_url=server.base_url,
                                 error_path=tmp_path / "err.jsonl", concurrency=4)
    assert (summary.requests, summary.completed, summary.failed) == (8, 8, 0)
    out_lines = (tmp_path / "out.jsonl").read_text().splitlines()
    first = json.loads(out_lines[0])
    assert first["id"].startswith("batch_req_") and first["error"] is None
    assert first["response"]["status_code"] == 200 and first["response"]["body"]["object"] in (
        "chat.completion", "text_completion")
    table = ingest(out_lines, [], config_path, tmp_path / "runs" / "batch", batch=summary.as_batch(),
                   endpoint=summary.host)
    joined = online.merge(table, on="request_id", suffixes=("_online", "_batch"))
    assert len(joined) == len(planned) == 8
    assert (joined["output_text_online"] == joined["output_text_batch"]).all()
    assert (joined["correct_online"] == joined["correct_batch"]).all()
    assert joined["correct_batch"].sum() == 4  # even items answer right
    for column in ("config_id", "model", "dataset", "item_id", "repeat", "expected", "prompt_tokens",
                   "completion_tokens", "grader", "endpoint"):
        assert (joined[f"{column}_online"] == joined[f"{column}_batch"]).all(), column
    assert table["batch"].all() and not online["batch"].any()
    assert table["ttft_s"].isna().all() and table["e2e_s"].isna().all()
    assert table["sequence"].tolist() == list(range(8))
    manifest = read_manifest(tmp_path / "runs" / "batch")
    assert manifest["source"] == "batch" and manifest["batch"]["request_counts"]["total"] == 8
    assert 0 <= manifest["batch"]["turnaround_s"] < 30 and manifest["missing_requests"] == 0


def test_a_batch_row_and_an_online_row_agree_on_every_configuration_column_and_the_grade(tmp_path):
    # settings away from their defaults, so a column left null or defaulted in either table shows
    config_path = write_config(tmp_path, variants=("chat",), max_tokens=[{"tokens": 8, "stop": False}, 16],
                               temperature=[0.5], concurrency=[2], logprobs=True)
    script, planned = script_for(config_path)
    with ScriptedServer(script) as server:
        collect(config_path, runs_root=tmp_path / "runs", run_id="online", base_url=server.base_url)
        input_path = write_jsonl(build_batch_input(load_config(config_path)), tmp_path / "in.jsonl")
        run_batch_file(input_path, tmp_path / "out.jsonl", base_url=server.base_url)
    ingest((tmp_path / "out.jsonl").read_text().splitlines(), [], config_path, tmp_path / "runs" / "batch")
    # the stored tables: load_run would fill missing setting columns from the manifest
    online, batch = (pd.read_parquet(tmp_path / "runs" / name / REQUESTS) for name in ("online", "batch"))
    joined = online.merge(batch, on="request_id", suffixes=("_online", "_batch"))
    assert len(joined) == len(planned) == 8 and batch["batch"].all()
    columns = [*planned[0].config.columns(), "score", "correct", "grader"]
    for column in columns:
        online_values, batch_values = joined[f"{column}_online"], joined[f"{column}_batch"]
        assert online_values.equals(batch_values), column
        assert column == "arrival_rate_per_s" or batch_values.notna().all(), column  # closed loop: no rate
    assert set(joined["stop_sequences_batch"]) == {True, False} and joined["logprobs_batch"].all()
    assert set(joined["correct_batch"]) == {True, False} and (joined["temperature_batch"] == 0.5).all()


def test_failed_lines_become_error_rows_with_their_code(tmp_path):
    config_path = write_config(tmp_path, variants=("zero_shot",))
    script, planned = script_for(config_path, faults={
        0: [Behaviour(fault="400")],                               # not retried
        1: [Behaviour(fault="429")] * 3,                           # retried, still failing
        2: [Behaviour(fault="500")],                               # retried, then ok
    })
    with ScriptedServer(script) as server:
        input_path = write_jsonl(build_batch_input(load_config(config_path)), tmp_path / "in.jsonl")
        summary = run_batch_file(input_path, tmp_path / "out.jsonl", base_url=server.base_url,
                                 error_path=tmp_path / "err.jsonl")
        attempts = {a.key: a.attempt for a in server.log}
    assert (summary.completed, summary.failed) == (2, 2)
    errors = [json.loads(t) for t in (tmp_path / "err.jsonl").read_text().splitlines()]
    assert [e["custom_id"] for e in errors] == [p.request_id for p in planned[:2]]
    table = ingest((tmp_path / "out.jsonl").read_text().splitlines(),
                   (tmp_path / "err.jsonl").read_text().splitlines(), config_path, tmp_path / "run")
    by_id = table.set_index("request_id")
    first, second, third = (by_id.loc[p.request_id] for p in planned[:3])
    assert (first["status"], first["error_type"], first["http_status"]) == ("error", "invalid_request_error", 400)
    assert (second["status"], second["error_type"], second["http_status"]) == ("error", "rate_limit_exceeded", 429)
    assert third["status"] == "ok" and attempts[planned[2].request_id] == 2
    assert pd.isna(first["correct"]) and first["dataset"] == "capitals" and first["expected"] == planned[0].item.expected


def test_submit_poll_download_ingest_through_the_real_openai_client(tmp_path):
    config_path = write_config(tmp_path)
    script, planned = script_for(config_path)
    config = load_config(config_path)
    expired = planned[3].request_id
    with ScriptedServer(script) as upstream, BatchServer(
            upstream=upstream.base_url, api_key="sk-test-123456", delay_s=0.2,
            fail={expired: ("batch_expired", "not run before the completion window expired")}) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-123456", max_retries=0)
        chat_lines = split_batch_input(build_batch_input(config))[("/v1/chat/completions", MODEL)]
        input_path = write_jsonl(chat_lines, tmp_path / "chat.jsonl")
        batch_id = submit(client, input_path, metadata={"config": "batchtest"})
        seen: list[BatchProgress] = []
        batch = wait(client, batch_id, poll_s=0.05, on_progress=seen.append)
        output, errors = download(client, batch)
        with pytest.raises(DataFileError, match="mixes 2 \\(url, model\\) pairs"):
            submit(client, write_jsonl(build_batch_input(config), tmp_path / "all.jsonl"))
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).batches.retrieve(batch_id)
    assert batch.metadata == {"config": "batchtest"}
    assert batch.status == "completed" and seen[0].status == "validating" and seen[-1] == BatchProgress(
        batch_id, "completed", 4, 1, 4)
    assert len(output) == 3 and len(errors) == 1
    table = ingest(output, errors, config, tmp_path / "run", batch=batch, endpoint="batch.local")
    row = table.set_index("request_id").loc[expired]
    assert (row["status"], row["error_type"], row["batch"]) == ("error", "batch_expired", True)
    assert pd.notna(row["started_at"])  # failed lines take the batch's creation time
    assert table.loc[table["status"] == "ok", "prompt_variant"].eq("chat").all()
    manifest = read_manifest(tmp_path / "run")
    assert manifest["batch"]["id"] == batch_id and manifest["batch"]["turnaround_s"] >= 0
    assert manifest["missing_requests"] == 4  # the completion lines were never submitted


def test_a_batch_with_a_mismatched_url_fails_validation(tmp_path):
    lines = [{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}]
    with BatchServer(responder=lambda line: (200, {})) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        batch_id = submit(client, write_jsonl(lines, tmp_path / "in.jsonl"), endpoint="/v1/completions")
        batch = wait(client, batch_id, poll_s=0.02)
    assert batch.status == "failed" and batch.errors.data[0].code == "mismatched_endpoint"
    assert batch.errors.data[0].line == 1


def test_bad_input_and_unknown_custom_ids_name_the_line_and_field(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}\n'
                    '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}\n')
    with pytest.raises(DataFileError, match=r'in.jsonl line 2: field "custom_id": duplicate custom_id'):
        read_batch_input(path)
    path.write_text('{"custom_id": "a", "method": "GET", "url": "/v1/chat/completions", "body": {}}\n')
    with pytest.raises(DataFileError, match=r'line 1: field "method": invalid value'):
        read_batch_input(path)
    config_path = write_config(tmp_path)
    stray = json.dumps({"id": "x", "custom_id": "nope", "response": {"status_code": 200, "body": {}}, "error": None})
    with pytest.raises(DataFileError, match=r"custom_id 'nope' is not a request of config 'batchtest'"):
        ingest([stray], [], config_path, tmp_path / "run")


def test_cli_build_run_and_ingest(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    config_path = write_config(tmp_path, items=2)
    args = parser.parse_args(["batch", "build", str(config_path), "-o", str(tmp_path / "in.jsonl")])
    args.func(args)
    chat, completions = tmp_path / f"in.chat.{MODEL}.jsonl", tmp_path / f"in.completions.{MODEL}.jsonl"
    assert len(read_batch_input(chat)) == len(read_batch_input(completions)) == 2
    script, _ = script_for(config_path)
    with ScriptedServer(script) as server:
        args = parser.parse_args(["batch", "run", str(chat), "-o", str(tmp_path / "out.jsonl"),
                                  "--base-url", server.base_url])
        args.func(args)
    assert json.loads((tmp_path / "out.jsonl.batch.json").read_text())["request_counts"]["completed"] == 2
    args = parser.parse_args(["batch", "ingest", str(tmp_path / "out.jsonl"), "--config", str(config_path),
                              "-o", str(tmp_path / "run")])
    args.func(args)
    assert "run: 2 requests, 0 errors" in capsys.readouterr().out
    manifest = read_manifest(tmp_path / "run")
    assert manifest["batch"]["host"].startswith("127.0.0.1:") and "turnaround_s" in manifest["batch"]
    assert (load_run(tmp_path / "run")["endpoint"] == manifest["batch"]["host"]).all()


@pytest.mark.llm
def test_embedded_llm_batch_equals_online_at_temperature_zero(tmp_path):
    from toolkit.local_server import EmbeddedServer

    config_path = write_config(tmp_path, variants=("zero_shot", "chat"), items=2,
                               endpoint={"name": "embedded", "kind": "embedded"})
    config = load_config(config_path)
    with EmbeddedServer() as server:
        online = load_run(collect(config, runs_root=tmp_path / "runs", run_id="online",
                                  base_url=server.base_url).run_dir)
        input_path = write_jsonl(build_batch_input(config), tmp_path / "in.jsonl")
        summary = run_batch_file(input_path, tmp_path / "out.jsonl", base_url=server.base_url, concurrency=1)
    table = ingest((tmp_path / "out.jsonl").read_text().splitlines(), [], config, tmp_path / "batch",
                   batch=summary.as_batch(), endpoint=summary.host)
    joined = online.merge(table, on="request_id", suffixes=("_online", "_batch"))
    assert len(joined) == 4 and (table["status"] == "ok").all()
    assert joined["output_text_online"].tolist() == joined["output_text_batch"].tolist()
    assert (table["usage_source"] == "server").all() and (table["prompt_tokens"] > 0).all()
