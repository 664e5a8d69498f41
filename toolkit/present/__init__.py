"""The one layer that turns numbers into words: units, table cells, configuration names and the
Markdown sentences the notebooks and the report end their sections with.

Analysis modules (`toolkit.analysis`) return tables and dataclasses; every function here takes one
and says what a reader should conclude, including the honest "nothing to say" cases (no graded
requests, no timings, a fit that could not be made).  Kept out of the notebooks so the wording is
tested.  One module per analysis; every public name is also importable from `toolkit.present`.
"""
from toolkit.present.units import pct, usd, secs, ms, per_second, factor, count_of, token_count, is_missing
from toolkit.present.tables import (HEADERS, header, cell, show, assumptions, accuracy_matrix, accuracy_interval,
                                    accuracy_span)
from toolkit.present.labels import (LABEL_SEPARATOR, FLAG_NAMES, NAME_COLUMNS, config_settings, ConfigLabels,
                                    config_labels, labels_text, name_answer_groups, shared_parts, relabel, hue_column,
                                    latency_groups, latency_name, group_members, name_load_groups, merge_labels)
from toolkit.present.run import NO_GRADES, NO_TIMINGS, run_text, failures_text, cache_note, hit_rate_note
from toolkit.present.accuracy import answer_groups_text, accuracy_text, dataset_text, pairwise_text
from toolkit.present.cost import (prices_text, HOW_TO_PRICE, LEFT_OUT, unpriced_text, cost_basis_text, value_text,
                                  sensitivity_text, break_even_text, pricing_rules_text)
from toolkit.present.latency import (ROUGHLY, latency_text, decomposition_text, goodput_text, fit_text, what_if_text,
                                     scaling_text, latency_model_text, heldout_text, prediction_text, SPLIT_NAMES,
                                     latency_split_text, load_sweep_text, arrival_text)
from toolkit.present.frontier import frontier_text, rule_text, choice_text
from toolkit.present.caching import (response_cache_text, prompt_caching_text, batch_text, prefix_reuse_text,
                                     simulate_text)
from toolkit.present.cascade import cascade_text, reference_text
from toolkit.present.traffic import (WHY_MODEL, traffic_arrivals_text, traffic_tokens_text, traffic_cost_text,
                                     levers_text)

__all__ = ["pct", "usd", "secs", "ms", "per_second", "factor", "count_of", "token_count", "is_missing", "HEADERS",
           "header", "cell", "show", "assumptions", "accuracy_matrix", "accuracy_interval", "accuracy_span",
           "LABEL_SEPARATOR", "FLAG_NAMES", "NAME_COLUMNS", "config_settings", "ConfigLabels", "config_labels",
           "labels_text", "name_answer_groups", "shared_parts", "relabel", "hue_column", "latency_groups",
           "latency_name", "group_members", "name_load_groups", "merge_labels", "NO_GRADES", "NO_TIMINGS", "run_text",
           "failures_text", "cache_note", "hit_rate_note", "answer_groups_text", "accuracy_text", "dataset_text",
           "pairwise_text", "prices_text", "HOW_TO_PRICE", "LEFT_OUT", "unpriced_text", "cost_basis_text",
           "value_text", "sensitivity_text", "break_even_text", "pricing_rules_text", "ROUGHLY", "latency_text",
           "decomposition_text", "goodput_text", "fit_text", "what_if_text", "scaling_text", "latency_model_text",
           "heldout_text", "prediction_text", "SPLIT_NAMES", "latency_split_text", "load_sweep_text", "arrival_text",
           "frontier_text", "rule_text", "choice_text", "response_cache_text", "prompt_caching_text", "batch_text",
           "prefix_reuse_text", "simulate_text", "cascade_text", "reference_text", "WHY_MODEL",
           "traffic_arrivals_text", "traffic_tokens_text", "traffic_cost_text", "levers_text"]
