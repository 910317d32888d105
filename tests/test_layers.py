"""The package's arrows point one way: data -> backbone -> train -> bundle -> serve -> ui (experiments beside serve);
a lower stage never imports a higher one, and nothing the serving path imports pulls in the builder's libraries.
Sizes stay where a newcomer can read them: no module over 400 lines, no function over 60."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cmr_demo"
# rank of each stage; modules at the package's top level (files, metrics, sampling, provenance, cliargs, compat) are
# shared by all and import no stage; cli.py is the console scripts' entry and may import any stage
RANK = {"data": 1, "backbone": 2, "train": 3, "bundle": 4, "experiments": 5, "serve": 5, "ui": 6}
ENTRIES = {"cli", "__init__"}


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "cmr_demo" and parts[1] in RANK else None


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("cmr_demo")}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        yield path, ".".join(rel.parts)


@pytest.mark.parametrize("path, module", list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_no_module_imports_a_higher_stage(path, module):
    mine = stage_of(module)
    if module.split(".")[-1] in ENTRIES and module.count(".") <= 1:
        return
    for imported in imports(path):
        theirs = stage_of(imported)
        if theirs is None:
            continue
        if mine is None:  # a shared top-level module: no stage at all
            pytest.fail(f"{module} (shared by every stage) imports the stage module {imported}")
        assert theirs == mine or RANK[theirs] < RANK[mine], \
            f"{module} ({mine}) imports {imported} ({theirs}): an arrow that points up or sideways"


def test_serving_imports_none_of_the_builders_libraries():
    code = ("import cmr_demo.compat, sys; import cmr_demo.serve.service, cmr_demo.serve.api, cmr_demo.ui.page; "
            "print(sorted(m for m in ('scipy', 'umap', 'sklearn', 'numba', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout  # open_clip too: the backbone loads in the background


def test_modules_and_functions_stay_readable():
    long = []
    for path in sorted(list(PACKAGE.rglob("*.py")) + [ROOT / "app.py"]):
        text = path.read_text()
        if text.count("\n") > 400:
            long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} "
                            f"lines")
        for node in tree.body:  # a module-level statement (a table, a constant) is held to the same size
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and \
                    node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} a module-level statement of "
                            f"{node.end_lineno - node.lineno + 1} lines")
    assert not long, long
    assert (ROOT / "app.py").read_text().count("\n") <= 200


def test_no_class_has_more_than_15_public_methods():
    crowded = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                public = [
                    f.name
                    for f in node.body
                    if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and not f.name.startswith("_")
                    and not any(isinstance(d, ast.Name) and d.id == "property" for d in f.decorator_list)
                ]
                if len(public) > 15:
                    crowded.append(f"{path.relative_to(ROOT)}: {node.name} has {len(public)}")
    assert not crowded, crowded


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports, at the top or inside a function (a package's `__init__` neither
    counts as importer nor imported: importing `cmr_demo.data.x` runs `cmr_demo/data/__init__.py` anyway)."""
    names = {module.removesuffix(".__init__") for _, module in modules()}
    graph = {}
    for path, module in modules():
        if path.name == "__init__.py":
            continue
        packages = {m for m in names if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").is_file()}
        graph[module] = {m for m in imports(path) if m in names and m not in packages and m != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of two or more modules (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_circle_even_through_imports_inside_functions():
    """An import inside a function hides a circle from Python (it runs later) but not from a reader: two modules that
    need each other are one concern split in two, or one that belongs in a third module both import."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check finds one
    assert not circles(import_graph()), circles(import_graph())


def test_loggers_are_named_after_their_module():
    """`logging.getLogger(__name__)` everywhere: a log line then says which module wrote it, and a handler can be
    set per stage ("cmr_demo.serve") without a list of names to keep in step."""
    named = [f"{path.relative_to(ROOT)}:{node.lineno}" for path, _ in modules()
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "getLogger"
             and not (node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "__name__")]
    assert not named, named


def test_the_pipeline_page_maps_every_module():
    """docs/pipeline.md's package map names every module by its file name: a module added without a line there
    (as ui/ once was) fails here."""
    page = (ROOT / "docs" / "pipeline.md").read_text()
    missing = [str(path.relative_to(ROOT)) for path, _ in modules()
               if path.name not in ("__init__.py", "__main__.py") and path.name not in page]
    assert not missing, missing


def test_ruff_passes_with_the_projects_configuration():
    """`ruff check .` (pyproject.toml's [tool.ruff]: pycodestyle, pyflakes, blind excepts and stale noqa markers, at
    120 characters) passes on the whole tree: tests and benchmarks too."""
    pytest.importorskip("ruff", reason="ruff comes with requirements-dev.txt")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]


def test_every_file_the_code_and_docs_point_to_exists():
    """A path named in a docstring, a comment or a page (under cmr_demo, tests, bench, docs or harness, ending in .py
    or .md) is a file of this tree: a module moved without its pointers fails here. docs/results.md's old
    profiles quote the code of their day and are left out."""
    import re
    pattern = re.compile(r"\b(?:cmr_demo|tests|bench|docs|harness)/[A-Za-z0-9_/.-]+\.(?:py|md)\b")
    sources = [*PACKAGE.rglob("*.py"), ROOT / "app.py", ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
               *(ROOT / "bench").glob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "harness").glob("*.py")]
    missing = sorted({f"{src.relative_to(ROOT)}: {path}" for src in sources if src.name != "results.md"
                      for path in pattern.findall(src.read_text()) if not (ROOT / path).exists()})
    assert not missing, missing
