"""Fail when the module import graph of a package has a loop (``make lint``).

Every import counts: module level, inside a function, and under ``if TYPE_CHECKING:`` (grimp's
``build_graph`` keeps those unless told to exclude them). Each loop is a strongly connected
component of the graph; for each we print its modules and one closed chain through them, with the
line of every import, so the edge to cut is easy to find.

Usage: ``python tools/import_cycles.py [package]`` (default ``afinar``). Exit status 1 on a loop.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Mapping

import grimp


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm without recursion: the components with more than one module, or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(sorted(component))
    return found


def one_chain(graph: Mapping[str, Iterable[str]], members: list[str]) -> list[str]:
    """A shortest closed chain from the component's first module back to itself, within the component."""
    inside = set(members)
    start = members[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt not in inside or nxt in previous:
                    continue
                previous[nxt] = node
                if nxt == start:
                    chain = [start]
                    while chain[-1] != start or len(chain) == 1:
                        chain.append(previous[chain[-1]])
                    return list(reversed(chain))
                following.append(nxt)
        frontier = following
    return [start, start]


def main(package: str = "afinar") -> int:
    built = grimp.build_graph(package, cache_dir=None)
    graph = {module: set(built.find_modules_directly_imported_by(module)) for module in built.modules}
    loops = strongly_connected(graph)
    for members in loops:
        print(f"import loop ({len(members)} modules): {', '.join(members)}")
        chain = one_chain(graph, members)
        for importer, imported in itertools.pairwise(chain):
            detail = built.get_import_details(importer=importer, imported=imported)
            where = f"line {detail[0]['line_number']}: {detail[0]['line_contents']}" if detail else ""
            print(f"    {importer} -> {imported}   {where}")
    if loops:
        print(f"{len(loops)} import loop(s) in {package}: cut one import of each (docs/architecture.md)")
        return 1
    print(f"no import loops in {package} ({len(graph)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
