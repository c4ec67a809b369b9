"""The layer rule of DESIGN.md ("Layers") and docs/architecture.md, checked on the source.

(a) Outside ``mls/``, the adapters (``signaling/``, ``media/``), the
    benchmarks (``ds_load.py``, ``signaling_bench.py`` and every other one
    but ``mls_bench.py`` and ``mls_group_bench.py``, which measure the mls
    internals themselves) and the Python snippets embedded in
    ``web/test/*.js`` import only the public ``mls`` names: ``mls``,
    ``mls.errors`` and ``mls.inspection``; never ``mls.wire`` or another
    internal module.
(b) ``mls/`` and ``sframe/`` are sans-I/O: they import no I/O or thread
    module. Allowed, file by file: ``mls/storage.py`` may import ``sqlite3``
    (the optional ``SQLiteStorage`` the application chooses); it and
    ``sframe/suites.py`` may take a ``threading`` lock (``Lock``/``RLock``
    only: a lock guards state shared with the caller's threads, none is
    started).
(c) Nothing imports upward: ``mls`` never imports sframe/signaling/media,
    ``sframe`` never mls/signaling/media, ``signaling`` never media.
(d) One class per name: every module-level ``class X`` in mls, sframe,
    signaling and media is unique.
(e) The tools live apart from the library: the ``mlscall`` command and its
    subcommands in ``media/cli/``, the stress runner in ``media/stress/``.
    The library (every other module of ``media/``) never imports a tool, and
    a tool takes only public names (no leading underscore) from the library.

Every checker is a function of source text, and each is first shown to flag
a planted violation, so a checker that can no longer fail fails its test.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator

from conftest import REPO_ROOT


#: the public names of the mls package (everything else under mls. is internal)
PUBLIC_MLS = frozenset({"mls", "mls.errors", "mls.inspection"})
#: modules that do I/O or run threads; none belongs in a sans-I/O core
IO_MODULES = frozenset({
    "aiohttp", "aiortc", "asyncio", "concurrent", "multiprocessing", "selectors", "socket", "sqlite3",
    "subprocess", "threading",
})
#: file -> the I/O or thread modules it may import, and why (see the module docstring)
IO_ALLOWED = {
    "mls/storage.py": frozenset({"sqlite3", "threading"}),  # optional SQLiteStorage; a Lock around its connection
    "sframe/suites.py": frozenset({"threading"}),  # a Lock around the AES-CTR context (aiortc decodes in a thread)
}
#: what may be taken from ``threading`` where it is allowed: locks, never a Thread or Timer
THREADING_ALLOWED = frozenset({"Lock", "RLock"})
#: package -> the packages of the project it must never import
UPWARD = {
    "mls": frozenset({"sframe", "signaling", "media"}),
    "sframe": frozenset({"mls", "signaling", "media"}),
    "signaling": frozenset({"media"}),
}
PACKAGES = ("mls", "sframe", "signaling", "media")
#: the tool subpackages of media (the rest of media/ is the library)
TOOL_PACKAGES = frozenset({"media.cli", "media.stress"})
#: benchmarks of the mls internals themselves, which may import them
INTERNAL_BENCHMARKS = frozenset({"benchmarks/mls_bench.py", "benchmarks/mls_group_bench.py"})


# -- collecting imports ------------------------------------------------------------------------

def _module_name(path: str) -> str:
    """``signaling/server.py`` -> ``signaling.server``; ``mls/wire/__init__.py`` -> ``mls.wire``."""
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: str) -> bool:
    return path.endswith("__init__.py")


def _resolve(node: ast.ImportFrom, path: str) -> str:
    """The absolute module an ``ImportFrom`` in ``path`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    package = _module_name(path).split(".")
    if not _is_package(path):
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _submodule(package: str, name: str) -> bool:
    """True when ``package.name`` is a module of this project (``from mls import wire``)."""
    folder = REPO_ROOT.joinpath(*package.split("."))
    return (folder / name).is_dir() or (folder / f"{name}.py").is_file()


def imported_modules(source: str, path: str) -> list[tuple[str, int]]:
    """Every module ``source`` (the file at ``path``, relative to the root) imports, with its line.

    Covers ``import a.b``, ``from a.b import c`` (and ``a.b.c`` when that is a
    module of the project), relative imports, and ``importlib.import_module`` /
    ``__import__`` with a literal name.
    """
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, path)
            found.append((module, node.lineno))
            found += [(f"{module}.{alias.name}", node.lineno) for alias in node.names
                      if alias.name != "*" and _submodule(module, alias.name)]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.args[0].value, node.lineno))
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


# -- the checkers ------------------------------------------------------------------------------

def mls_internal_imports(modules: Iterable[tuple[str, int]]) -> list[str]:
    """(a) Imports of an mls module that is not public."""
    return [f"line {line}: {module}" for module, line in modules
            if _top(module) == "mls" and module not in PUBLIC_MLS]


#: a Python import line (JS imports always quote their source: ``from './x.js'``)
_PY_IMPORT = re.compile(r"^\s*(?:from\s+([A-Za-z_][\w.]*)\s+import\s+([\w\s,()*]+)|import\s+([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*))\s*$")


def js_python_imports(text: str) -> list[tuple[str, int]]:
    """Modules the Python embedded in a JS file imports (line-based, as the snippets are written)."""
    found: list[tuple[str, int]] = []
    for number, line in enumerate(text.splitlines(), 1):
        match = _PY_IMPORT.match(line.split("#")[0])
        if match is None:
            continue
        if match.group(1):
            module = match.group(1)
            found.append((module, number))
            names = [n.strip() for n in match.group(2).replace("(", "").replace(")", "").split(",")]
            found += [(f"{module}.{name.split()[0]}", number) for name in names
                      if name and name != "*" and _submodule(module, name.split()[0])]
        else:
            found += [(name.strip().split()[0], number) for name in match.group(3).split(",")]
    return found


def io_imports(source: str, path: str) -> list[str]:
    """(b) I/O or thread modules imported by a sans-I/O module, beyond what ``IO_ALLOWED`` grants."""
    allowed = IO_ALLOWED.get(path, frozenset())
    problems = [f"line {line}: {module}" for module, line in imported_modules(source, path)
                if _top(module) in IO_MODULES and _top(module) not in allowed]
    if "threading" in allowed:
        problems += [f"line {line}: threading.{name}" for name, line in _threading_names(source)
                     if name not in THREADING_ALLOWED]
    return problems


def _threading_names(source: str) -> Iterator[tuple[str, int]]:
    """Every name taken from ``threading``: ``threading.X`` and ``from threading import X``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "threading":
            yield node.attr, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module == "threading":
            yield from ((alias.name, node.lineno) for alias in node.names)


def upward_imports(source: str, path: str) -> list[str]:
    """(c) Imports of a package this one must not know."""
    forbidden = UPWARD.get(_top(_module_name(path)), frozenset())
    return [f"line {line}: {module}" for module, line in imported_modules(source, path)
            if _top(module) in forbidden]


def duplicate_classes(sources: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(d) Module-level class names defined more than once, with where."""
    where: dict[str, list[str]] = defaultdict(list)
    for path, source in sources:
        for node in ast.parse(source, path).body:
            if isinstance(node, ast.ClassDef):
                where[node.name].append(f"{path}:{node.lineno}")
    return {name: places for name, places in where.items() if len(places) > 1}


def _is_tool(module: str) -> bool:
    return any(module == tool or module.startswith(f"{tool}.") for tool in TOOL_PACKAGES)


def library_imports_of_tools(source: str, path: str) -> list[str]:
    """(e) Imports of a tool module by a library module of ``media``."""
    if _is_tool(_module_name(path)):
        return []
    return [f"line {line}: {module}" for module, line in imported_modules(source, path) if _is_tool(module)]


def private_library_names(source: str, path: str) -> list[str]:
    """(e) Underscore names a tool module imports from a library module of ``media``."""
    problems: list[str] = []
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.ImportFrom):
            module = _resolve(node, path)
            if _top(module) == "media" and not _is_tool(module):
                problems += [f"line {node.lineno}: {module}.{alias.name}" for alias in node.names
                             if alias.name.startswith("_")]
    return problems


# -- the files ---------------------------------------------------------------------------------

def _python_files(*folders: str) -> list[str]:
    return sorted(str(path.relative_to(REPO_ROOT)) for folder in folders for path in (REPO_ROOT / folder).rglob("*.py"))


def _read(path: str) -> str:
    return (REPO_ROOT / path).read_text(encoding="utf-8")


BENCHMARKS = [path for path in _python_files("benchmarks") if path not in INTERNAL_BENCHMARKS]
ADAPTER_FILES = _python_files("signaling", "media") + BENCHMARKS
CORE_FILES = _python_files("mls", "sframe")
TOOL_FILES = _python_files("media/cli", "media/stress")
LIBRARY_FILES = [path for path in _python_files("media") if path not in TOOL_FILES]
JS_TESTS = sorted(str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / "web" / "test").glob("*.js"))


def test_the_file_lists_cover_the_layers() -> None:
    assert {"signaling/mls_header.py", "signaling/server.py", "media/call_peer.py"} <= set(ADAPTER_FILES)
    assert {"mls/inspection.py", "mls/storage.py", "sframe/context.py"} <= set(CORE_FILES)
    assert "web/test/python.js" in JS_TESTS
    assert {"benchmarks/ds_load.py", "benchmarks/signaling_bench.py"} <= set(ADAPTER_FILES)
    assert INTERNAL_BENCHMARKS <= set(_python_files("benchmarks"))  # the exemptions name real files
    assert {"media/cli/__init__.py", "media/cli/bot.py", "media/stress/run.py"} <= set(TOOL_FILES)
    assert {"media/call_peer.py", "media/transform.py"} <= set(LIBRARY_FILES)


# -- (a) the public mls API only ---------------------------------------------------------------

def test_checker_flags_mls_internals() -> None:
    planted = ("import mls.wire\nfrom mls.wire.enums import ContentType\nfrom mls import wire\n"
               "from mls.group import config\nimport importlib\nimportlib.import_module('mls.crypto')\n")
    assert mls_internal_imports(imported_modules(planted, "media/x.py")) == [
        "line 1: mls.wire", "line 2: mls.wire.enums", "line 3: mls.wire", "line 4: mls.group",
        "line 4: mls.group.config", "line 6: mls.crypto"]
    clean = "import mls\nfrom mls import MLS, GroupView\nfrom mls.errors import MLSError\nfrom mls.inspection import WireFormat\n"
    assert mls_internal_imports(imported_modules(clean, "media/x.py")) == []


def test_checker_flags_mls_internals_in_js_snippets() -> None:
    planted = ("import { MLS } from '../mls/mls.js';\nconst PY = String.raw`\nimport json, mls.wire\n"
               "from mls.api import GroupView\nfrom mls import MLS, storage as kept\nfrom mls.inspection import ContentType\n`;\n")
    found = js_python_imports(planted)
    assert ("json", 3) in found and ("mls.inspection", 6) in found
    assert mls_internal_imports(found) == ["line 3: mls.wire", "line 4: mls.api", "line 5: mls.storage"]


def test_adapters_use_only_the_public_mls_api() -> None:
    problems = {path: found for path in ADAPTER_FILES
                if (found := mls_internal_imports(imported_modules(_read(path), path)))}
    assert problems == {}


def test_js_embedded_python_uses_only_the_public_mls_api() -> None:
    seen = {path: js_python_imports(_read(path)) for path in JS_TESTS}
    assert any(module == "mls" for found in seen.values() for module, _ in found)  # the scan sees the snippets
    assert {path: problems for path, found in seen.items() if (problems := mls_internal_imports(found))} == {}


# -- (b) sans-I/O cores ------------------------------------------------------------------------

def test_checker_flags_io_in_the_core() -> None:
    assert io_imports("import asyncio\nfrom concurrent.futures import ThreadPoolExecutor\n", "mls/x.py") == [
        "line 1: asyncio", "line 2: concurrent.futures"]
    assert io_imports("import sqlite3\n", "sframe/x.py") == ["line 1: sqlite3"]
    assert io_imports("import threading\nlock = threading.Lock()\n", "mls/storage.py") == []
    assert io_imports("import threading\nthreading.Thread(target=print).start()\n", "sframe/suites.py") == [
        "line 2: threading.Thread"]
    assert io_imports("from threading import Timer\n", "mls/storage.py") == ["line 1: threading.Timer"]
    assert io_imports("import threading\n", "mls/api.py") == ["line 1: threading"]


def test_mls_and_sframe_do_no_io() -> None:
    assert set(IO_ALLOWED) <= set(CORE_FILES)  # the allowances name real files
    assert {path: found for path in CORE_FILES if (found := io_imports(_read(path), path))} == {}


# -- (c) nothing imports upward ----------------------------------------------------------------

def test_checker_flags_upward_imports() -> None:
    assert upward_imports("from sframe import SFrameContext\n", "mls/x.py") == ["line 1: sframe"]
    assert upward_imports("import mls\n", "sframe/x.py") == ["line 1: mls"]
    assert upward_imports("from media.call_peer import CallPeer\n", "signaling/x.py") == ["line 1: media.call_peer"]
    assert upward_imports("from . import errors\nfrom ..wire import codec\n", "mls/group/x.py") == []
    assert upward_imports("from mls import MLS\nfrom sframe import SFrameContext\n", "media/x.py") == []


def test_nothing_imports_upward() -> None:
    files = _python_files("mls", "sframe", "signaling")
    assert {path: found for path in files if (found := upward_imports(_read(path), path))} == {}


# -- (d) one class per name --------------------------------------------------------------------

def test_checker_flags_duplicate_classes() -> None:
    sources = [("mls/a.py", "class Header:\n    class Inner: ...\n"), ("sframe/b.py", "class Header: ...\nclass Inner: ...\n")]
    assert duplicate_classes(sources) == {"Header": ["mls/a.py:1", "sframe/b.py:1"]}


def test_one_class_per_name() -> None:
    assert duplicate_classes((path, _read(path)) for path in _python_files(*PACKAGES)) == {}


# -- (e) the tools apart from the library ------------------------------------------------------

def test_checker_flags_tools_in_the_library() -> None:
    planted = "from .cli.bot import summary\nimport media.stress.run\nfrom media import stress\n"
    assert library_imports_of_tools(planted, "media/x.py") == [
        "line 1: media.cli.bot", "line 2: media.stress.run", "line 3: media.stress"]
    assert library_imports_of_tools("from ..cli.bot import StatusLine\n", "media/stress/x.py") == []
    assert library_imports_of_tools("from .call_peer import CallPeer\n", "media/x.py") == []


def test_checker_flags_private_library_names_in_tools() -> None:
    planted = "from ..call_peer import CallPeer, _leaf_of\nfrom media.transform import _Hold\n"
    assert private_library_names(planted, "media/cli/x.py") == [
        "line 1: media.call_peer._leaf_of", "line 2: media.transform._Hold"]
    assert private_library_names("from .peer import _bin\nfrom ..sinks import VerifyingSink\n",
                                 "media/stress/x.py") == []


def test_the_library_imports_no_tool() -> None:
    assert {path: found for path in LIBRARY_FILES if (found := library_imports_of_tools(_read(path), path))} == {}


def test_tools_take_only_public_library_names() -> None:
    assert {path: found for path in TOOL_FILES if (found := private_library_names(_read(path), path))} == {}
