"""The pydantic base of every table a spec holds, and the value types the tables share.

The spec models (`ltspec.spec.models`) and the mask generators' own tables (`ltspec.masks.*`) both build on these,
so a generator added in one file checks its settings exactly as the built-in tables do. Nothing here imports more
than pydantic: `ltspec validate` stays fast.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Unit:
    """What a setting counts, marked on its type, so that settings in the same unit can be rescaled together: the
    rehearsal (`ltspec.rehearsal`) maps every epoch-valued setting of a spec by one rule, so that milestones,
    rewind points and pruning schedules keep their order at toy scale. A plugin's mask generator that types its
    settings with `Epochs`, `EpochIndex`, `Steps` or `WeightPoint` is rescaled with the built-in ones."""

    name: str


EPOCHS = Unit("epochs")  # an epoch count, or an epoch of a run: rescaled together, their order kept
STEPS = Unit("steps")  # optimizer steps: rescaled with the steps in an epoch
WEIGHT_POINTS = Unit("weight points")  # `init`, `rewind@k`, ... (`ltspec.points`): k is an epoch

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]
Epochs = Annotated[int, Field(ge=1), EPOCHS]
EpochIndex = Annotated[int, Field(ge=0), EPOCHS]
Steps = Annotated[int, Field(ge=1), STEPS]
WeightPoint = Annotated[str, WEIGHT_POINTS]
Scope = Literal["layerwise", "global"]
TensorKind = Literal["conv", "linear"]
NetworkMode = Literal["eval", "train"]  # torch's module modes: batch norm on running or batch statistics


@contextmanager
def pydantic_plugins_off() -> Iterator[None]:
    """Build models without pydantic's plugin discovery, then put the user's setting back.

    Building a validator makes pydantic look for plugins in the metadata of every installed distribution, a cost
    that grows with every package installed beside ltspec (torch, MLflow, Ray). No plugin has business with a spec.
    """
    setting = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    try:
        yield
    finally:
        if setting is None:
            del os.environ["PYDANTIC_DISABLE_PLUGINS"]
        else:
            os.environ["PYDANTIC_DISABLE_PLUGINS"] = setting


with pydantic_plugins_off():
    class Strict(BaseModel):
        """The base of every spec table: unknown keys are errors (a misspelt field must not fall back to its
        default), and values are taken as typed, never converted.

        TOML has types, so `epochs = "12"`, `download = "yes"` or `seeds = ["0"]` is a mistake to report, not to
        repair (the JSON schema, which editors check, says the same). The one widening is JSON's: an integer is a
        number, so `lr = 1` is a float. `inf` and `nan`, which TOML can write, are no setting's value.
        """

        model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, strict=True,
                                  allow_inf_nan=False)
