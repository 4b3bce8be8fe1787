"""The JSON schema of the spec, generated from the pydantic models so that it can never drift from them."""

from __future__ import annotations

import json

from ltspec.spec.models import Spec


def schema() -> dict:
    document = Spec.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "ltspec.schema.json",
            "title": "ltspec experiment spec", **{k: v for k, v in document.items() if k != "title"}}


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"
