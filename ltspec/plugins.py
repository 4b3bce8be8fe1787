"""Plugins: models, datasets and mask generators from a researcher's own package, without editing ltspec.

A package registers them through Python entry points, each entry's name the name a spec uses:

    [project.entry-points."ltspec.models"]
    tinynet = "mypkg.nets:TINYNET"          # a ltspec.nets.Architecture
    [project.entry-points."ltspec.datasets"]
    blobs = "mypkg.data:BLOBS"              # a ltspec.datasets.DatasetInfo
    [project.entry-points."ltspec.masks"]
    grasp = "mypkg.grasp:GENERATOR"         # a ltspec.masks.Generator

A spec stays data: it names a registered name, never code. Entry points are read once per process: by the spec
loader when a spec names something that is not built in (so `ltspec validate` of a spec without plugins never scans
the installed packages, nor imports torch, which a plugin model needs for its layer table), by each Ray task (a
worker process has not loaded the spec), and by `ltspec schema`. A notebook that builds a plugin's model by hand
calls `ltspec.plugins.load()` first. A registered mask generator enters the spec's models when the loader (or
`ltspec schema`) rebuilds them (`ltspec.spec.models.rebuild`).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

# Each group's registry: a module whose `register(name, entry)` checks the entry and refuses a name already taken,
# so that a plugin never replaces a built-in. The models' module is imported only when a model plugin is there.
GROUPS = {"ltspec.models": "ltspec.nets", "ltspec.datasets": "ltspec.datasets", "ltspec.masks": "ltspec.masks"}
_loaded = False


class PluginError(Exception):
    """A plugin that cannot be loaded or registered; the message names the entry point and its package."""


def load() -> None:
    """Register every installed plugin, once per process."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for group, registry in GROUPS.items():
        for point in entry_points(group=group):
            try:
                importlib.import_module(registry).register(point.name, point.load())
            except Exception as error:
                package = point.dist.name if point.dist else "an unknown distribution"
                raise PluginError(f"the {group} plugin `{point.name}` = {point.value} (from {package}) cannot be "
                                  f"used: {type(error).__name__}: {error}") from error
