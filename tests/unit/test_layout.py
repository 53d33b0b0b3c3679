"""The layering the tree promises (docs/architecture.md, "Layout"), checked on every import."""

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "viruses"


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved, function-level ones included."""
    package = ".".join(path.relative_to(APP.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def modules(*, under: str = "") -> list[Path]:
    return sorted(p for p in (APP / under).rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(APP)))
def test_the_app_never_imports_the_server_part(path):
    relative = path.relative_to(APP)
    imported = imports_of(path)
    if relative.parts[0] != "live" and relative != Path("apps.py"):
        assert not {m for m in imported if m.startswith("viruses.live")}, f"{relative} imports live/"
    if relative.parts[0] != "live" and relative != Path("apps.py"):  # it registers their checks
        assert not {m for m in imported if m.startswith("viruses.live.daphne")}, (
            f"{relative} imports live/daphne/"
        )


@pytest.mark.parametrize("path", modules(under="live/daphne"), ids=lambda p: p.name)
def test_the_daphne_quarantine_imports_no_game_policy(path):
    imported = {m for m in imports_of(path) if not m.startswith("viruses.live.daphne")}
    assert not {m for m in imported if m.startswith(("viruses.guards", "viruses.services", "viruses.live."))}
