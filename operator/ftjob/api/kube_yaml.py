"""YAML and JSON read the way kubectl reads them, in bounded time and memory.

kubectl turns YAML into JSON with go-yaml v2 (through sigs.k8s.io/yaml) before the API
server sees it, and PyYAML's defaults differ from that in ways users meet: `5e-5` is a
number there (YAML 1.1 wants a dot), `y`/`n` are booleans, timestamps stay strings, and
sexagesimal `1:30` is not a number. A document that starts with `{` is JSON, as in kubectl.
UTF-8 and UTF-16 with a byte-order mark are accepted, as kubectl accepts them.

Everything that would make reading or validating a document slow or unbounded is refused
with one line: more than the API server's 3 MiB request limit, aliases that expand into a
huge or endless tree, nesting deeper than any FineTuneJob needs, and NaN or infinite
numbers (JSON, and so Kubernetes, cannot carry them).
"""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import Any

import yaml

# The API server refuses request bodies over 3 MiB (its default --max-request-bytes).
MAX_BYTES = 3 * 1024 * 1024
# Values in one document once aliases are expanded: a FineTuneJob has a few hundred.
MAX_VALUES = 100_000
# A FineTuneJob nests about ten levels (podTemplate.affinity is the deepest part).
MAX_DEPTH = 64


class DocumentError(ValueError):
    """The input is not a readable document; the message is one line."""


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class KubeLoader(_Loader):  # type: ignore[misc, valid-type]
    """SafeLoader with go-yaml v2's implicit types for plain scalars."""


KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
                           "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_BOOLEANS = {**dict.fromkeys("y Y yes Yes YES true True TRUE on On ON".split(), True),
             **dict.fromkeys("n N no No NO false False FALSE off Off OFF".split(), False)}
KubeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(f"^(?:{'|'.join(_BOOLEANS)})$"), list("yYnNtTfFoO"))


def _construct_bool(loader, node) -> bool:
    text = loader.construct_scalar(node)
    if text not in _BOOLEANS:
        raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not a boolean",
                                                node.start_mark)
    return _BOOLEANS[text]


KubeLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_NUMBER_TAG = "tag:ftjob.dev,2026:number"
KubeLoader.add_implicit_resolver(_NUMBER_TAG, re.compile(r"^[-+.0-9][-+._0-9a-zA-Z]*$"),
                                 list("-+.0123456789"))
# go-yaml's float syntax, after it failed to read the scalar as an integer.
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_SPECIAL_FLOATS = {".inf": math.inf, ".Inf": math.inf, ".INF": math.inf,
                   "+.inf": math.inf, "+.Inf": math.inf, "+.INF": math.inf,
                   "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf,
                   ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan}
_INT_PREFIXES = {"0x": 16, "0X": 16, "0o": 8, "0O": 8, "0b": 2, "0B": 2}
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


def _go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64) (or ParseUint), which go-yaml tries first: a sign, then
    0x / 0o / 0b / a leading 0 (octal) or decimal digits."""
    sign = -1 if text[:1] == "-" else 1
    digits = text[1:] if text[:1] in "+-" else text
    base = _INT_PREFIXES.get(digits[:2], 8 if len(digits) > 1 and digits[0] == "0" else 10)
    if digits[:2] in _INT_PREFIXES:
        digits = digits[2:]
    if not digits or any(c not in _DIGITS[base] for c in digits):
        return None
    value = sign * int(digits, base)
    return value if -2**63 <= value < 2**64 else None


def _construct_number(loader, node) -> Any:
    text = loader.construct_scalar(node)
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    plain = text.replace("_", "")
    value = _go_int(plain) if plain else None
    if value is not None:
        return value
    if _FLOAT.match(plain):
        return float(plain)
    return text


KubeLoader.add_constructor(_NUMBER_TAG, _construct_number)


def decode(data: bytes) -> str:
    """Text as kubectl reads files: UTF-8 (a BOM is dropped) or UTF-16 with a BOM."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise DocumentError(f"is not UTF-8 text (byte {error.start} cannot be decoded); "
                            "save it as UTF-8") from None


def _where(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _yaml_message(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None) or getattr(error, "reason", None) or \
        str(error).splitlines()[0]
    return f"is not valid YAML: {_short(str(problem))}{_where(error)}"


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _check_node(root: yaml.Node) -> None:
    """Counts values with aliases expanded, refusing cycles, bombs and deep nesting,
    before anything is constructed from the node graph."""
    count = 0
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(node))
            continue
        count += 1
        if count > MAX_VALUES:
            raise DocumentError(f"expands to more than {MAX_VALUES} values (through aliases)")
        if depth > MAX_DEPTH:
            raise DocumentError(f"nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.ScalarNode):
            continue
        if id(node) in on_path:
            raise DocumentError("refers to itself through an alias (a recursive document)")
        on_path.add(id(node))
        stack.append((node, depth, True))
        children = [part for pair in node.value for part in pair] \
            if isinstance(node, yaml.MappingNode) else node.value
        stack.extend((child, depth + 1, False) for child in children)


def _check_value(root: Any) -> None:
    """JSON documents: depth and finite numbers (no aliases to expand)."""
    stack = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DocumentError(f"nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, float) and not math.isfinite(value):
            raise DocumentError(f"holds {value}, a number JSON (and Kubernetes) cannot carry")
        children = value.values() if isinstance(value, dict) else \
            value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)


def _no_special_floats(value: Any) -> Any:
    _check_value(value)
    return value


def load_all(data: bytes | str) -> list[Any]:
    """Every non-empty document of a file, as kubectl would send them."""
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            raise DocumentError(f"is {len(data)} bytes; the Kubernetes API server accepts at "
                                f"most {MAX_BYTES} ({MAX_BYTES // 2**20} MiB)")
        text = decode(data)
    else:
        text = data
        if len(text) > MAX_BYTES:
            raise DocumentError(f"is {len(text)} characters; the Kubernetes API server "
                                f"accepts at most {MAX_BYTES} bytes")
    if text.lstrip().startswith("{"):
        try:
            return [_no_special_floats(json.loads(text))]
        except RecursionError:
            raise DocumentError(f"nests deeper than {MAX_DEPTH} levels") from None
        except json.JSONDecodeError as error:
            raise DocumentError(f"is not valid JSON: {error.msg} at line {error.lineno}, "
                                f"column {error.colno}") from None
    loader = KubeLoader(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _check_node(node)
            document = loader.construct_document(node)
            if document is not None:
                documents.append(_no_special_floats(document))
    except yaml.YAMLError as error:
        raise DocumentError(_yaml_message(error)) from None
    finally:
        loader.dispose()
    return documents


def load_value(text: str) -> Any:
    """One value (a `--set` right-hand side), read like a document."""
    documents = load_all(text)
    if len(documents) > 1:
        raise DocumentError("holds more than one YAML document")
    return documents[0] if documents else None
