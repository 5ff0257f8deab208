"""The package's rooms import each other in one direction only: no cycle between its subpackages.

The graph is read from the source with ``ast``: every import counts, at module level or inside a function (an
import inside a function that only dodges a cycle still makes one). A node is a subpackage (``store``, ``encode``)
or a top-level module (``dataset``, ``files``). ``make check-layers`` (or ``python tests/test_layers.py``) prints
the graph, each room with the rooms it imports, lowest first.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "interp_embed"


def module_name(path: Path) -> str:
    """``interp_embed.store.manifest`` for ``src/interp_embed/store/manifest.py`` (a package is its ``__init__``)."""
    parts = ("interp_embed",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    """The subpackage or top-level module a module belongs to (``interp_embed`` itself for the package's own
    ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imported_modules(tree: ast.AST, package: str, modules: set[str]):
    """Each (line, module) that the module parsed as ``tree``, in ``package``, imports from among ``modules``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from . import session` imports the module interp_embed.encode.session, not the package.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import interp_embed.store.manifest.Manifest` and the like
                target = target.rpartition(".")[0]
            if target:
                yield node.lineno, target


def package_imports():
    """Each (module, line, module it imports) inside the package, in source order."""
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in files}
    for path in files:
        source = module_name(path)
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, target in sorted(imported_modules(tree, package, modules)):
            yield source, line, target


def import_graph() -> dict[str, dict[str, list[str]]]:
    """room → {room it imports → ["module:line imports module", ...]}, for every import between two rooms."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in PACKAGE.rglob("*.py"):
        graph[room(module_name(path))]  # every room is a node, even one that imports nothing
    for source, line, target in package_imports():
        edge = f"{source}:{line} imports {target}"
        if room(target) != room(source) and edge not in graph[room(source)][room(target)]:
            graph[room(source)][room(target)].append(edge)
    return graph


def reachable(graph, start: str) -> set[str]:
    """The rooms ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), {}):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cycles(graph) -> list[list[str]]:
    """Each group of rooms that import each other, directly or not (sorted; empty when imports go one way)."""
    reach = {node: reachable(graph, node) for node in graph}
    groups = {tuple(sorted(n for n in reach[node] if node in reach[n])) for node in graph if node in reach[node]}
    return sorted(map(list, groups))


def describe_cycles(graph) -> str:
    """Every cycle with the imports that make it, by module and line."""
    lines = []
    for group in cycles(graph):
        lines.append("import cycle between " + ", ".join(group) + ":")
        lines += [f"  {a} → {b}: {edge}" for a in group for b in sorted(graph[a]) if b in group
                  for edge in graph[a][b]]
    return "\n".join(lines)


def layers(graph) -> list[str]:
    """The rooms ordered so that each imports only rooms before it (the graph has no cycle)."""
    done: list[str] = []
    while len(done) < len(graph):
        ready = sorted(n for n in graph if n not in done and all(t in done for t in graph[n]))
        done.extend(ready)
    return done


def test_no_import_cycle_between_rooms():
    graph = import_graph()
    assert not cycles(graph), describe_cycles(graph)


def test_the_public_spelling_of_the_specs_is_not_used_inside():
    # interp_embed.encode.config re-exports the specs for users (README); inside, they come from interp_embed.spec.
    users = [f"{source}:{line}" for source, line, target in package_imports() if target == "interp_embed.encode.config"]
    assert not users, users


def test_graph_sees_imports_inside_functions_and_every_cycle():
    source = "import numpy\ndef run():\n    from ..store import chunk, Store\n    from . import session\n"
    modules = {"interp_embed.store", "interp_embed.store.chunk", "interp_embed.encode", "interp_embed.encode.session"}
    found = sorted(imported_modules(ast.parse(source), "interp_embed.encode", modules))
    assert found == [(3, "interp_embed.store"), (3, "interp_embed.store.chunk"), (4, "interp_embed.encode.session")]
    toy = {"a": {"b": ["a:1"]}, "b": {"c": ["b:2"]}, "c": {"a": ["c:3"]}, "d": {"e": ["d:4"]}, "e": {"d": ["e:5"]},
           "f": {"a": ["f:6"]}}
    assert cycles(toy) == [["a", "b", "c"], ["d", "e"]]
    assert "c → a: c:3" in describe_cycles(toy)
    assert cycles({"a": {"b": []}, "b": {}}) == []


if __name__ == "__main__":
    graph = import_graph()
    if cycles(graph):
        sys.exit(describe_cycles(graph))
    for node in layers(graph):
        print(f"{node:<14}", ", ".join(sorted(graph[node])) or "-")
