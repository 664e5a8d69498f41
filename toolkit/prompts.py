"""Prompt variants: Jinja2 template files a user can read, edit or replace.

    data/prompts/<dataset>/dataset.yaml    grader, stop sequences, extra item fields the templates use
    data/prompts/<dataset>/<variant>.txt   a completion prompt (/v1/completions)
    data/prompts/<dataset>/<variant>.yaml  `system:` and `user:` templates (/v1/chat/completions)

Templates see `{{ input }}` and the item's extra fields by name, never `expected`.  They render with
StrictUndefined, and `load_dataset_spec` renders each one against a dummy item, so a misspelt variable fails
at load time, naming the file and the variable, before any request is sent.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import jinja2
import jinja2.meta
import yaml

from toolkit.datasets import Item
from toolkit.errors import ConfigError
from toolkit.graders import Grader, make_grader

SPEC_FILE = "dataset.yaml"
SPEC_KEYS = ("grader", "stop", "fields")
_OLD_SPEC_FILE = "task.yaml"  # its name before "task" became "dataset"
CHAT_KEYS = ("system", "user")
MAX_STOP = 4  # the OpenAI API accepts at most four stop sequences

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class PromptVariant:
    dataset: str
    name: str
    api: Literal["completions", "chat"]
    path: Path
    template: str | None
    system: str | None
    user: str | None


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset's prompts folder says: its grader, stop sequences and prompt variants."""

    name: str
    grader: Grader
    stop: tuple[str, ...]
    variants: Mapping[str, PromptVariant]

    def variant(self, name: str) -> PromptVariant:
        """The variant called `name`; ConfigError listing the available ones if there is none."""
        if name not in self.variants:
            where = next(iter(self.variants.values())).path.parent if self.variants else self.name
            raise ConfigError(where, f"unknown prompt variant {name!r} "
                                     f"(available: {', '.join(self.variants)})")
        return self.variants[name]


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def _context(item: Item) -> dict[str, str]:
    return {**item.fields, "input": item.input}


def _render_one(path: Path, field: str | None, source: str, item: Item) -> str:
    try:
        return _compile(source).render(_context(item))
    except jinja2.UndefinedError as exc:
        raise ConfigError(path, f"item {item.item_id!r}: {exc.message}", field=field) from exc


def render(variant: PromptVariant, item: Item) -> str | list[dict[str, str]]:
    """The prompt for one item: a string for completions, OpenAI chat messages for chat.

    Raises ConfigError naming the template file when the item lacks a field the template uses.
    """
    if variant.api == "completions":
        assert variant.template is not None
        return _render_one(variant.path, None, variant.template, item)
    assert variant.user is not None
    messages: list[dict[str, str]] = []
    if variant.system is not None:
        messages.append({"role": "system",
                         "content": _render_one(variant.path, "system", variant.system, item)})
    messages.append({"role": "user", "content": _render_one(variant.path, "user", variant.user, item)})
    return messages


def _check_template(path: Path, field: str | None, source: str, dummy: Item) -> None:
    """Fail now, with file and variable named, if `source` cannot render an item of this dataset."""
    try:  # compiling also catches unknown filters and tests (TemplateAssertionError)
        template, parsed = _compile(source), _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        where = f" (template line {exc.lineno})" if field else ""
        raise ConfigError(path, f"template syntax error{where}: {exc.message}",
                          line=None if field else exc.lineno, field=field) from exc
    known = set(_context(dummy))
    unknown = sorted(jinja2.meta.find_undeclared_variables(parsed) - known)
    if unknown:
        raise ConfigError(path, f"unknown template variable {unknown[0]!r} (available: "
                                f"{', '.join(sorted(known))}; add item fields to {SPEC_FILE} "
                                f"`fields`)", field=field)
    try:
        template.render(_context(dummy))
    except jinja2.TemplateError as exc:
        raise ConfigError(path, f"template does not render: {exc}", field=field) from exc


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(path, f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
                          line=mark.line + 1 if mark else None) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "not valid UTF-8") from exc
    if not isinstance(data, dict):
        raise ConfigError(path, f"must be a YAML mapping, got {type(data).__name__}")
    valid = SPEC_KEYS if path.name == SPEC_FILE else CHAT_KEYS
    unknown = sorted(str(key) for key in data if key not in valid)
    if unknown:
        raise ConfigError(path, f"unknown key (valid: {', '.join(valid)})", field=unknown[0])
    return data


def _string_list(path: Path, data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(path, f"must be a list of non-empty strings, got {value!r}", field=key)
    return tuple(value)


def _grader(path: Path, spec: object) -> Grader:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ConfigError(path, f"must be a grader name or a mapping with `name` and its "
                                f"parameters, got {spec!r}", field="grader")
    params = {k: v for k, v in spec.items() if k != "name"}
    try:
        return make_grader(spec["name"], **params)
    except ConfigError as exc:
        raise ConfigError(path, str(exc)) from exc


def _load_variant(dataset: str, path: Path, dummy: Item) -> PromptVariant:
    if path.suffix == ".txt":
        try:
            template = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(path, "not valid UTF-8") from exc
        _check_template(path, None, template, dummy)
        return PromptVariant(dataset, path.stem, "completions", path, template, None, None)
    data = _read_yaml(path)
    for key in CHAT_KEYS:
        value = data.get(key)
        if value is None and key == "system":
            continue
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(path, "missing or empty (a chat variant needs a `user` template)"
                              if value is None else f"must be a string, got {type(value).__name__}",
                              field=key)
        _check_template(path, key, value, dummy)
    return PromptVariant(dataset, path.stem, "chat", path, None, data.get("system"), data["user"])


def load_dataset_spec(prompts_dir: str | Path, dataset: str) -> DatasetSpec:
    """Load `<prompts_dir>/<dataset>/`: its dataset.yaml and every variant file, each checked by rendering.

    `.txt` files are completion variants, `.yaml` files (other than dataset.yaml) chat variants,
    `.md` files are notes and ignored.  Raises ConfigError naming the file, line or field at fault.
    """
    folder = Path(prompts_dir) / dataset
    spec_file = folder / SPEC_FILE
    if (folder / _OLD_SPEC_FILE).is_file():
        fix = f"remove it ({SPEC_FILE} is there)" if spec_file.is_file() else "rename it"
        raise ConfigError(folder / _OLD_SPEC_FILE, f"this file is now called {SPEC_FILE}: {fix}")
    if not spec_file.is_file():
        available = sorted(p.parent.name for p in Path(prompts_dir).glob(f"*/{SPEC_FILE}"))
        raise ConfigError(spec_file, f"no such dataset {dataset!r} "
                                     f"(available: {', '.join(available) or 'none'})")
    spec = _read_yaml(spec_file)
    if "grader" not in spec:
        raise ConfigError(spec_file, "missing", field="grader")
    grader = _grader(spec_file, spec["grader"])
    stop = _string_list(spec_file, spec, "stop")
    if len(stop) > MAX_STOP:
        raise ConfigError(spec_file, f"at most {MAX_STOP} stop sequences, got {len(stop)}", field="stop")
    fields = _string_list(spec_file, spec, "fields")
    dummy = Item(f"{dataset}-dummy", "dummy input", "dummy expected",
                 MappingProxyType({f: f"dummy {f}" for f in fields}))
    variants: dict[str, PromptVariant] = {}
    for path in sorted(folder.iterdir()):
        if path.name == SPEC_FILE or path.name.startswith(".") or path.suffix == ".md":
            continue
        if path.suffix not in (".txt", ".yaml"):
            raise ConfigError(path, "not a prompt variant: name it .txt (completion template) or "
                                    ".yaml (chat `system`/`user` templates)")
        if path.stem in variants:
            raise ConfigError(path, f"variant {path.stem!r} is defined twice "
                                    f"(also {variants[path.stem].path.name})")
        variants[path.stem] = _load_variant(dataset, path, dummy)
    if not variants:
        raise ConfigError(folder, "no prompt variants (.txt or .yaml files)")
    return DatasetSpec(dataset, grader, stop, MappingProxyType(variants))
