"""The specs that come with ltspec, by name, and copying one to edit (`ltspec specs`, `ltspec init`).

They are the repository's `specs/` folder, which the package carries as `ltspec/specs` (a link in a checkout,
package data in a wheel), so a name like `paper/table1` means the same file however ltspec was installed. Reading
one's description parses its TOML only: listing them imports neither pydantic nor torch.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

FOLDER = Path(__file__).parent / "specs"
QUICKSTART = Path(__file__).parent / "quickstart.toml"
SCHEMA_LINE = re.compile(r"^#:schema .*\n", re.MULTILINE)
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


def copy(source: str | Path, name: str, folder: Path = Path(".")) -> Path:
    """Write `folder/<name>.toml`, a copy of `source` renamed to `name` (so its runs get their own MLflow
    experiment), without the editor's schema line that points into the package; never overwrites a file."""
    if not NAME.fullmatch(name):
        raise ValueError(f"`{name}` cannot name a spec: use letters, digits, `.`, `_` and `-`, starting with a "
                         "letter or digit")
    target = folder / f"{name}.toml"
    if target.exists():
        raise FileExistsError(f"{target} exists already; choose another name or delete it")
    text = SCHEMA_LINE.sub("", resolve(source).read_text(), count=1)
    target.write_text(NAME_LINE.sub(f'name = "{name}"', text, count=1))
    return target
