"""The JSON schema of the spec, generated from the pydantic models so that it can never drift from them.

Pydantic's schema is shaped here for what TOML editors actually run: Taplo (Even Better TOML) and Tombi, whose
checks `tests/test_schema_editors.py` runs on every shipped spec and on bad ones. Every step is generic over the
models, so a new mask generator or optimizer gets the same treatment:
- draft-07, which both engines implement fully (`definitions`, `items` as a list for pairs); no `$id`, since a
  relative `$id` makes Taplo refuse the whole schema;
- no `null`, which TOML cannot write: an optional setting is one that is left out;
- a union told apart by `kind` (a discriminated union) becomes a table whose `kind` has an enum of the kinds and
  whose other keys are checked by if/then on that kind, so an editor says "`imq` is not one of oneshot, imp, ..."
  or flags the one wrong key, rather than "not valid under any of the schemas listed in oneOf" for every member;
- every field has a title and a description, generated from its type, range and default where the model has none.
"""

from __future__ import annotations

import json
from typing import Any

from ltspec.spec.models import Spec

DRAFT = "http://json-schema.org/draft-07/schema#"
_TYPES = {"integer": "a whole number", "number": "a number", "string": "a string", "boolean": "true or false",
          "array": "an array", "object": "a table"}
_BOUNDS = {"minimum": "at least", "exclusiveMinimum": "greater than", "maximum": "at most",
           "exclusiveMaximum": "less than"}


def schema() -> dict:
    document = _shape(Spec.model_json_schema(ref_template="#/definitions/{model}"))
    document["definitions"] = document.pop("$defs")
    return {"$schema": DRAFT, "title": "ltspec experiment spec",
            **{key: value for key, value in document.items() if key != "title"}}


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


def _shape(node: Any) -> Any:
    """Shape every subschema, bottom up."""
    if isinstance(node, list):
        return [_shape(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: value if key in ("default", "const", "enum") else _shape(value) for key, value in node.items()}
    node = _without_null(node)
    if "discriminator" in node:
        node = _tagged(node)
    if "$ref" in node and len(node) > 1:  # draft-07 ignores a $ref's siblings (a default, a description)
        node = {"allOf": [{"$ref": node.pop("$ref")}], **node}
    if "prefixItems" in node:
        node["items"] = node.pop("prefixItems")
        node["additionalItems"] = False
    for name, field in node.get("properties", {}).items():
        field.setdefault("title", name.replace("_", " ").capitalize())
        field.setdefault("description", _describe(field))
    return node


def _without_null(node: dict) -> dict:
    """`X | None` as just X: TOML has no null, and leaving the key out is how a spec says "none"."""
    options = node.get("anyOf")
    if options and {"type": "null"} in options:
        kept = [option for option in options if option != {"type": "null"}]
        node = {key: value for key, value in node.items() if key != "anyOf"}
        node.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
    if "default" in node and node["default"] is None:
        del node["default"]
    return node


def _tagged(node: dict) -> dict:
    """A discriminated union as one table: `kind` from an enum, the rest checked by the member that kind names."""
    tag = node["discriminator"]["propertyName"]
    mapping = node["discriminator"]["mapping"]
    kept = {key: value for key, value in node.items() if key not in ("discriminator", "oneOf")}
    return {
        **kept, "type": "object", "required": [tag], "additionalProperties": True,  # the member says which keys
        "properties": {tag: {"enum": list(mapping), "title": tag.capitalize(),
                             "description": f"Which kind: {', '.join(mapping)}."}},
        "allOf": [{"if": {"properties": {tag: {"const": kind}}, "required": [tag]}, "then": {"$ref": ref}}
                  for kind, ref in mapping.items()],
    }


def _describe(field: dict) -> str:
    """A sentence from a field's schema: what it takes and its default."""
    if "enum" in field or "const" in field:
        words = "one of " + ", ".join(map(str, field.get("enum", [field.get("const")])))
    elif "$ref" in field or "allOf" in field:
        words = "a table"
    else:
        words = _TYPES.get(field.get("type", ""), "a value")
        words += "".join(f", {text} {field[bound]}" for bound, text in _BOUNDS.items() if bound in field)
    default = f"; default {json.dumps(field['default'])}" if "default" in field else ""
    return f"{words[0].upper()}{words[1:]}{default}."
