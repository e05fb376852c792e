"""Documents are read as kubectl reads them, and hostile ones are refused in one line, fast."""

from __future__ import annotations

import pytest

from ftjob.api.kube_yaml import MAX_BYTES, DocumentError, load_all, load_value


@pytest.mark.parametrize("text,expected", [
    ("5e-5", 5e-5),            # YAML 1.1 (PyYAML's default) reads this as a string
    ("1e3", 1000.0),
    ("1.5", 1.5),
    ("2.", 2.0),
    (".5", 0.5),
    ("42", 42),
    ("-7", -7),
    ("+7", 7),
    ("1_000", 1000),
    ("0x1F", 31),
    ("017", 15),               # a leading 0 is octal in go-yaml, as in YAML 1.1
    ("0o17", 15),
    ("0b101", 5),
    ("08", 8.0),               # not octal, so go-yaml reads it as a float
    ("y", True),               # go-yaml v2's YAML 1.1 booleans, y/n included
    ("Yes", True),
    ("on", True),
    ("n", False),
    ("OFF", False),
    ("true", True),
    ("~", None),
    ("null", None),
    ("2024-01-01", "2024-01-01"),  # timestamps stay strings
    ("1:30", "1:30"),          # no sexagesimal numbers
    ("1.2.3", "1.2.3"),
    ("'5e-5'", "5e-5"),        # quoted is always a string
    ("!!str 42", "42"),
    ("v1.2", "v1.2"),
])
def test_plain_scalars_mean_what_they_mean_to_kubectl(text, expected):
    value = load_value(text)
    assert value == expected and type(value) is type(expected)


def test_json_documents_and_multiple_yaml_documents():
    assert load_all('{"spec": {"training": {"learningRate": 5e-05}}}') == \
        [{"spec": {"training": {"learningRate": 5e-05}}}]
    assert load_all("a: 1\n---\n---\nb: 2\n") == [{"a": 1}, {"b": 2}]


def test_utf16_with_a_byte_order_mark_is_read_like_utf8():
    assert load_all(b"\xff\xfe" + "a: 5e-5\n".encode("utf-16-le")) == [{"a": 5e-5}]
    assert load_all(b"\xef\xbb\xbfa: 1\n") == [{"a": 1}]


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n"
    for i in range(9))


@pytest.mark.parametrize("data,message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff", "is not UTF-8 text"),
    ("a: \x00", "is not valid YAML: control characters are not allowed"),
    ("a: [1, 2", "is not valid YAML"),
    ("{", "is not valid JSON"),
    ("a: &a [*a]", "refers to itself through an alias"),
    ("&a {b: *a}", "refers to itself through an alias"),
    (ALIAS_BOMB, "expands to more than 100000 values"),
    ("[" * 200 + "]" * 200, "nests deeper than 64 levels"),
    ('{"a": ' * 200 + "1" + "}" * 200, "nests deeper than 64 levels"),
    ("".join(" " * i + "a:\n" for i in range(100)) + " " * 100 + "1\n", "nests deeper"),
    ("rate: .nan", "holds nan, a number JSON (and Kubernetes) cannot carry"),
    ("rate: -.inf", "holds -inf"),
    ("!!python/object:os.system x", "could not determine a constructor"),
    ("!!bool maybe", "'maybe' is not a boolean"),
    (b"a: " + b"x" * (MAX_BYTES + 1), "the Kubernetes API server accepts at most"),
])
def test_hostile_documents_get_one_line(data, message):
    with pytest.raises(DocumentError) as refused:
        load_all(data)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_megabyte_string_is_read_whole():
    # How long it takes is measured by bench/validate_bench.py, not asserted here.
    (document,) = load_all("name: '" + "x" * 2**20 + "'\n")
    assert len(document["name"]) == 2**20
