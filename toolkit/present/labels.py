"""Names for configurations, groups and columns in tables and figures.

A configuration's name is built from its setting columns (`schema.SETTING_COLUMNS` and the model,
prompt variant, token cap, temperature and concurrency), never parsed from `config_id`: only the
settings that vary between the configurations of a table appear in its names.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from toolkit import warehouse
from toolkit.analysis.rows import per_distinct
from toolkit.warehouse import Rows


LABEL_SEPARATOR = " · "
# a flag in a group's name: only its unusual value shows ("" leaves it out)
FLAG_NAMES = {"stop_sequences": ("nostop", ""), "response_cache": ("", "cache"), "logprobs": ("", "logprobs")}
# the columns a name is built from, in the order their parts appear in it
NAME_COLUMNS = ("endpoint_name", "model", "prompt_variant", "max_tokens", "stop_sequences", "temperature",
                "arrival_rate_per_s", "concurrency", "response_cache", "logprobs")


def _known(value: object) -> bool:
    return not (value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)))


def _parts(settings: Mapping[str, object]) -> list[tuple[str, str, str]]:
    """(setting, part of a name, what the part means) for each known setting of one configuration."""
    parts = []
    if _known(name := settings.get("endpoint_name")):
        parts.append(("endpoint_name", str(name), ""))
    for column in ("model", "prompt_variant"):
        if _known(value := settings.get(column)):
            parts.append((column, str(value), ""))
    if _known(cap := settings.get("max_tokens")):
        stop = settings.get("stop_sequences")
        nostop = _known(stop) and not stop
        parts.append(("max_tokens", f"mt{int(cap)}{'-nostop' if nostop else ''}",
                      f"at most {int(cap)} output tokens" + (", no stop sequences" if nostop else
                                                             ", ending at the dataset's stop sequences")))
    if _known(temperature := settings.get("temperature")):
        parts.append(("temperature", f"T{float(temperature):g}", f"temperature {float(temperature):g}"))
    if _known(rate := settings.get("arrival_rate_per_s")):
        parts.append(("arrival_rate_per_s", f"r{float(rate):g}", f"open loop at {float(rate):g} requests/s"))
    if _known(level := settings.get("concurrency")):
        level = int(level)
        parts.append(("concurrency", f"c{level}", f"{level} request{'s' if level != 1 else ''} in flight"))
    if _known(cache := settings.get("response_cache")) and cache:
        parts.append(("response_cache", "cache", "response cache on"))
    if _known(logprobs := settings.get("logprobs")) and logprobs:
        parts.append(("logprobs", "logprobs", "log-probabilities requested"))
    return parts


def config_settings(rows: Rows) -> pd.DataFrame:
    """One row per config_id (in id order) with its setting columns (those `rows` has), from DuckDB."""
    source = warehouse.relation(rows)
    columns = [c for c in NAME_COLUMNS if c in source.columns]
    config = warehouse.text(source, "config_id")
    # a config's settings are the same on each of its rows: any row's will do
    chosen = "".join(f", first({warehouse.text(source, c)}) AS {warehouse.quoted(c)}" for c in columns)
    return warehouse.over(source, f"SELECT {config} AS config_id{chosen} FROM {{rows}} WHERE {config} IS NOT NULL "
                                  "GROUP BY 1 ORDER BY 1").df()


@dataclass(frozen=True, eq=False)  # compares as the mapping it is
class ConfigLabels(Mapping[str, str]):
    """config_id -> short name, with what the names leave out (`shared`) and what their parts mean."""

    labels: dict[str, str]
    shared: tuple[str, ...] = ()  # the parts every configuration has, left out of the names
    meanings: dict[str, str] = field(default_factory=dict)  # part -> what it means, for the legend

    def __getitem__(self, config_id: str) -> str:
        return self.labels[config_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.labels)

    def __len__(self) -> int:
        return len(self.labels)


def config_labels(frame: Rows) -> ConfigLabels:
    """A short name for each configuration of `frame`: the parts of its settings that vary between
    the configurations, e.g. `few_shot_5 · mt16-nostop · c4 · cache` among configs that share the
    model and temperature.  A configuration whose settings are unknown (an import without a grid),
    or whose name would be empty or another's, goes by its config_id."""
    settings = config_settings(frame)
    parts = {row["config_id"]: _parts(row) for row in settings.to_dict("records")}
    if not parts:
        return ConfigLabels({})
    distinct: dict[str, set[str]] = {}
    for config_parts in parts.values():
        for setting, part, _ in config_parts:
            distinct.setdefault(setting, set()).add(part)
    # a setting varies when configurations differ in it, or when only some have its part (the cache flag)
    varying = {s for s, values in distinct.items()
               if len(values) > 1 or sum(any(p[0] == s for p in ps) for ps in parts.values()) < len(parts)}
    if len(parts) == 1 or not varying:
        return ConfigLabels({c: c for c in parts})
    named = {c: LABEL_SEPARATOR.join(part for setting, part, _ in ps if setting in varying) for c, ps in parts.items()}
    counts = pd.Series(list(named.values())).value_counts()
    labels = {c: name if name and counts[name] == 1 else c for c, name in named.items()}
    shortened = [c for c in labels if labels[c] != c]
    shared = tuple(dict.fromkeys(part for c in shortened for setting, part, _ in parts[c] if setting not in varying))
    meanings = {part: meaning for c in shortened for _, part, meaning in parts[c] if meaning}
    return ConfigLabels(labels, shared, meanings)


def labels_text(labels: ConfigLabels) -> str:
    """How configurations are named in tables and figures: what the short names leave out."""
    short = {c: label for c, label in labels.items() if label != c}
    if not short:
        return ""
    example, label = next(iter(short.items()))
    legend = [f"{part} = {meaning}" for part, meaning in labels.meanings.items()]
    return (f"Configurations are named by what differs between them; all share {' / '.join(labels.shared)} "
            f"(e.g. **{label}** is `{example}`)." + (f" In names: {'; '.join(legend)}." if legend else ""))


def name_answer_groups(groups: pd.DataFrame, *, id_col: str = "config_id") -> pd.DataFrame:
    """`accuracy.answer_groups` with each group named: answers (the name parts its members share,
    else its first member's name) and variants (what differs between its members, comma-separated)."""
    named = []
    for _, members in groups.groupby("group", sort=True)[id_col]:
        members = members.astype(str).tolist()
        common, rest = shared_parts(members)
        named.append((common if len(members) > 1 and common else members[0], members, rest))
    taken = pd.Series([name for name, _, _ in named]).value_counts()
    names, variants = {}, {}
    for name, members, rest in named:
        # two groups sharing the same parts would be indistinguishable by name: use a member's
        name = name if taken[name] == 1 else members[0]
        for member in members:
            names[member] = name
            variants[member] = ", ".join(r or "base" for r in rest) if len(members) > 1 else ""
    ids = groups[id_col].astype(str)
    return groups.assign(answers=ids.map(names), variants=ids.map(variants))[[id_col, "answers", "members", "variants"]]


def shared_parts(labels: Sequence[str]) -> tuple[str, list[str]]:
    """What a set of `config_labels` have in common and what is left of each: (`few_shot_5 · mt16`,
    [`c1`, `c4 · cache`]) for `few_shot_5 · mt16 · c1` and `few_shot_5 · mt16 · c4 · cache`."""
    split = [str(label).split(LABEL_SEPARATOR) for label in labels]
    if not split:
        return "", []
    common = [part for part in split[0] if all(part in other for other in split[1:])]
    rest = [LABEL_SEPARATOR.join(p for p in parts if p not in common) for parts in split]
    return LABEL_SEPARATOR.join(common), rest


def relabel(table: Rows, labels: Mapping[str, str],
            columns: Sequence[str] = ("config_id", "config_a", "config_b", "better", "dominated_by")) -> Rows:
    """`table` with config ids replaced by their `config_labels` in each of `columns` it has: a copy of a
    DataFrame, or a relation over a relation (the requests where they lie)."""
    if not isinstance(table, pd.DataFrame):
        for column in columns:
            table = warehouse.replaced(table, column, labels)
        return table
    out = table.copy(deep=False)  # copy-on-write: the replaced columns are new, the rest shared
    for column in columns:
        if column in out.columns:
            out[column] = per_distinct(out[column], lambda v: labels.get(v, v) if isinstance(v, str) else v)
    return out


def hue_column(table: pd.DataFrame, candidates: Sequence[str] = ("model", "prompt_variant", "max_tokens",
                                                                   "concurrency")) -> str | None:
    """The first of `candidates` that takes more than one value in `table`: what to color a figure by."""
    return next((c for c in candidates if c in table.columns and table[c].nunique(dropna=True) > 1), None)


def latency_groups(frame: pd.DataFrame, columns: Sequence[str] = ("model", "concurrency"), *,
                   name: str = "group") -> pd.DataFrame:
    """`frame` with a `name` column that joins the values of those `columns` that vary (`concurrency 4`,
    or `gpt-4o · concurrency 4` with two models): groups whose latency behaves differently, for fits
    and figures.  With nothing varying, the model names the group."""
    varying = [c for c in columns if c in frame.columns and frame[c].nunique(dropna=True) > 1] or ["model"]
    # one name per distinct combination, a categorical of the names in sorted order
    grouped = frame.groupby(varying, dropna=False, sort=False, observed=True)
    codes = grouped.ngroup().to_numpy()
    combinations = [key if isinstance(key, tuple) else (key,) for key in grouped.size().index]
    names = [LABEL_SEPARATOR.join(f"{c} {v}" if c == "concurrency" else str(v) for c, v in zip(varying, combination))
             for combination in combinations]
    return frame.assign(**{name: per_distinct(pd.Series(pd.Categorical.from_codes(codes, categories=range(len(names))),
                                                        index=frame.index), names.__getitem__)})


def latency_name(column: str) -> str:
    """Readable name of a latency quantile column: `p95_e2e_s` -> `p95 end-to-end latency`."""
    head, _, metric = column.partition("_")
    names = {"e2e_s": "end-to-end latency", "ttft_s": "time to first token"}
    return f"{head} {names[metric]}" if metric in names else column.replace("_", " ")


def group_members(groups: pd.DataFrame, *, id_col: str = "config_id") -> pd.DataFrame:
    """One row per `answer_groups` group, keyed like `one_per_answer_group`'s ids: id_col (the group's
    name), members, variants."""
    first = groups.drop_duplicates("answers")
    return pd.DataFrame({id_col: first["answers"].to_numpy(), "members": first["members"].to_numpy(),
                         "variants": first["variants"].to_numpy()})


def name_load_groups(sweep: pd.DataFrame, *, level: str = "concurrency", name: str = "config_group") -> pd.DataFrame:
    """`load.load_sweep` with a `name` column: the group settings that vary between its groups
    (`few_shot_5 · max tokens 8`); with one group, its model."""
    keys = [k for k in sweep.columns[:sweep.columns.get_loc(level)]]
    varying = [k for k in keys if sweep[k].nunique(dropna=True) > 1] or [k for k in keys if k == "model"] or keys[:1]
    names = [LABEL_SEPARATOR.join(part for k in varying if (part := _setting(k, row[k])))
             for row in sweep[varying].to_dict("records")]
    return sweep.assign(**{name: names}) if len(sweep) else sweep.assign(**{name: pd.Series(dtype=str)})


def _setting(column: str, value: object) -> str:
    """A setting as a group name shows it: names as they are, flags by what they mean, numbers with
    their column (`max_tokens 8`)."""
    if isinstance(value, str):
        return value
    if column in FLAG_NAMES and _known(value):
        return FLAG_NAMES[column][bool(value)]
    return f"{column.replace('_', ' ')} {value}"


def merge_labels(labels: Sequence[str]) -> str:
    """One label for points drawn at the same place: the name parts they share, preceded by the
    alternatives of the leading part when it differs (the model or prompt, the most telling), and
    how many they are: `few_shot_5 · mt16 · c1` and `few_shot_5 · mt16 · c4` -> `few_shot_5 · mt16
    (2 configurations)`; `zero_shot · mt8 · c1` and `few_shot_1 · mt8 · c4` -> `zero_shot/few_shot_1 · mt8
    (2 configurations)`."""
    unique = list(dict.fromkeys(str(label) for label in labels if str(label)))
    if len(unique) <= 1:
        return unique[0] if unique else ""
    common, _ = shared_parts(unique)
    split = [label.split(LABEL_SEPARATOR) for label in unique]
    leading = "/".join(dict.fromkeys(parts[0] for parts in split if parts[0] not in common.split(LABEL_SEPARATOR)))
    name = LABEL_SEPARATOR.join(p for p in (leading, common) if p)
    return f"{name} ({len(unique)} configurations)"
