#!/usr/bin/env python3
"""Replays the builder stage of each deploy/docker/*.Dockerfile without Docker, and fails where a real
`docker build` would.

CI has no Docker engine, so the images are never built here. What goes stale in these Dockerfiles is
the first layer: it copies every Cargo.toml and makes empty stand-ins for every target, so that the
dependencies build once; a new crate, binary, bench or example that the stand-ins miss breaks
`cargo build` before it compiles anything. The second layer copies the real sources of the crates the
image is built from; a path dependency or an `include_str!` file it does not copy breaks the build too.

For each Dockerfile this script copies what COPY copies into a temporary directory, runs each RUN with
`cargo` and `install` replaced by recorders, and at every recorded `cargo build -p PKG` checks that:
  * the workspace resolves offline with the lock file (`cargo metadata --locked --offline`);
  * every target a workspace Cargo.toml declares ([lib], [[bin]], [[bench]], [[example]], [[test]]) has
    its source file (cargo metadata does not check this, `cargo build` does);
  * in the last stage, PKG and its path dependencies are the real sources, byte for byte, and every
    file their `src/` includes with include_str!/include_bytes! is there.

Usage: check_dockerfiles.py REPO_ROOT
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib


def instructions(path):
    """(keyword, argument text) pairs of a Dockerfile, continuation lines joined, comments dropped."""
    out, pending = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line = pending + line
            pending = ""
            if line.strip():
                keyword, _, rest = line.strip().partition(" ")
                out.append((keyword.upper(), rest.strip()))
    return out


def builder_stage(steps):
    start = next(i for i, (k, a) in enumerate(steps) if k == "FROM" and " AS builder" in a.replace(" as ", " AS "))
    end = next((i for i in range(start + 1, len(steps)) if steps[i][0] == "FROM"), len(steps))
    return steps[start + 1 : end]


RECORDERS = 'cargo() { printf "%s\\n" "$*" >> "$CARGO_LOG"; }; install() { :; }; '


def metadata(tree):
    run = subprocess.run(
        ["cargo", "metadata", "--locked", "--offline", "--format-version", "1", "--no-deps"],
        cwd=tree, capture_output=True, text=True)
    if run.returncode != 0:
        raise Failure(f"cargo metadata in the replayed tree failed:\n{run.stderr.strip()}")
    return json.loads(run.stdout)


class Failure(Exception):
    pass


DEFAULT_DIRS = {"bin": "src/bin", "bench": "benches", "example": "examples", "test": "tests"}


def explicit_targets(manifest):
    """(kind, source path) of every target a Cargo.toml declares: cargo build fails when one is missing,
    while cargo metadata leaves it out silently. Auto-discovered targets cannot go missing this way."""
    with open(manifest, "rb") as f:
        toml = tomllib.load(f)
    root = os.path.dirname(manifest)
    out = []
    if "lib" in toml:
        out.append(("lib", os.path.join(root, toml["lib"].get("path", "src/lib.rs"))))
    for kind, default_dir in DEFAULT_DIRS.items():
        for t in toml.get(kind, []):
            default = "src/main.rs" if kind == "bin" and t["name"] == toml.get("package", {}).get("name") else f"{default_dir}/{t['name']}.rs"
            out.append((f"{kind} {t['name']!r}", os.path.join(root, t.get("path", default))))
    return out


def path_dependencies(meta, package):
    """`package` and the workspace packages it depends on (normal and build dependencies), transitively."""
    by_name = {p["name"]: p for p in meta["packages"]}
    seen, todo = set(), [package]
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        for dep in by_name[name]["dependencies"]:
            if dep.get("path") and dep.get("kind") in (None, "build"):
                todo.append(dep["name"])
    return [by_name[n] for n in sorted(seen)]


INCLUDE = re.compile(r'include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)')


def check_build(repo, tree, package, final):
    meta = metadata(tree)
    problems = []
    for p in meta["packages"]:
        for kind, path in explicit_targets(p["manifest_path"]):
            if not os.path.exists(path):
                rel = os.path.relpath(path, tree)
                problems.append(f"{p['name']}: the {kind} declared in its Cargo.toml has no source {rel}")
    if final:
        listed = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
        for p in path_dependencies(meta, package):
            crate = os.path.relpath(os.path.dirname(p["manifest_path"]), tree)
            for f in (f for f in listed if f.startswith(crate + "/")):
                copied = os.path.join(tree, f)
                if not os.path.exists(copied):
                    problems.append(f"{package} is built from {crate}, but {f} is not copied")
                elif open(copied, "rb").read() != open(os.path.join(repo, f), "rb").read():
                    problems.append(f"{package} is built from {crate}, but {f} is still a stand-in")
                compiled = f.startswith(crate + "/src/") or f == crate + "/build.rs"
                if compiled and f.endswith(".rs") and os.path.exists(copied):
                    for included in INCLUDE.findall(open(copied, encoding="utf-8", errors="replace").read()):
                        target = os.path.normpath(os.path.join(os.path.dirname(copied), included))
                        original = os.path.join(repo, os.path.relpath(target, tree))
                        if not os.path.exists(target):
                            problems.append(f"{f} includes {included}, which is not copied")
                        elif os.path.exists(original) and open(target, "rb").read() != open(original, "rb").read():
                            problems.append(f"{f} includes {included}, which is still a stand-in")
    if problems:
        raise Failure("\n".join(problems))


def replay(repo, dockerfile):
    steps = builder_stage(instructions(dockerfile))
    with tempfile.TemporaryDirectory() as root:
        cwd = root
        log = os.path.join(root, ".cargo-calls")
        open(log, "w").close()
        builds = [i for i, (k, a) in enumerate(steps) if k == "RUN" and "cargo build" in a]
        for i, (keyword, arg) in enumerate(steps):
            if keyword == "WORKDIR":
                cwd = os.path.join(root, arg.lstrip("/"))
                os.makedirs(cwd, exist_ok=True)
            elif keyword == "COPY":
                if arg.startswith("--"):
                    raise Failure(f"COPY {arg}: options are not replayed by this check")
                *sources, dest = shlex.split(arg)
                for src in sources:
                    s = os.path.join(repo, src)
                    d = os.path.join(root, dest.lstrip("/")) if dest.startswith("/") else os.path.join(cwd, dest)
                    if not os.path.exists(s):
                        raise Failure(f"COPY {src}: no such file in the build context")
                    if os.path.isdir(s):  # a directory's contents go into dest
                        shutil.copytree(s, d, dirs_exist_ok=True, ignore=shutil.ignore_patterns("target"))
                    else:
                        target = os.path.join(d, os.path.basename(src)) if dest.endswith("/") or dest in (".", "./") else d
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        shutil.copy(s, target)
            elif keyword == "RUN":
                before = open(log).read().count("\n")
                run = subprocess.run(["sh", "-c", RECORDERS + arg], cwd=cwd, env={**os.environ, "CARGO_LOG": log},
                                     capture_output=True, text=True)
                if run.returncode != 0:
                    raise Failure(f"RUN failed ({run.returncode}):\n{arg}\n{run.stderr.strip()}")
                calls = open(log).read().splitlines()[before:]
                for call in calls:
                    words = call.split()
                    if words[:1] == ["build"] and "-p" in words:
                        package = words[words.index("-p") + 1]
                        check_build(repo, cwd, package, final=(i == builds[-1]))
        if not builds:
            raise Failure("no RUN cargo build in the builder stage")


def main():
    repo = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    files = sorted(f for f in os.listdir(os.path.join(repo, "deploy/docker")) if f.endswith(".Dockerfile"))
    failed = False
    for name in files:
        try:
            replay(repo, os.path.join(repo, "deploy/docker", name))
            print(f"ok: deploy/docker/{name}")
        except Failure as e:
            failed = True
            print(f"FAILED: deploy/docker/{name}:\n{e}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
