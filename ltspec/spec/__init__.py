"""The spec: what a researcher writes, checked before anything runs."""

from ltspec.spec.errors import Problem, SpecError
from ltspec.spec.load import LoadedSpec, SweepPoint, load_spec, parse_spec
from ltspec.spec.models import SCHEMA_VERSION, Spec

__all__ = ["SCHEMA_VERSION", "LoadedSpec", "Problem", "Spec", "SpecError", "SweepPoint", "load_spec", "parse_spec"]
