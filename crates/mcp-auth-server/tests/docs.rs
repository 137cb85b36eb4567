//! Every ```console block in README.md and docs/ runs against the real
//! binaries and must print what it shows (trycmd): a documented command or
//! output that changes fails the test command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn commands_shown_in_the_docs_print_what_the_docs_say() {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_mcp-auth-server"));
    let dir = server.parent().unwrap().to_owned();
    let cases = trycmd::TestCases::new();
    let mut available = vec!["mcp-auth-server".to_owned()];
    cases.register_bin("mcp-auth-server", &server);
    // The other binaries of the workspace, when built (the test command
    // builds them all, with every feature, before testing).
    for name in ["mcp-auth-client", "mcp-auth-cognito"] {
        let path = dir.join(name);
        if path.exists() {
            cases.register_bin(name, path);
            available.push(name.to_owned());
        }
    }
    let mut docs = vec![repo().join("README.md")];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        docs.push(entry.unwrap().path());
    }
    let mut checked = 0;
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap_or_default();
        if doc.extension().is_none_or(|e| e != "md") || !text.contains("```console") {
            continue;
        }
        let needed = programs(&text);
        if let Some(missing) = needed.iter().find(|p| !available.contains(p)) {
            assert!(
                std::env::var_os("CI").is_none(),
                "{} needs {missing}, which is not built",
                doc.display()
            );
            eprintln!("skipping {}: {missing} is not built", doc.display());
            continue;
        }
        cases.case(doc);
        checked += 1;
    }
    assert!(checked > 0, "no document with console examples was checked");
}

/// The programs the `$` lines of a document's console blocks run.
fn programs(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_console = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_console = !in_console && line.trim_start_matches('`').starts_with("console");
            continue;
        }
        let Some(cmd) = line.strip_prefix("$ ").filter(|_| in_console) else {
            continue;
        };
        if let Some(program) = cmd.split_whitespace().find(|w| !w.contains('='))
            && !out.iter().any(|p| p == program)
        {
            out.push(program.to_owned());
        }
    }
    out
}

/// Every test the documents cite as `file::test_name` (SECURITY.md's attack
/// classes, README's walkthroughs, CLIENT.md's) exists.
#[test]
fn tests_cited_in_the_docs_exist() {
    let mut fns = std::collections::HashSet::new();
    let mut stack = vec![repo().join("crates"), repo().join("tests")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("node_modules") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for part in text.split("fn ").skip(1) {
                    let name: String = part
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    fns.insert(name);
                }
            }
        }
    }
    let mut cited = 0;
    for doc in ["README.md", "docs/SECURITY.md", "docs/CLIENT.md"] {
        let text = std::fs::read_to_string(repo().join(doc)).unwrap();
        for span in text.split('`').skip(1).step_by(2) {
            let Some((file, name)) = span.rsplit_once("::") else {
                continue;
            };
            let plain = |s: &str| {
                !s.is_empty()
                    && s.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':'
                    })
            };
            // `module::test_name`: lowercase, a test-like name with words.
            if !plain(file) || !plain(name) || !name.contains('_') || name.len() < 12 {
                continue;
            }
            assert!(
                fns.contains(name),
                "{doc} cites `{span}`, which does not exist"
            );
            cited += 1;
        }
    }
    assert!(
        cited > 30,
        "only {cited} cited tests found: did the documents change form?"
    );
}
