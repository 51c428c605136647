//! The shape the code is kept in (issue 12): no function of the product
//! crates (agent, config, model, kernel) longer than [`MAX_BODY_LINES`]
//! lines unless a comment right above it says why (`// long: ...`). Checked
//! here, by a test, so a long function cannot come back unnoticed.
//!
//! It reads rustfmt-formatted source: a function's body ends at the first
//! line that is its own indentation followed by `}`.

#![cfg(test)]

use std::path::{Path, PathBuf};

/// Longest body allowed, from its `{` line to its `}` line.
const MAX_BODY_LINES: usize = 80;

/// The source directories of the product crates.
const CRATES: [&str; 4] = ["agent/src", "config/src", "model/src", "kernel/src"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `line` starts a function (after attributes and visibility).
fn starts_fn(line: &str) -> bool {
    let mut rest = line.trim_start();
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
        "extern \"C\" ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    rest.starts_with("fn ")
}

/// The functions of `text` whose body is longer than the limit, as
/// (first line number, body lines, the line), unless excused.
fn long_functions(text: &str) -> Vec<(usize, usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut long = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !starts_fn(line) {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        // The signature ends at a line ending with `{` (a body) or `;` (none).
        let Some(open) = (i..lines.len()).find(|&j| {
            let t = lines[j].trim_end();
            t.ends_with('{') || t.ends_with(';') || t.ends_with('}')
        }) else {
            continue;
        };
        if !lines[open].trim_end().ends_with('{') {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        let Some(end) = (open + 1..lines.len()).find(|&k| lines[k].trim_end() == close) else {
            continue;
        };
        let body = end - open + 1;
        let excused = i > 0
            && lines[..i]
                .iter()
                .rev()
                .take(3)
                .any(|l| l.contains("// long:"));
        if body > MAX_BODY_LINES && !excused {
            long.push((i + 1, body, line.trim().to_owned()));
        }
    }
    long
}

#[test]
fn no_function_of_the_product_is_over_80_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in CRATES {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found {} files", files.len());
    let mut offenders = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a source file");
        for (line, body, signature) in long_functions(&text) {
            offenders.push(format!(
                "{}:{line}: {body} lines: {signature}",
                file.display()
            ));
        }
    }
    assert!(
        offenders.is_empty(),
        "functions over {MAX_BODY_LINES} lines (split them, or say why with `// long: ...` above):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_scanner_finds_a_long_function_and_skips_short_and_bodiless_ones() {
    let body: String = (0..90).map(|i| format!("    let x{i} = {i};\n")).collect();
    let text = format!(
        "fn short() {{\n    1\n}}\n\npub fn long(\n    a: u32,\n) -> u32 {{\n{body}    a\n}}\n\ntrait T {{\n    fn f(&self);\n}}\n"
    );
    let found = long_functions(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, 5);
    let excused = text.replace("pub fn long(", "// long: a table of cases\npub fn long(");
    assert_eq!(long_functions(&excused).len(), 0);
}
