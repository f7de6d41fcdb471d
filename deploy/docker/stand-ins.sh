#!/bin/sh
# Empty stand-ins for every target of the workspace, written next to the Cargo.toml files, so that an
# image's first layer can build the dependencies alone and keep them cached until a manifest or the lock
# file changes (see *.Dockerfile). Run from the workspace root with only the manifests present.
#
# Targets come from the manifests: `[lib]` (its path, or src/lib.rs), and every `[[bin]]`, `[[bench]]`,
# `[[example]]` and `[[test]]` (its path, or cargo's default for the name). Every crate without a `[lib]`
# gets src/lib.rs, as a crate with an auto-discovered library would have. .ci/check_dockerfiles.py checks
# the result against the real workspace.
set -eu
for manifest in */Cargo.toml; do
  crate=${manifest%/Cargo.toml}
  awk '
    function value(line) { sub(/^[^=]*=[ \t]*/, "", line); gsub(/["\r]/, "", line); sub(/[ \t]*(#.*)?$/, "", line); return line }
    function flush() {
      if (kind == "lib") print "lib " (path != "" ? path : "src/lib.rs")
      else if (kind != "") {
        if (path == "") {
          if (kind == "bin") path = (name == package ? "src/main.rs" : "src/bin/" name ".rs")
          else path = dirs[kind] "/" name ".rs"
        }
        print "main " path
      }
      kind = ""; name = ""; path = ""
    }
    BEGIN { dirs["bench"] = "benches"; dirs["example"] = "examples"; dirs["test"] = "tests"; lib = 0 }
    /^\[package\]/ { flush(); section = "package"; next }
    /^\[lib\]/ { flush(); section = "target"; kind = "lib"; lib = 1; next }
    /^\[\[(bin|bench|example|test)\]\]/ { flush(); section = "target"; kind = $0; gsub(/[\[\] \t]/, "", kind); next }
    /^\[/ { flush(); section = ""; next }
    section == "package" && /^name[ \t]*=/ { package = value($0) }
    section == "target" && /^name[ \t]*=/ { name = value($0) }
    section == "target" && /^path[ \t]*=/ { path = value($0) }
    END { flush(); if (!lib) print "lib src/lib.rs" }
  ' "$manifest" | while read -r what path; do
    mkdir -p "$(dirname "$crate/$path")"
    if [ "$what" = lib ]; then : > "$crate/$path"; else echo 'fn main() {}' > "$crate/$path"; fi
  done
done
