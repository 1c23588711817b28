//! `docs/architecture.md` (Layout) is the one list of the source files: every file under a
//! workspace crate's `src/` is in it (the crate roots `lib.rs` and `main.rs` may be left out), and
//! everything in it exists.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The fenced block under the Layout heading.
fn layout_block(doc: &str) -> &str {
    let section = doc
        .split_once("## Layout (files by role)")
        .expect("a Layout section")
        .1;
    let block = section.split_once("```\n").expect("a fenced list").1;
    block.split_once("```").expect("the end of the fenced list").0
}

/// The line with every parenthesised remark removed (remarks may hold commas and braces).
fn without_remarks(line: &str) -> String {
    let mut depth = 0usize;
    line.chars()
        .filter(|c| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect()
}

/// The entries of a line: `a.rs`, `dir/{mod, b}` (each name `.rs` unless it has an extension).
fn entries(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '{' => {
                let inside: String = chars.by_ref().take_while(|&c| c != '}').collect();
                out.extend(inside.split(',').map(|name| format!("{token}{}", name.trim())));
                token.clear();
            }
            c if c.is_whitespace() => {
                if !token.is_empty() {
                    out.push(std::mem::take(&mut token));
                }
            }
            c => token.push(c),
        }
    }
    if !token.is_empty() {
        out.push(token);
    }
    out.into_iter()
        .map(|entry| {
            if Path::new(&entry).extension().is_some() {
                entry
            } else {
                format!("{entry}.rs")
            }
        })
        .collect()
}

/// Folder (`core/src/`) -> the files the list names in it.
fn listed(block: &str) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    let mut folder = String::new();
    for line in block.lines().filter(|line| !line.trim().is_empty()) {
        let mut text = without_remarks(line);
        if !line.starts_with(' ') {
            let (first, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
            assert!(
                first.ends_with("/src/"),
                "a line of the list starts with a folder: {line}"
            );
            folder = first.to_owned();
            text = rest.to_owned();
        }
        files.extend(
            entries(&text)
                .into_iter()
                .map(|entry| PathBuf::from(format!("{folder}{entry}"))),
        );
    }
    files
}

fn members(manifest: &str) -> Vec<String> {
    let line = manifest
        .lines()
        .find(|line| line.starts_with("members = ["))
        .expect("the workspace's members");
    line.trim_start_matches("members = [")
        .trim_end_matches(']')
        .split(',')
        .map(|member| member.trim().trim_matches('"').to_owned())
        .collect()
}

fn files_under(root: &Path, folder: &Path, out: &mut BTreeSet<PathBuf>) {
    for entry in std::fs::read_dir(root.join(folder)).expect("read a source folder") {
        let entry = entry.expect("a folder entry");
        let path = folder.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            files_under(root, &path, out);
        } else {
            out.insert(path);
        }
    }
}

#[test]
fn the_architecture_docs_layout_lists_every_source_file_and_nothing_else() {
    let root = workspace();
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("the architecture doc");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("the workspace manifest");
    let listed = listed(layout_block(&doc));
    let mut tree = BTreeSet::new();
    for member in members(&manifest) {
        let src = PathBuf::from(format!("{member}/src"));
        let mut files = BTreeSet::new();
        files_under(&root, &src, &mut files);
        let roots = [src.join("lib.rs"), src.join("main.rs")];
        tree.extend(
            files
                .into_iter()
                .filter(|file| !roots.contains(file) || listed.contains(file)),
        );
    }
    let unlisted: Vec<_> = tree.difference(&listed).collect();
    let missing: Vec<_> = listed.difference(&tree).collect();
    assert!(
        unlisted.is_empty() && missing.is_empty(),
        "docs/architecture.md (Layout) and the tree disagree.\n  in the tree, not in the list: {unlisted:?}\n  in the list, not in the tree: {missing:?}"
    );
}

#[test]
fn the_list_is_read_as_written() {
    let block =
        "core/src/   lease.rs (pure, rules)  tracker/{mod (the handle), run}\n            bin/x.rs node.sh\n";
    let files: Vec<_> = listed(block).into_iter().collect();
    let expected: Vec<PathBuf> = [
        "core/src/bin/x.rs",
        "core/src/lease.rs",
        "core/src/node.sh",
        "core/src/tracker/mod.rs",
        "core/src/tracker/run.rs",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(files, expected);
}
