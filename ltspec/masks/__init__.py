"""Mask generators, one module each, found by the `kind` of a `[masks.NAME]` table.

Adding a pruning method is one new module (its settings model, how it expands into stages, how it makes a mask:
see `ltspec.masks.base`) and one line in `BUILT_IN` below. A researcher's own package adds generators without
editing ltspec, through the `ltspec.masks` entry point group (`ltspec.plugins`). The spec's union of mask tables is
built from `REGISTRY`, so a kind that is not registered cannot be written, compiled or run.
"""

from ltspec.strict import pydantic_plugins_off

with pydantic_plugins_off():
    from ltspec.masks import admm, gradual, imp, magnitude_init, oneshot, random, shuffle, snip, synflow
    from ltspec.masks.base import AtSparsities, Generator, Made, MaskMade, MaskSettings

BUILT_IN = (
    oneshot.GENERATOR,
    imp.GENERATOR,
    admm.GENERATOR,
    random.GENERATOR,
    magnitude_init.GENERATOR,
    snip.GENERATOR,
    synflow.GENERATOR,
    gradual.GENERATOR,
    shuffle.GENERATOR,
)

REGISTRY: dict[str, Generator] = {generator.kind: generator for generator in BUILT_IN}


def register(name: str, generator: Generator) -> None:
    """Add a generator (a plugin's); a kind already taken is refused, so that a plugin never replaces a built-in."""
    if not isinstance(generator, Generator):
        raise TypeError(f"a mask plugin must be a ltspec.masks.Generator, got {type(generator).__name__}")
    if generator.kind != name:
        raise ValueError(f"the entry point is named `{name}` but the generator's kind is `{generator.kind}`")
    known = REGISTRY.get(generator.kind)
    if known is not None and known is not generator:
        raise ValueError(f"mask generator kind `{generator.kind}` is registered twice")
    REGISTRY[generator.kind] = generator


def generator(kind: str) -> Generator:
    """The generator of a kind, built in or registered by a plugin (`ltspec.plugins.load`)."""
    return REGISTRY[kind]


__all__ = ["AtSparsities", "BUILT_IN", "Generator", "Made", "MaskMade", "MaskSettings", "REGISTRY", "generator",
           "register"]
