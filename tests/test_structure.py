"""The code's shape (issue 13): no import cycle, no hidden import, no huge file.

Every project module is parsed with :mod:`ast` (nothing is imported), every
``import``/``from … import`` of a project package becomes an edge of a module
graph (function-local ones included, since those are how cycles hide), and
the graph must have no cycle. A project module imported inside a function is
refused on its own: it is a cycle waiting to happen and hides the data path.
Third-party modules imported lazily (TensorFlow, rasterio …) are fine.
"""

from __future__ import annotations

import ast
import os
from typing import Iterator, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("pipeline", "transforms", "model_loader", "configs", "training", "benchmarks")
MAX_LINES = 420
# No file is exempt (benchmarks/speed.py, the last one, is now the package benchmarks/speed/).
LONG_FILE_EXEMPT: set[str] = set()
LOCAL_IMPORT_EXEMPT: set[str] = set()
# The only places a project module is loaded by name (importlib), and why:
# Keras picks its backend when first imported, so `cloudfill train` loads the
# trainer only after choosing JAX, and the `cloudfill` command loads the
# training verbs only when they are given (the serving path never imports
# training/).
IMPORT_BY_NAME = {"pipeline/cli.py", "training/train.py"}


def project_modules(root: str = ROOT) -> dict[str, str]:
  """``{dotted module name: file path}`` for every ``.py`` of the project packages."""
  out = {}
  for package in PACKAGES:
    for folder, dirs, files in os.walk(os.path.join(root, package)):
      dirs[:] = sorted(d for d in dirs if d != "__pycache__")
      for name in sorted(files):
        if not name.endswith(".py"):
          continue
        rel = os.path.relpath(os.path.join(folder, name), root)[:-3].split(os.sep)
        if rel[-1] == "__init__":
          rel = rel[:-1]
        out[".".join(rel)] = os.path.join(folder, name)
  return out


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int, bool]]:
  """``(imported name, line, inside a function)`` for each import in ``tree``.

  ``from a import b`` yields ``a.b`` (a module or a name in ``a``: resolved
  by the caller); relative imports are made absolute.
  """

  def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[str, int, bool]]:
    for child in ast.iter_child_nodes(node):
      nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
      if isinstance(child, ast.Import):
        for alias in child.names:
          yield alias.name, child.lineno, in_function
      elif isinstance(child, ast.ImportFrom):
        base = child.module or ""
        if child.level:
          parts = module.split(".")
          parts = parts if is_package else parts[:-1]
          parts = parts[:len(parts) - (child.level - 1)]
          base = ".".join(parts + ([base] if base else []))
        for alias in child.names:
          yield f"{base}.{alias.name}" if alias.name != "*" else base, child.lineno, in_function
      yield from visit(child, nested)

  yield from visit(tree, False)


def _resolve(name: str, modules: dict[str, str]) -> Optional[str]:
  """The project module ``name`` loads (the longest known prefix), or None."""
  if name.split(".")[0] not in PACKAGES:
    return None
  parts = name.split(".")
  for n in range(len(parts), 0, -1):
    candidate = ".".join(parts[:n])
    if candidate in modules:
      return candidate
  return None


def import_graph(root: str = ROOT) -> tuple[dict[str, set[str]], list[str]]:
  """The module graph (every import, function-local ones too) and the
  function-local imports of project modules as ``"file:line imports name"``."""
  modules = project_modules(root)
  graph: dict[str, set[str]] = {m: set() for m in modules}
  local: list[str] = []
  for module, path in modules.items():
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), path)
    is_package = path.endswith("__init__.py")
    for name, line, in_function in _imports(tree, module, is_package):
      target = _resolve(name, modules)
      if target is None or target == module:
        continue
      graph[module].add(target)
      if in_function and os.path.relpath(path, root) not in LOCAL_IMPORT_EXEMPT:
        local.append(f"{os.path.relpath(path, root)}:{line} imports {target}")
  return graph, local


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The graph's strongly connected components of more than one module (Tarjan)."""
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  on_stack: set[str] = set()
  out: list[list[str]] = []
  counter = [0]

  def connect(v: str) -> None:
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        connect(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      connect(v)
  return out


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
  """The checker itself: a two-module cycle through a function-local import is found."""
  pkg = tmp_path / "transforms"
  pkg.mkdir()
  (pkg / "__init__.py").write_text("")
  (pkg / "a.py").write_text("from transforms import b\n")
  (pkg / "b.py").write_text("def f():\n  from transforms.a import g\n  return g\n")
  graph, local = import_graph(str(tmp_path))
  assert cycles(graph) == [["transforms.a", "transforms.b"]]
  assert local == [f"{os.path.join('transforms', 'b.py')}:2 imports transforms.a"]


def test_no_import_cycle():
  graph, _ = import_graph()
  assert len(graph) > 50, "the project's modules were not found"
  found = cycles(graph)
  assert not found, "import cycles: " + "; ".join(" ↔ ".join(c) for c in found)


def test_no_project_module_imported_inside_a_function():
  _, local = import_graph()
  assert not local, "project modules imported inside functions:\n" + "\n".join(local)


def test_modules_are_loaded_by_name_only_where_listed():
  """``importlib.import_module`` would hide an import from the graph: only the
  two places in ``IMPORT_BY_NAME`` use it, each for the reason given there."""
  users = set()
  for module, path in project_modules().items():
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
      if isinstance(node, ast.Attribute) and node.attr == "import_module":
        users.add(os.path.relpath(path, ROOT))
      if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__" and
          node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).split(".")[0] in PACKAGES):
        users.add(os.path.relpath(path, ROOT))
  assert users - LOCAL_IMPORT_EXEMPT <= IMPORT_BY_NAME, sorted(users - IMPORT_BY_NAME)


def test_serving_path_never_imports_training_or_benchmarks():
  """``pipeline/``, ``transforms/``, ``model_loader/`` run on workers: they never
  import the trainer or the benchmarks; ``transforms/`` and ``model_loader/``
  never import ``pipeline/`` (the launcher) either. (``model_loader.native``
  takes the numpy push-pull of ``transforms.context``, a leaf module.)"""
  graph, _ = import_graph()
  upward = {
      "pipeline": ("training", "benchmarks"),
      "transforms": ("pipeline", "training", "benchmarks"),
      "model_loader": ("pipeline", "training", "benchmarks"),
      "configs": ("pipeline", "transforms", "model_loader", "training", "benchmarks")
  }
  bad = [
      f"{m} imports {t}" for m, targets in sorted(graph.items()) for t in sorted(targets)
      if t.split(".")[0] in upward.get(m.split(".")[0], ())
  ]
  assert not bad, "\n".join(bad)


def test_no_source_file_is_over_420_lines():
  long = []
  for folder, dirs, files in os.walk(ROOT):
    rel_folder = os.path.relpath(folder, ROOT)
    top = rel_folder.split(os.sep)[0]
    if top in ("tests", "build", "out", "runs") or (top.startswith(".") and top != "."):
      dirs[:] = []  # Tests, build and run outputs, .venv, .git: not source.
      continue
    dirs[:] = [d for d in dirs if d not in ("__pycache__", "results", "default_model")]
    for name in files:
      if not name.endswith(".py"):
        continue
      rel = os.path.normpath(os.path.join(rel_folder, name))
      with open(os.path.join(folder, name), encoding="utf-8") as f:
        n = sum(1 for _ in f)
      if n > MAX_LINES and rel not in LONG_FILE_EXEMPT:
        long.append(f"{rel}: {n} lines")
  assert not long, f"source files over {MAX_LINES} lines:\n" + "\n".join(long)
