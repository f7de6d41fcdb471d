//! The repository stands on its own: no `*.rs` or `*.md` file of the workspace cites the design notes
//! or the READMEs that lived beside the clone during development (users do not have them), and every
//! link to a section of `docs/semantics.md` lands on a heading or an explicit `<a id>` anchor there.
//!
//! Scanned: every `*.rs` and `*.md` file under the workspace root, except `target/` directories, `.git/`,
//! `fuzz/corpus/` and `fuzz/artifacts/`. The needles are built from pieces so that this file does not
//! match itself.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The word that named the out-of-tree design notes, matched as a whole word, case-sensitive.
const NOTES_WORD: &str = concat!("DES", "IGN");
/// The directory beside the clone that held them.
const OUTSIDE_DIR: &str = concat!("../", "sha", "red");
/// A link into a section of the semantics page.
const SEMANTICS_LINK: &str = concat!("semantics.md", "#");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("workspace root")
}

/// Every `*.rs` and `*.md` file under `root`, as (path relative to root with `/` separators, absolute path).
fn sources(root: &Path) -> Vec<(String, PathBuf)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name == "target" || name == ".git" || rel == "fuzz/corpus" || rel == "fuzz/artifacts" {
                    continue;
                }
                walk(root, &path, out);
            } else if meta.is_file() && (rel.ends_with(".rs") || rel.ends_with(".md")) {
                out.push((rel, path));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `line` holds `word` with no word character right before or after it.
fn has_whole_word(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
    })
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped except `-` and `_`, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || c == '-' || c == '_' || c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown page: heading slugs (with GitHub's `-1`, `-2` suffixes for repeats) and
/// the `id`/`name` of explicit `<a>` tags. Lines inside code fences are not headings.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let base = slug(&line[hashes..]);
            let mut candidate = base.clone();
            let mut n = 0;
            while found.contains(&candidate) {
                n += 1;
                candidate = format!("{base}-{n}");
            }
            found.insert(candidate);
        }
        for attr in ["id=\"", "name=\""] {
            for (at, _) in line.match_indices("<a ") {
                let tag = &line[at..line[at..].find('>').map_or(line.len(), |e| at + e)];
                if let Some(start) = tag.find(attr) {
                    let value = &tag[start + attr.len()..];
                    if let Some(end) = value.find('"') {
                        found.insert(value[..end].to_string());
                    }
                }
            }
        }
    }
    found
}

/// Lexically normalizes `a/b/../c` to `a/c` (no file system access).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn no_file_cites_documents_outside_the_repository() {
    let root = root();
    let files = sources(&root);
    assert!(files.iter().any(|(rel, _)| rel == "docs/semantics.md"), "the walk found docs/semantics.md");
    let mut bad = Vec::new();
    for (rel, path) in &files {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
        for (i, line) in text.lines().enumerate() {
            if has_whole_word(line, NOTES_WORD) || line.contains(OUTSIDE_DIR) {
                bad.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "these lines cite documents that are not in the repository; point them at docs/ instead \
         (the rules are in docs/semantics.md):\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_link_to_a_semantics_section_resolves() {
    let root = root();
    let semantics = root.join("docs/semantics.md");
    let page = std::fs::read_to_string(&semantics).expect("docs/semantics.md exists");
    let known = anchors(&page);
    for expected in ["1-groups-counting-and-scope", "2-weighted-distribution-with-base", "4-rebalancer"] {
        assert!(known.contains(expected), "slugs are computed like GitHub's: {expected} missing from {known:?}");
    }
    let mut bad = Vec::new();
    let mut checked = 0;
    for (rel, path) in sources(&root) {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
        let dir = path.parent().expect("a file has a directory");
        for (i, line) in text.lines().enumerate() {
            let at_line = format!("{rel}:{}", i + 1);
            let mut links: Vec<(String, String)> = Vec::new();
            for (at, _) in line.match_indices(SEMANTICS_LINK) {
                let anchor: String = line[at + SEMANTICS_LINK.len()..]
                    .chars()
                    .take_while(|&c| c.is_alphanumeric() || c == '-' || c == '_')
                    .collect();
                // The path in front of the file name: `docs/` from the root (code comments), or relative
                // to the file (Markdown links).
                let prefix_start = line[..at]
                    .char_indices()
                    .rev()
                    .take_while(|&(_, c)| c.is_alphanumeric() || "./_-".contains(c))
                    .last()
                    .map_or(at, |(j, _)| j);
                let target = format!("{}semantics.md", &line[prefix_start..at]);
                let resolves =
                    normalize(&root.join(&target)) == semantics || normalize(&dir.join(&target)) == semantics;
                if !resolves {
                    links.push((anchor.clone(), format!("path {target} is not docs/semantics.md")));
                }
                links.push((anchor, String::new()));
            }
            // Links inside the page itself.
            if path == semantics {
                for (at, _) in line.match_indices("](#") {
                    let anchor: String =
                        line[at + 3..].chars().take_while(|&c| c.is_alphanumeric() || c == '-' || c == '_').collect();
                    links.push((anchor, String::new()));
                }
            }
            for (anchor, problem) in links {
                checked += 1;
                if !problem.is_empty() {
                    bad.push(format!("{at_line}: #{anchor}: {problem}"));
                } else if !known.contains(&anchor) {
                    bad.push(format!("{at_line}: #{anchor}: no such heading or <a id> in docs/semantics.md"));
                }
            }
        }
    }
    assert!(checked > 0, "no links to docs/semantics.md sections were found at all");
    assert!(bad.is_empty(), "broken links to docs/semantics.md:\n{}\nknown anchors: {known:?}", bad.join("\n"));
}

#[test]
fn helpers_behave() {
    assert!(has_whole_word("see X (WORD §1)", "WORD"));
    assert!(has_whole_word("WORD.md", "WORD"));
    assert!(!has_whole_word("WORDS and PREWORD", "WORD"));
    assert_eq!(slug(" 2. Weighted distribution with base"), "2-weighted-distribution-with-base");
    assert_eq!(slug(" 5. Target tracking (traffic weights)"), "5-target-tracking-traffic-weights");
    assert_eq!(slug(" 3. Least-loaded zone"), "3-least-loaded-zone");
    let a = anchors("# A\n## A\n```\n# not a heading\n```\n* <a id=\"x-y\"></a>text\n");
    assert_eq!(a, BTreeSet::from(["a".to_string(), "a-1".to_string(), "x-y".to_string()]));
    assert_eq!(normalize(Path::new("/r/docs/../docs/s.md")), PathBuf::from("/r/docs/s.md"));
}
