"""The documentation pages under docs/ cannot rot: their examples run here.

* Every ```python block of a page runs, in page order, in one namespace per
  page (later blocks may use names of earlier ones), in a fresh working
  directory. The blocks carry their own ``assert`` statements.
* Every ``mlscall SUBCOMMAND --option`` written in a ```sh block names an
  option that subcommand really has, and every ``python -m MODULE`` names an
  importable module.
* Every relative Markdown link of a page points to an existing file.
* The layer table of docs/architecture.md holds: ``mls`` and ``sframe`` do
  no I/O and import no other package of the project, ``signaling`` imports
  neither ``mls`` nor ``media``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from media.cli import SUBCOMMANDS, build_parser

from conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"
PAGES = ("architecture.md", "mls.md", "sframe.md", "media.md", "deployment.md")
PROJECT_PACKAGES = {"mls", "sframe", "signaling", "media"}

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def blocks(page: str, language: str) -> list[str]:
    """The fenced code blocks of ``page`` in ``language``, in order."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return [body for lang, body in _FENCE.findall(text) if lang == language]


@pytest.mark.parametrize("page", PAGES)
def test_python_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = blocks(page, "python")
    assert code, f"{page} has no Python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.removesuffix('.md')}"}
    for index, source in enumerate(code):
        compiled = compile(source, f"docs/{page} (python block {index + 1})", "exec")
        exec(compiled, namespace)  # noqa: S102 - the documentation's own examples


def _shell_commands(page: str) -> list[list[str]]:
    """Shell commands of a page's ```sh blocks, continuation lines joined, comments dropped."""
    commands = []
    for body in blocks(page, "sh"):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(shlex.split(line))
    return commands


def _options(subcommand: str) -> set[str]:
    parser, subs = build_parser()
    module = importlib.import_module(SUBCOMMANDS[subcommand][0])
    module.configure(subs[subcommand])
    return {option for action in subs[subcommand]._actions for option in action.option_strings}


@pytest.mark.parametrize("page", PAGES)
def test_shell_commands_name_real_options(page: str) -> None:
    checked = 0
    for argv in _shell_commands(page):
        words = [w for w in argv if not re.fullmatch(r"\w+=\S*", w)]  # drop VAR=value prefixes
        if "mlscall" in words:
            rest = words[words.index("mlscall") + 1 :]
            assert rest and rest[0] in SUBCOMMANDS, f"{page}: unknown subcommand in {argv}"
            options = _options(rest[0])
            for word in rest[1:]:
                if word.startswith("--"):
                    assert word.split("=", 1)[0] in options, f"{page}: mlscall {rest[0]} has no {word}"
            checked += 1
        if "-m" in words:
            module = words[words.index("-m") + 1]
            assert importlib.util.find_spec(module) is not None, f"{page}: no module {module}"
            checked += 1
    if page in ("deployment.md", "media.md", "mls.md", "sframe.md"):
        assert checked, f"{page} shows no command"


@pytest.mark.parametrize("page", (*PAGES, "../README.md"))
def test_relative_links_resolve(page: str) -> None:
    path = (DOCS / page).resolve()
    for target in _LINK.findall(path.read_text(encoding="utf-8")):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), f"{page}: broken link {target}"


def _imports(package: str) -> set[str]:
    """Top-level module names imported anywhere in ``package`` (absolute imports only)."""
    names: set[str] = set()
    for source in (REPO_ROOT / package).rglob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ("mls", "sframe"))
def test_sans_io_cores_import_no_io_and_nothing_upward(package: str) -> None:
    imported = _imports(package)
    assert not imported & {"asyncio", "socket", "selectors", "aiohttp", "aiortc", "av"}
    assert not imported & (PROJECT_PACKAGES - {package})


def test_signaling_imports_no_media_layer() -> None:
    # The server may parse public MLS headers (mls.inspection) but never holds keys,
    # SFrame state or media.
    assert not _imports("signaling") & {"sframe", "media", "aiortc"}
