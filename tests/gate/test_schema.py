"""harness/schemas/submission.schema.json: a valid JSON Schema that the gate's own validator applies exactly."""
from __future__ import annotations

import copy
import json

import pytest

from harness.gate import jsonschema_lite as js

jsonschema = pytest.importorskip("jsonschema")

VALID = {
    "author": "A B", "github_id": "a-b", "name": "n", "blurb": "b", "date": "2026-03-25",
    "val_loss": 1.89, "val_bpb": 1.119, "bytes_total": 15_900_000, "bytes_code": 31_505,
}


def test_schema_is_valid_draft_2020_12():
    schema = js.load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == {"author", "github_id", "name", "blurb", "date", "val_loss", "val_bpb",
                                       "bytes_total", "bytes_code"}
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{name} is not documented"


def test_schema_uses_only_what_the_validator_implements():
    assert js.schema_keywords(js.load_schema()) <= js.SUPPORTED


def variants():
    """Documents around the schema's edges: every field wrong, missing or odd, one at a time."""
    yield VALID
    yield {**VALID, "seeds": [1337, 42, 2025], "track": "10min_16mb", "val_bpb_std": 0.0004}
    odd = [None, True, 0, -1, 1.5, 1.0, "", "x", "2026-13-45", [], [1, 1], [1, "2"], {}, 1e9, 15000000.0]
    for key in list(VALID) + ["seeds", "track", "systems_only", "systems_only_reason", "compared_to",
                              "val_loss_std"]:
        for value in odd:
            yield {**VALID, key: value}
        if key in VALID:
            d = dict(VALID)
            del d[key]
            yield d
    for gid in ("a", "a-b-c", "-a", "a-", "a--b", "x" * 39, "x" * 40, "@me", "a_b"):
        yield {**VALID, "github_id": gid}
    for date in ("2026-03-25T10:00:00Z", "2026-03-25 10:00", "2026-03-25T10:00:00+02:00", "25/03/2026", "2026-3-5"):
        yield {**VALID, "date": date}
    yield {**VALID, "systems_only": True}
    yield {**VALID, "systems_only": True, "systems_only_reason": "FA3 kernels only, same model"}
    yield {**VALID, "systems_only": False}
    yield {**VALID, "compared_to": {"val_bpb": [1.1, 1.2], "val_loss": 1.9, "pr": 3, "name": "x"}}
    yield {**VALID, "compared_to": {"val_bpb": [], "extra": 1}}
    yield {**VALID, "compared_to": {"val_loss": 1.9}}
    yield {**VALID, "track": True, "seeds": [True, 2]}
    yield {**VALID, "unknown_extra_field": {"anything": [1, 2]}}


@pytest.mark.parametrize("doc", list(variants()), ids=lambda d: json.dumps(d, sort_keys=True)[:60])
def test_validator_agrees_with_jsonschema(doc):
    schema = js.load_schema()
    ref = jsonschema.Draft202012Validator(schema)
    ours = js.validate(copy.deepcopy(doc), schema)
    assert (not ours) == ref.is_valid(doc), [e.message for e in ours] or [e.message for e in ref.iter_errors(doc)]


@pytest.mark.parametrize("name", ["2026-03-19_LoRA_TTT_DocIsolation", "2026-03-23_11L_LeakyReLU_XSA4_LegalTTT",
                                  "2026-04-11_SP8192_PreQuantTTT_AdamW_GPTQ"])
def test_bundled_examples_validate(scripts, name):
    data = json.loads((scripts["examples"] / name / "submission.json").read_text())
    assert js.validate(data, js.load_schema()) == []


def test_locate_positions():
    text = '{\n  "a": [1,\n        {"b~/c": "x"}],\n  "d": {}, "e": [ ]\n}'
    loc = js.locate(text)
    assert loc.at("") == (1, 1)
    assert loc.at("/a") == (2, 8) and loc.at("/a", key=True) == (2, 3)
    assert loc.at("/a/0") == (2, 9)
    assert loc.at("/a/1/b~0~1c") == (3, 18)
    assert loc.at("/d") == (4, 8) and loc.at("/e") == (4, 17)
    assert loc.at("/a/7") == loc.at("/a")  # a missing item falls back to its parent
    assert js.locate('{"k": 1, "k": 2}').duplicates == [("/k", 9)]
