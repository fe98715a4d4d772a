//! What the evidence asserts about files and commands, so a check can tell "unmet" from
//! "contradicted": a listed file, a claimed digest, a claimed passing run.

use crate::evidence::EvidenceItem;

/// Paths compared the way an agent writes them: `./src/a.rs` is `src/a.rs`, and an
/// absolute path matches the relative one it ends with.
pub fn same_path(a: &str, b: &str) -> bool {
    let norm = |p: &str| {
        p.split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect::<Vec<_>>()
            .join("/")
    };
    let (a, b) = (norm(a), norm(b));
    if a.is_empty() || b.is_empty() {
        return false;
    }
    a == b || a.ends_with(&format!("/{b}")) || b.ends_with(&format!("/{a}"))
}

/// Whether the evidence lists `path` as a file it produced.
pub fn lists_file(items: &[EvidenceItem], path: &str) -> bool {
    items
        .iter()
        .any(|i| matches!(i, EvidenceItem::File { path: p, .. } if same_path(p, path)))
}

/// The last digest the evidence claims for `path`.
pub fn claimed_digest(items: &[EvidenceItem], path: &str) -> Option<String> {
    items.iter().rev().find_map(|i| match i {
        EvidenceItem::File {
            path: p,
            sha256: Some(d),
        } if same_path(p, path) => Some(d.clone()),
        _ => None,
    })
}

/// What in the evidence says this command passed: a `command` item with the same argv
/// that exited 0, or test results with no failures.
pub fn claimed_success(items: &[EvidenceItem], command: &str) -> Option<String> {
    let argv = |c: &str| shell_words::split(c).unwrap_or_else(|_| vec![c.to_string()]);
    let wanted = argv(command);
    items.iter().find_map(|i| match i {
        EvidenceItem::Command {
            command: c,
            exit_code: 0,
            ..
        } if argv(c) == wanted => Some(format!("`{c}` exited 0")),
        EvidenceItem::TestResults {
            passed, failed: 0, ..
        } if *passed > 0 => Some(format!("{passed} tests passed and none failed")),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, sha: Option<&str>) -> EvidenceItem {
        EvidenceItem::File {
            path: path.into(),
            sha256: sha.map(String::from),
        }
    }

    #[test]
    fn paths_match_the_way_agents_write_them() {
        assert!(same_path("./src/a.rs", "src/a.rs"));
        assert!(same_path("/work/repo/src/a.rs", "src/a.rs"));
        assert!(!same_path("src/a.rs", "src/b.rs"));
        assert!(!same_path("a.rs", "xa.rs"));
        assert!(!same_path("", "a"));
    }

    #[test]
    fn the_last_claimed_digest_for_a_path_counts() {
        let items = [
            file("a", Some("11")),
            file("b", Some("22")),
            file("./a", Some("33")),
        ];
        assert_eq!(claimed_digest(&items, "a").as_deref(), Some("33"));
        assert_eq!(claimed_digest(&[file("a", None)], "a"), None);
    }

    #[test]
    fn a_passing_claim_is_a_zero_exit_of_the_same_argv_or_clean_tests() {
        let ran = |c: &str, code| EvidenceItem::Command {
            command: c.into(),
            exit_code: code,
            output: None,
        };
        assert!(claimed_success(&[ran("cargo  test", 0)], "cargo test").is_some());
        assert!(claimed_success(&[ran("cargo test", 1)], "cargo test").is_none());
        assert!(claimed_success(&[ran("cargo build", 0)], "cargo test").is_none());
        let tests = EvidenceItem::TestResults {
            passed: 4,
            failed: 0,
            skipped: 0,
            output: None,
        };
        assert!(claimed_success(&[tests], "pytest").is_some());
    }
}
