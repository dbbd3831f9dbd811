#!/usr/bin/env python3
"""Fail on any import cycle between the engine's top-level modules (issue 28).

Reads every engine/src/**/*.rs file, collects the `crate::<module>` paths it names (in `use crate::...`, grouped
`use crate::{a, b::c}` and inline `crate::a::f()` paths), maps each file to its top-level module and reports
strongly connected components of more than one module. Also checks the declared layers below: a module may import
only modules of a lower layer (or its own), so nothing but the worker's own files imports `worker`. And the engine
library holds no `unsafe` (the fuzz harness's counting allocator lives in its own crate, fuzz/). Exit 1 on a cycle,
a layer violation, a module without a layer or an `unsafe`, 0 otherwise.

Usage: scripts/check-layers.py [engine/src] [--graph]
"""
import os
import re
import sys

# The engine's layers, bottom-up (README "Architecture"). A module imports only modules of lower layers.
LAYERS = [
    ["error", "sphere", "resize", "colormap", "backend"],  # 0 foundations
    ["budget", "dirs", "tensor_file"],  # 1 settings and files: memory budget, where things are, tensor files
    ["image_io", "weights", "rfm", "steer", "animation"],  # 2 formats and latent maths
    ["metrics", "data", "directions"],  # 3 image measures, photo sets and crops, the library of directions
    ["model"],  # 4 the networks
    ["flops", "lpips", "sampler"],  # 5 what is computed from the networks
    ["preflight"],  # 6 memory and time estimates
    ["checkpoint", "tiled"],  # 7 loading checkpoints; tiled encode/decode
    ["inspect", "eval", "verify"],  # 8 analysis
    ["generate", "autoencoder"],  # 9 the generator (inference); the front door (`engine::Sae`)
    ["train"],  # 10 every trainer: sae, preview, dit
    ["worker"],  # 11 the job thread the studio drives
]

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def strip_comments(src):
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    out = []
    for line in src.splitlines():
        # drop // comments (not inside strings: good enough for this codebase, strings with // are URLs in docs)
        i = line.find("//")
        out.append(line if i < 0 else line[:i])
    return "\n".join(out)


def strip_strings(src):
    """String literals emptied (char literals such as '"' first, so they do not open a string)."""
    src = re.sub(r"'(?:[^'\\]|\\.)'", "' '", src)
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', src)


def group_heads(src, start):
    """Top-level item heads of a `{...}` group starting at src[start] == '{'; returns (heads, end)."""
    depth, i, item, heads = 0, start, "", []
    while i < len(src):
        c = src[i]
        if c == "{":
            depth += 1
            if depth > 1:
                item += c
        elif c == "}":
            depth -= 1
            if depth == 0:
                heads.append(item)
                break
            item += c
        elif c == "," and depth == 1:
            heads.append(item)
            item = ""
        else:
            item += c
        i += 1
    names = []
    for h in heads:
        m = IDENT.search(h)
        if m:
            names.append(m.group(0))
    return names, i


def crate_refs(src):
    refs = set()
    for m in re.finditer(r"\bcrate::", src):
        j = m.end()
        if j < len(src) and src[j] == "{":
            names, _ = group_heads(src, j)
            refs.update(names)
        else:
            n = IDENT.match(src, j)
            if n:
                refs.add(n.group(0))
    return refs


def top_module(root, path):
    rel = os.path.relpath(path, root)
    head = rel.split(os.sep)[0]
    return head[:-3] if head.endswith(".rs") else head


def build_graph(root):
    lib = open(os.path.join(root, "lib.rs")).read()
    modules = set(re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;", lib, flags=re.M))
    graph = {m: set() for m in modules}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            top = top_module(root, path)
            if top not in modules:
                continue
            for r in crate_refs(strip_strings(strip_comments(open(path).read()))):
                if r in modules and r != top:
                    graph[top].add(r)
    return graph


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def self_test():
    """The check must see what it is for: a two-module cycle through a grouped import, an inline path, and an
    `unsafe` block; and none of them in comments or strings."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "lib.rs"), "w").write("pub mod error;\npub mod worker;\npub(crate) mod model;\n")
        os.mkdir(os.path.join(d, "model"))
        open(os.path.join(d, "model", "mod.rs"), "w").write(
            "use crate::{error::Result, sphere};\nfn f() { let _ = crate::worker::default_model_dir(); }\n"
        )
        open(os.path.join(d, "worker.rs"), "w").write("// crate::error in a comment\nuse crate::model;\n")
        open(os.path.join(d, "error.rs"), "w").write('const S: &str = "unsafe crate::worker";\nfn g() { unsafe {} }\n')
        graph = build_graph(d)
        assert graph == {"error": set(), "worker": {"model"}, "model": {"error", "worker"}}, graph
        assert [c for c in sccs(graph) if len(c) > 1] == [["model", "worker"]]
        assert re.search(r"\bunsafe\b", strip_strings(strip_comments(open(os.path.join(d, "error.rs")).read())))
        assert not re.search(r"\bunsafe\b", strip_strings(strip_comments('let s = "unsafe"; // unsafe\n')))
    print("check-layers self-test: a cycle, its edges and an unsafe block are found")


def main():
    if "--self-test" in sys.argv:
        self_test()
        return
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine", "src")
    graph = build_graph(root)
    if "--graph" in sys.argv:
        for m in sorted(graph):
            print(f"{m} -> {', '.join(sorted(graph[m]))}")
    cycles = [c for c in sccs(graph) if len(c) > 1]
    layer_of = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    bad = 0
    for c in cycles:
        print(f"cycle between {len(c)} engine modules: {', '.join(c)}")
        for m in c:
            back = sorted(w for w in graph[m] if w in c)
            print(f"  {m} -> {', '.join(back)}")
    unplaced = sorted(m for m in graph if m not in layer_of)
    for m in unplaced:
        print(f"module `{m}` has no layer in scripts/check-layers.py")
    for m in sorted(graph):
        for w in sorted(graph[m]):
            if m in layer_of and w in layer_of and layer_of[w] >= layer_of[m]:
                print(f"layer violation: {m} (layer {layer_of[m]}) imports {w} (layer {layer_of[w]})")
                bad += 1
    unsafe = []
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith(".rs"):
                path = os.path.join(dirpath, f)
                if re.search(r"\bunsafe\b", strip_strings(strip_comments(open(path).read()))):
                    unsafe.append(os.path.relpath(path, root))
    for u in unsafe:
        print(f"`unsafe` in the engine library: {u}")
    print(
        f"engine modules: {len(graph)}, cycles: {len(cycles)}, layer violations: {bad}, unplaced: {len(unplaced)}, "
        f"files with unsafe: {len(unsafe)}"
    )
    sys.exit(1 if cycles or bad or unplaced or unsafe else 0)


if __name__ == "__main__":
    main()
