"""The spec: what a researcher writes, checked before anything runs.

The models are built without pydantic's plugin discovery (`ltspec.strict.pydantic_plugins_off`): no plugin has
business with a spec, and the discovery reads the metadata of every installed distribution.
"""

from ltspec.strict import pydantic_plugins_off

with pydantic_plugins_off():
    from ltspec.spec.errors import Problem, SpecError
    from ltspec.spec.load import LoadedSpec, SweepPoint, load_spec, parse_spec
    from ltspec.spec.models import SCHEMA_VERSION, Spec

__all__ = ["SCHEMA_VERSION", "LoadedSpec", "Problem", "Spec", "SpecError", "SweepPoint", "load_spec", "parse_spec"]
