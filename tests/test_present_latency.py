"""The sentences on where latency goes, what load buys and whether an open-loop run kept its rate
(`present.latency_split_text`, `load_sweep_text`, `arrival_text`), on tables with known numbers."""
import pandas as pd

from toolkit import present
from toolkit.analysis.latency import latency_split, percentiles
from toolkit.analysis.load import arrival_rates
from toolkit.schema import coerce_requests


def requests(rows: list[dict]) -> pd.DataFrame:
    return coerce_requests(pd.DataFrame([{"status": "ok", "model": "m"} | row for row in rows]))


def test_split_text_names_the_dominant_part_in_numbers_and_its_lever():
    frame = requests([
        # decode-bound: 1.6 s of 2.0 s decoding 17 tokens (100 ms each after the first)
        {"config_id": "long", "ttft_s": 0.3, "e2e_s": 2.0, "server_prefill_s": 0.2, "server_decode_s": 1.6,
         "completion_tokens": 17, "prompt_tokens": 40, "server_cached_tokens": 0},
        # prefill-bound: 0.8 s of 1.0 s on a 400-token prompt, a quarter of it cached
        {"config_id": "rag", "ttft_s": 0.9, "e2e_s": 1.0, "server_prefill_s": 0.8, "server_decode_s": 0.08,
         "completion_tokens": 3, "prompt_tokens": 400, "server_cached_tokens": 100},
        # no server timings: TTFT stays whole
        {"config_id": "api", "ttft_s": 0.9, "e2e_s": 1.0, "tbt_s": [0.05, 0.05], "completion_tokens": 3},
        # no token gaps either (llmperf): what follows the first token stays whole
        {"config_id": "llmperf", "ttft_s": 0.5, "e2e_s": 3.0, "completion_tokens": 151},
    ])
    text = present.latency_split_text(latency_split(frame))
    assert "**decode (after the first token)** in 1 of 4" in text
    assert "Where decode weighs most, **long**: 1.60 s of 2.00 s (80.0%); fewer output tokens" in text
    assert "100.00 ms per token after the first, 17 tokens on average: half as many saves about 800 ms" in text
    assert "Where prefill weighs most, **rag**: 800 ms of 1.00 s (80.0%); a shorter prompt" in text
    assert "400 tokens on average, 25.0% of them already in the server's cache: half as long saves about 400 ms" in text
    assert "Where TTFT weighs most, **api**: 900 ms of 1.00 s (90.0%)" in text
    assert "Where the time after the first token weighs most, **llmperf**: 2.50 s of 3.00 s (83.3%)" in text
    assert "16.67 ms per token after the first, 151 tokens on average: half as many saves about 1.25 s" in text
    assert "In 2 of 4 configurations the endpoint reports no server timings" in text
    assert "In 1 of 4 the token gaps were not recorded either, so decode and overhead cannot be told apart" in text


def test_split_text_without_timed_requests_says_so():
    assert present.latency_split_text(latency_split(requests([{"config_id": "a", "status": "error"}]))) == \
        present.NO_TIMINGS


def sweep(rows: list[tuple]) -> pd.DataFrame:
    columns = ["config_group", "concurrency", "throughput_rps", "throughput_tokens_per_s", "p50_e2e_s",
               "p95_e2e_s", "e2e_ratio", "throughput_ratio", "knee", "wall_rule"]
    return pd.DataFrame(rows, columns=columns)


def test_sweep_text_reads_the_knee_and_the_level_to_keep():
    table = sweep([
        ("a", 1, 1.0, 10.0, 1.0, 1.5, None, None, False, "phase"),
        ("a", 2, 1.8, 18.0, 1.1, 1.6, 1.1, 1.8, False, "phase"),
        ("a", 4, 2.0, 20.0, 2.2, 3.0, 2.0, 1.11, True, "phase"),
        ("b", 1, 3.0, 30.0, 0.3, 0.4, None, None, False, "phase"),
        ("b", 4, 11.0, 110.0, 0.33, 0.5, 1.1, 3.67, False, "phase"),
    ])
    text = present.load_sweep_text(table)
    assert "within the levels measured in 1 of 2 configuration groups" in text
    assert ("- **a**, 1 → 4 in flight: throughput 1 → 2 requests/s (x2), 10 → 20 output tokens/s; p50 e2e "
            "1.00 s → 2.20 s (x2.2), p95 1.50 s → 3.00 s; **knee at 4**: from 2 to 4 p50 e2e grew x2 but "
            "throughput x1.1, so run at most 2 in flight") in text
    assert "- **b**, 1 → 4 in flight" in text and "no knee up to 4" in text
    assert "No phases were recorded" not in text


def test_sweep_text_with_one_level_asks_for_a_sweep_and_names_stand_in_phases():
    one = sweep([("a", 1, 1.0, 10.0, 1.0, 1.5, None, None, False, "level")])
    assert present.load_sweep_text(one).startswith("Every configuration ran at one concurrency level (1)")
    two = sweep([("a", 1, 1.0, 10.0, 1.0, 1.5, None, None, False, "level"),
                 ("a", 2, 1.0, 10.0, 2.0, 2.5, 2.0, 1.0, True, "level")])
    assert "each concurrency level, first send to last byte, is taken as one phase" in present.load_sweep_text(two)


def test_arrival_text_gives_achieved_against_target_and_latency_from_the_due_time():
    rates = arrival_rates([{"phase": 0, "arrival": {"target_rate_per_s": 50.0, "achieved_rate_per_s": 45.0,
                                                     "requests": 200, "max_in_flight": 100,
                                                     "max_send_lag_s": 0.25}}])
    frame = requests([{"config_id": "a", "ttft_s": 0.1, "e2e_s": 1.0, "send_lag_s": lag} for lag in (0.0, 0.2, 0.3)])
    table = percentiles(frame, metrics=("e2e_s", "e2e_from_scheduled_s"), q=(0.5,))
    text = present.arrival_text(rates, table)
    assert "phase 0: 45 requests/s sent of 50 asked for (90.0%), the latest request 250 ms late" in text
    assert "In 1 phase the client fell more than 2% behind" in text
    assert "median end-to-end latency is at most 200 ms longer than from the send (**a**: 1.20 s against 1.00 s)" in text
    assert present.arrival_text(arrival_rates([{"phase": 0}])).startswith("Closed loop")
