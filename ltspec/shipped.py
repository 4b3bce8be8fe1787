"""The specs that come with ltspec, by name, and copying one to edit (`ltspec specs`, `ltspec init`).

They are the repository's `specs/` folder, which the package carries as `ltspec/specs` (a link in a checkout,
package data in a wheel), so a name like `paper/table1` means the same file however ltspec was installed. Reading
one's description parses its TOML only: listing them imports neither pydantic nor torch.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

FOLDER = Path(__file__).parent / "specs"
QUICKSTART = Path(__file__).parent / "quickstart.toml"
SCHEMA = Path(__file__).parent.parent / "schemas" / "ltspec.schema.json"  # in a checkout (`ltspec schema` writes it)
NAME_LINE = re.compile(r'^name = ".*"$', re.MULTILINE)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def shipped() -> dict[str, Path]:
    """Every shipped spec by name (`quickstart`, `vgg16`, `paper/table1`), the quickstart first."""
    found = {path.relative_to(FOLDER).with_suffix("").as_posix(): path for path in sorted(FOLDER.rglob("*.toml"))}
    return {"quickstart": QUICKSTART, **{name: path for name, path in found.items() if name != "quickstart"}}


def description(path: Path) -> str:
    """The spec's `description` line, or its name when it has none."""
    data = tomllib.loads(path.read_text())
    return data.get("description") or data.get("name", "")


def resolve(name: str | Path) -> Path:
    """A shipped spec's name, or a path to any spec file; raises FileNotFoundError listing the shipped names."""
    known = shipped()
    if str(name) in known:
        return known[str(name)]
    if Path(name).is_file():
        return Path(name)
    raise FileNotFoundError(f"`{name}` is neither a shipped spec nor a file; the shipped specs are "
                            f"{', '.join(known)} (`ltspec specs` lists them)")


def copy(source: str | Path, name: str, folder: Path = Path("."), schema: Path = SCHEMA) -> Path:
    """Write `folder/<name>.toml`, a copy of `source` renamed to `name` (so its runs get their own MLflow
    experiment); never overwrites a file.

    Its header is the copy's own: a `#:schema` line pointing from the new file's folder to the schema (where one
    is there to point at, `schema`), a line saying where it came from and how to run it, then the source's comments
    on what it is for (its own command lines dropped: they name the source). The rest is the source as written."""
    if not NAME.fullmatch(name):
        raise ValueError(f"`{name}` cannot name a spec: use letters, digits, `.`, `_` and `-`, starting with a "
                         "letter or digit")
    target = folder / f"{name}.toml"
    if target.exists():
        raise FileExistsError(f"{target} exists already; choose another name or delete it")
    origin = resolve(source)
    lines = origin.read_text().splitlines(keepends=True)
    body = next((index for index, line in enumerate(lines) if not line.startswith("#")), len(lines))
    about = [line for line in lines[:body] if not line.startswith(("#:schema", "#   ltspec "))]
    header = [f"#:schema {os.path.relpath(schema.resolve(), folder.resolve())}\n"] if schema.is_file() else []
    header += [f"# {name}: copied from {source} by `ltspec init`; edit it, then\n",
               f"#   ltspec validate {target.name} && ltspec run {target.name} && ltspec report {target.name}\n"]
    text = "".join([*header, *about, *lines[body:]])
    target.write_text(NAME_LINE.sub(f'name = "{name}"', text, count=1))
    return target
