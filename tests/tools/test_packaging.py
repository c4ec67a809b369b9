"""The product as a new user gets it, outside the checkout.

- The call page's lookup (``signaling.page.call_page_dir``): the installed
  package's copy, else the checkout's web/public.
- ``mlscall bench`` outside a checkout and ``--plot`` without matplotlib end
  with a typed error and a one-line hint, not a traceback.
- web/ as the npm package ``mlscall-web``: ``npm pack`` packs the library
  (worker and TypeScript declarations included; no tests, node_modules or
  page), the tarball installs into an empty folder without the registry (its
  dependencies taken from web/node_modules), and every entry point imports
  under node; the README's first example runs against it. The declarations
  are generated from the JSDoc without errors.
- The wheel's build hook without node/npm: a prebuilt bundle (an sdist's)
  goes into the wheel; without one the build stops saying what to do.
- The wheel (``pip wheel .``) carries the page; installed into a fresh
  virtual environment outside the checkout, its ``mlscall demo`` serves the
  page, which joins the bots' call and decrypts their video in headless
  Chromium.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from media.cli import main
from media.errors import BenchmarksNotFound, PlottingNotInstalled
from signaling.page import CHECKOUT_DIR, call_page_dir

from conftest import REPO_ROOT

WEB = REPO_ROOT / "web"
BOUND = 120.0  # seconds for a build or an install (a bound, not a measurement)


def run(command: list[str], cwd: Path, timeout: float = BOUND) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is needed (see .ci/setup)"
    return path


# -- the call page's lookup ----------------------------------------------------------------------

def test_the_installed_page_comes_first(tmp_path: Path) -> None:
    installed = tmp_path / "site-packages" / "signaling" / "static"
    installed.mkdir(parents=True)
    (installed / "index.html").write_text("<!doctype html>", encoding="utf-8")
    assert call_page_dir(installed, checkout=tmp_path / "web" / "public") == installed


def test_without_an_installed_page_the_checkout_serves_its_own(tmp_path: Path) -> None:
    empty = tmp_path / "site-packages" / "signaling" / "static"
    empty.mkdir(parents=True)  # a folder without index.html is no page
    checkout = tmp_path / "web" / "public"
    assert call_page_dir(empty, checkout=checkout) == checkout
    assert call_page_dir(tmp_path / "missing", checkout=checkout) == checkout
    # this checkout's editable install has no copy: the default lookup finds web/public
    assert call_page_dir() == CHECKOUT_DIR and (CHECKOUT_DIR / "index.html").is_file()


# -- what an installation lacks: a typed error and a hint ------------------------------------------

def test_bench_outside_a_checkout_says_where_it_works(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import media.cli.bench

    monkeypatch.setattr(media.cli.bench, "BENCHMARKS_DIR", tmp_path / "site-packages" / "benchmarks")
    report = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--json", str(report)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"mlscall bench: no benchmarks at {tmp_path / 'site-packages' / 'benchmarks'}: "
        "they are not installed with the package",
        "hint: run mlscall bench from a checkout of the repository (its benchmarks/ folder)",
    ]
    assert not report.exists()
    with pytest.raises(BenchmarksNotFound):
        media.cli.bench.run(media.cli.bench.argparse.Namespace(timeout=1.0))


def test_plot_without_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from media.stress.report import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    target = tmp_path / "stress.png"
    with pytest.raises(PlottingNotInstalled) as info:
        plot({"timeline": [], "epochs": [], "config": {}}, target)
    assert info.value.hint == "pip install 'mlscall[plots]'"
    assert "matplotlib is not installed" in str(info.value)
    assert not target.exists()


@pytest.mark.slow
@pytest.mark.e2e
def test_stress_without_matplotlib_writes_all_but_the_plot(tmp_path: Path) -> None:
    """The run, its table and its JSON still come out; the plot gives way to the hint."""
    result, image = tmp_path / "stress.json", tmp_path / "stress.png"
    hide_matplotlib = ("import sys; sys.modules['matplotlib'] = None; from media.cli import main; "
                       "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run(
        [sys.executable, "-c", hide_matplotlib, "stress", "--peers", "2", "--duration", "4", "--churn", "0",
         "--update-interval", "0", "--processes", "1", "--json", str(result), "--plot", str(image)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=BOUND, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout.startswith("stress: 2 peers"), done.stdout
    assert json.loads(result.read_text(encoding="utf-8"))["config"]["peers"] == 2
    assert not image.exists()
    assert done.stderr.splitlines()[-1] == "hint: pip install 'mlscall[plots]'"
    assert "Traceback" not in done.stderr


# -- the npm package ----------------------------------------------------------------------------------

def package_json() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((WEB / "package.json").read_text(encoding="utf-8"))
    return document


def export_targets(exports: dict[str, Any]) -> list[str]:
    """Every file an ``exports`` map points at (conditions included), without the leading ./."""
    found = []
    for target in exports.values():
        for path in (target.values() if isinstance(target, dict) else [target]):
            found.append(path.removeprefix("./"))
    return found


def test_the_declarations_generate_from_the_jsdoc(tmp_path: Path) -> None:
    """``tsc --allowJs --declaration --emitDeclarationOnly`` (web/tsconfig.json) without an error,
    one declaration file for every entry point the exports map names."""
    tsc = WEB / "node_modules" / ".bin" / "tsc"
    assert tsc.is_file(), "typescript is a devDependency of web/: npm --prefix web ci"
    run([str(tsc), "-p", "tsconfig.json", "--outDir", str(tmp_path / "types")], cwd=WEB)
    declared = [path for path in export_targets(package_json()["exports"]) if path.endswith(".d.ts")]
    assert len(declared) == 4
    for path in declared:
        text = (tmp_path / path).read_text(encoding="utf-8")
        assert "export" in text, path
    assert "export class MLSGroupView" in (tmp_path / "types" / "mls" / "group.d.ts").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """``npm pack`` of web/ (its prepack generates types/): the tarball and its file list."""
    out = tmp_path_factory.mktemp("npm-pack")
    done = run([tool("npm"), "pack", "--json", "--pack-destination", str(out)], cwd=WEB)
    (info,) = json.loads(done.stdout[done.stdout.index("["):])
    tarball = out / info["filename"]
    with tarfile.open(tarball) as archive:
        files = sorted(name.removeprefix("package/") for name in archive.getnames())
    assert files == sorted(f["path"] for f in info["files"])
    return tarball, files


@pytest.mark.slow
def test_the_tarball_holds_the_library_only(packed: tuple[Path, list[str]]) -> None:
    tarball, files = packed
    document = package_json()
    assert "private" not in document and tarball.name == f"{document['name']}-{document['version']}.tgz"
    assert not [f for f in files if f.startswith(("test/", "app/", "public/", "dist/")) or "node_modules" in f]
    assert {"package.json", "README.md", "index.js", "sframe-worker.js", "sframe-transform.js",
            "mls/index.js", "sframe/index.js", "sframe/worker-core.js"} <= set(files)
    assert {"types/index.d.ts", "types/mls/index.d.ts", "types/sframe/index.d.ts",
            "types/sframe-transform.d.ts"} <= set(files)
    assert set(export_targets(document["exports"])) <= set(files)  # every entry point is packed


#: Imports every entry point of the installed package and prints what it finds.
IMPORT_ENTRY_POINTS = """
const names = {};
for (const spec of ['mlscall-web', 'mlscall-web/mls', 'mlscall-web/sframe', 'mlscall-web/sframe-transform']) {
  names[spec] = Object.keys(await import(spec)).sort();
}
const transform = import.meta.resolve('mlscall-web/sframe-transform');
console.log(JSON.stringify({
  names,
  worker: import.meta.resolve('mlscall-web/sframe-worker.js'),
  // what SFrameTransform's defaultSFrameWorker() loads: new URL('./sframe-worker.js', import.meta.url)
  workerFromTransform: new URL('./sframe-worker.js', transform).href,
}));
"""


@pytest.mark.slow
def test_the_tarball_installs_offline_and_its_entry_points_import(
        packed: tuple[Path, list[str]], tmp_path: Path) -> None:
    tarball, _ = packed
    npm, node = tool("npm"), tool("node")
    # the package's dependencies, as web/node_modules holds them (no registry needed)
    listed = run([npm, "ls", "--omit=dev", "--all", "--parseable"], cwd=WEB).stdout.split()
    dependencies = [path for path in listed if "node_modules" in path]
    assert dependencies and all(Path(path).is_dir() for path in dependencies)
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "consumer", "private": true, "type": "module"}', encoding="utf-8")
    run([npm, "install", "--offline", "--no-audit", "--no-fund", "--no-save", "--install-links",
         str(tarball), *dependencies], cwd=app)
    installed = app / "node_modules" / "mlscall-web"
    assert (installed / "sframe-worker.js").is_file() and not (installed / "test").exists()

    found = json.loads(run([node, "--input-type=module", "-e", IMPORT_ENTRY_POINTS], cwd=app).stdout)
    names = found["names"]
    assert {"MLS", "MLSGroupView", "MLSError", "MemoryStore", "IndexedDBStore"} <= set(names["mlscall-web/mls"])
    assert {"SFrameContext", "SFrameError", "MLSKeyManager", "getCipherSuite"} <= set(names["mlscall-web/sframe"])
    assert {"SFrameTransform", "SFrameMLSSession"} <= set(names["mlscall-web/sframe-transform"])
    assert set(names["mlscall-web"]) == set().union(*(names[s] for s in names if s != "mlscall-web"))
    worker = (installed / "sframe-worker.js").as_uri()
    assert found["worker"] == found["workerFromTransform"] == worker

    # the README's first example, as a web developer would paste it
    readme = (WEB / "README.md").read_text(encoding="utf-8")
    example = re.findall(r"```js\n(.*?)```", readme, re.DOTALL)[0]
    (app / "example.mjs").write_text(example, encoding="utf-8")
    assert run([node, "example.mjs"], cwd=app).stdout.splitlines() == ["hello bob", "true"]


# -- the wheel, installed outside the checkout ---------------------------------------------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from the checkout (page bundled by its build hook), installed into a fresh
    virtual environment; its dependencies are this environment's (a .pth line: no network)."""
    wheels = tmp_path_factory.mktemp("wheels")
    run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-q", "-w", str(wheels)], cwd=REPO_ROOT)
    (wheel,) = wheels.glob("mlscall-*.whl")
    venv = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", "-q", str(wheel)], cwd=venv)
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=venv).stdout.strip())
    # a plain path line: this environment's packages, but not its .pth files (the editable checkout)
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return venv


@pytest.mark.slow
def test_the_installed_package_serves_its_own_page(installed: Path, tmp_path: Path) -> None:
    python = installed / "bin" / "python"
    where = json.loads(run([str(python), "-c",
                            "import json, signaling, signaling.page as p; "
                            "print(json.dumps([signaling.__file__, str(p.call_page_dir())]))"],
                           cwd=tmp_path).stdout)
    module, page = Path(where[0]), Path(where[1])
    assert module.is_relative_to(installed) and page.is_relative_to(installed), where
    assert page.parts[-2:] == ("signaling", "static")
    assert {"index.html", "style.css", "dist/main.js", "dist/sframe-worker.js"} <= {
        str(p.relative_to(page)) for p in page.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_the_installed_bench_says_it_needs_a_checkout(installed: Path, tmp_path: Path) -> None:
    done = subprocess.run([str(installed / "bin" / "mlscall"), "bench", "--quick"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=BOUND, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        "hint: run mlscall bench from a checkout of the repository (its benchmarks/ folder)")
    assert not (tmp_path / "bench.json").exists()


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.browser
async def test_the_installed_demo_page_joins_the_bots(installed: Path, tmp_path: Path) -> None:
    """``mlscall demo`` of the installed wheel, from a folder outside the checkout: the page it
    serves joins the bots' group in headless Chromium and decrypts both bots' video; the demo
    ends by itself and its bots' verification codes are the page's."""
    from playwright.async_api import async_playwright
    from test_web_call import (
        BOUND as PAGE_BOUND,
    )
    from test_web_call import (
        CHROMIUM,
        CHROMIUM_FLAGS,
        BrowserLog,
        browser_decrypted,
        browser_failures,
        join,
        page_status,
        until,
    )

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, permissions=["camera", "microphone"])
        demo = await asyncio.create_subprocess_exec(
            str(installed / "bin" / "mlscall"), "demo", "--port", "0", "--duration", "15",
            "--self-update", "600", cwd=workdir,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            assert demo.stdout is not None
            address = None
            async with asyncio.timeout(PAGE_BOUND):
                while address is None:
                    line = (await demo.stdout.readline()).decode()
                    assert line, "the demo ended before printing the page address"
                    found = re.search(r"Open (http://127\.0\.0\.1:\d+/\?room=demo) in a browser", line)
                    address = found.group(1) if found else None
            page = await browser.new_page()
            log = BrowserLog(page)
            await page.goto(address + "&video=320x240")
            name = await page.input_value("input[name=name]")
            await join(page)

            async def decrypting() -> bool:
                view = await page_status(page)
                return (bool(view) and view["members"] == sorted(["alice-bot", "bob-bot", name])
                        and all(browser_decrypted(view, bot) >= 20 for bot in ("alice-bot", "bob-bot")))
            await until(decrypting, "the installed demo's page decrypting both bots' video", log)
            view = await page_status(page)
            assert browser_failures(view, "authentication") == 0 and not log.errors, log.errors
            # the page's own console note of its reconnection refused once the demo is over
            log.allowed.append(re.compile(r"WebSocket connection to '.*' failed"))
            async with asyncio.timeout(PAGE_BOUND):  # --duration ends the demo by itself
                output = (await demo.stdout.read()).decode()
                assert await demo.wait() == 0
        finally:
            if demo.returncode is None:
                demo.kill()
                await demo.wait()
            await browser.close()
    codes = re.findall(r"summary for (\S+):\n(?:  .*\n)*?  verification:\s+([\d ]+)\n", output)
    assert codes == [("alice-bot", view["verification"]), ("bob-bot", view["verification"])]
    assert not log.errors, log.errors


# -- the wheel's build hook without node/npm ------------------------------------------------------------

def source_tree(target: Path, *, bundle: bool) -> Path:
    """The files a wheel builds from (as an sdist has them), with or without the page's bundle."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "static")
    target.mkdir()
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md"):
        shutil.copy2(REPO_ROOT / name, target / name)
    for package in ("mls", "sframe", "signaling", "media"):
        shutil.copytree(REPO_ROOT / package, target / package, ignore=ignore)
    shutil.copytree(WEB / "public", target / "web" / "public",
                    ignore=None if bundle else shutil.ignore_patterns("dist"))
    return target


def build_without_npm(source: Path, wheels: Path) -> subprocess.CompletedProcess[str]:
    """``pip wheel`` with a PATH holding this Python only: no node, no npm."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(wheels)],
        cwd=source, capture_output=True, text=True, timeout=BOUND, check=False,
        env={"PATH": str(Path(sys.executable).parent), "HOME": str(source)})


@pytest.mark.slow
def test_without_npm_the_prebuilt_bundle_goes_into_the_wheel(tmp_path: Path) -> None:
    source = source_tree(tmp_path / "src", bundle=True)
    done = build_without_npm(source, tmp_path / "wheels")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("mlscall-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"signaling/static/index.html", "signaling/static/dist/main.js",
            "signaling/static/dist/sframe-worker.js"} <= names


@pytest.mark.slow
def test_without_npm_or_a_bundle_the_build_says_what_to_do(tmp_path: Path) -> None:
    source = source_tree(tmp_path / "src", bundle=False)
    done = build_without_npm(source, tmp_path / "wheels")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "the call page's bundle is missing (web/public/dist/main.js, web/public/dist/sframe-worker.js)" in output
    assert "install Node.js >= 20 and npm, run `npm --prefix web ci`" in output
    assert not list((tmp_path / "wheels").glob("*.whl"))
