#!/usr/bin/env python3
"""Checks every module's imports against Loom's intended dependency graph (../shared/DESIGN.md):
kernels <- tensor <- layers <- training / seq2seq <- recipes and the CLI; text and audio above
the tensor module only; Swift modules above the kernels reach C only through Swift APIs.

    python3 scripts/check_imports.py [ROOT]

Prints each import that breaks the graph (file, line, module) and exits 1; exits 0 when every
import is allowed. The test suite runs it, and runs it on a copy with a wrong import to see it fail.
"""
import os
import re
import sys

# What each module may import besides the platform (Foundation, Dispatch, Glibc, ...).
ALLOWED = {
    "LoomKernels": {"CBLAS", "CLoomKernels"},
    "LoomTensor": {"LoomKernels"},
    "LoomLayers": {"LoomTensor"},
    "LoomTraining": {"LoomTensor", "LoomLayers"},
    "LoomText": {"LoomTensor", "CSentencePiece"},
    "LoomAudio": {"LoomTensor", "CFFTW", "CSndFile", "CSampleRate"},
    "LoomSeq2Seq": {"LoomTensor", "LoomLayers", "LoomTraining", "LoomText", "LoomAudio"},
    "Loom": {"LoomKernels", "LoomTensor", "LoomLayers", "LoomTraining", "LoomText", "LoomAudio", "LoomSeq2Seq"},
    "LoomDistributed": {"LoomTraining", "CLoomMPI"},
    "loom": {"Loom", "LoomDistributed", "ArgumentParser"},
    "LoomServe": {"Loom", "Hummingbird", "Prometheus", "ServiceLifecycle", "NIOCore", "Logging"},
    "loom-serve": {"Loom", "LoomServe", "ArgumentParser"},
    "LoomFuzz": {"LoomAudio", "LoomSeq2Seq"},
    "Benchmarks": {"Loom"},
    "RecipeSupport": {"Loom", "LoomDistributed", "ArgumentParser"},
    "recipe": {"Loom", "LoomDistributed", "RecipeSupport", "ArgumentParser"},
}
PLATFORM = {"Foundation", "FoundationEssentials", "Dispatch", "Glibc", "Musl", "Synchronization", "XCTest"}
IMPORT = re.compile(r"^\s*(?:@_exported\s+|@testable\s+|@preconcurrency\s+)?import\s+(?:(?:struct|class|enum|func|var|let|protocol|typealias)\s+)?([A-Za-z_][A-Za-z0-9_]*)")


def modules(root):
    """(module name, rule name, folder) for every Swift module of the package."""
    for name in sorted(os.listdir(os.path.join(root, "Sources"))):
        folder = os.path.join(root, "Sources", name)
        if os.path.isdir(folder) and name in ALLOWED:
            yield name, name, folder
    yield "Benchmarks", "Benchmarks", os.path.join(root, "Benchmarks")
    recipes = os.path.join(root, "recipes")
    for name in sorted(os.listdir(recipes)):
        folder = os.path.join(recipes, name)
        if os.path.isdir(folder):
            yield name, "RecipeSupport" if name == "Support" else "recipe", folder


def violations(root):
    found = []
    for module, rule, folder in modules(root):
        if not os.path.isdir(folder):
            continue
        for directory, _, files in os.walk(folder):
            for file in sorted(files):
                if not file.endswith(".swift"):
                    continue
                path = os.path.join(directory, file)
                with open(path, encoding="utf-8") as f:
                    for number, line in enumerate(f, 1):
                        m = IMPORT.match(line)
                        if m and m.group(1) not in PLATFORM and m.group(1) not in ALLOWED[rule]:
                            found.append(f"{os.path.relpath(path, root)}:{number}: {module} imports {m.group(1)} "
                                         f"(allowed: {', '.join(sorted(ALLOWED[rule]))})")
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = violations(root)
    for line in found:
        print(line)
    print(f"import graph: {len(found)} violation(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
