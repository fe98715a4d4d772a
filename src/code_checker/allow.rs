//! What the code checker may run, and where: commands whose argv starts with an allow-listed
//! argv, in a directory that resolves inside the root. Pure checks, no process in sight.

use std::path::{Path, PathBuf};

/// Why a request was refused; the message goes back to the caller as a tool error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("cannot parse the command: {0}")]
    Unparseable(String),
    #[error("the command is empty")]
    Empty,
    #[error(
        "`{command}` is not allow-listed; this code checker runs only commands starting with: {allowed}"
    )]
    NotAllowed { command: String, allowed: String },
    #[error("cwd {0:?} does not exist or cannot be resolved")]
    NoSuchDir(String),
    #[error("cwd {cwd:?} resolves to {resolved}, outside the root {root}")]
    OutsideRoot {
        cwd: String,
        resolved: String,
        root: String,
    },
}

/// The allow-list: each entry an argv prefix.
#[derive(Debug, Clone)]
pub struct AllowList {
    entries: Vec<Vec<String>>,
}

impl AllowList {
    /// Parses each entry shell-words style (`"pytest -q"` is `["pytest", "-q"]`).
    pub fn parse(entries: &[String]) -> Result<AllowList, String> {
        let mut parsed = Vec::with_capacity(entries.len());
        for entry in entries {
            let argv = shell_words::split(entry)
                .map_err(|e| format!("--allow {entry:?} cannot be parsed: {e}"))?;
            if argv.is_empty() {
                return Err("--allow needs a command, got an empty one".into());
            }
            parsed.push(argv);
        }
        if parsed.is_empty() {
            return Err("give at least one --allow \"COMMAND\"".into());
        }
        Ok(AllowList { entries: parsed })
    }

    /// The command's argv when an entry is a prefix of it, argument by argument.
    pub fn admit(&self, command: &str) -> Result<Vec<String>, Refusal> {
        let argv = shell_words::split(command).map_err(|e| Refusal::Unparseable(e.to_string()))?;
        if argv.is_empty() {
            return Err(Refusal::Empty);
        }
        if self.entries.iter().any(|e| argv.starts_with(e)) {
            Ok(argv)
        } else {
            Err(Refusal::NotAllowed {
                command: command.to_string(),
                allowed: self.describe(),
            })
        }
    }

    pub fn describe(&self) -> String {
        self.entries
            .iter()
            .map(|e| format!("`{}`", shell_words::join(e)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Resolves `cwd` (relative to `root`, or absolute) following symlinks, and admits it only
/// inside `root`, which must already be canonical.
pub fn resolve_cwd(root: &Path, cwd: Option<&str>) -> Result<PathBuf, Refusal> {
    let Some(cwd) = cwd.filter(|c| !c.is_empty()) else {
        return Ok(root.to_path_buf());
    };
    let joined = root.join(cwd);
    let resolved = joined
        .canonicalize()
        .map_err(|_| Refusal::NoSuchDir(cwd.to_string()))?;
    if !resolved.is_dir() {
        return Err(Refusal::NoSuchDir(cwd.to_string()));
    }
    if resolved.starts_with(root) {
        Ok(resolved)
    } else {
        Err(Refusal::OutsideRoot {
            cwd: cwd.to_string(),
            resolved: resolved.display().to_string(),
            root: root.display().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn an_entry_admits_commands_that_start_with_its_argv() {
        let allow = list(&["cargo test", "pytest"]);
        assert_eq!(
            allow.admit("cargo test --release").unwrap(),
            ["cargo", "test", "--release"]
        );
        assert!(allow.admit("pytest -q 'tests/a b.py'").is_ok());
        assert!(matches!(
            allow.admit("cargo testx"),
            Err(Refusal::NotAllowed { .. })
        ));
        assert!(matches!(
            allow.admit("cargo"),
            Err(Refusal::NotAllowed { .. })
        ));
        assert!(matches!(
            allow.admit("rm -rf /"),
            Err(Refusal::NotAllowed { .. })
        ));
    }

    #[test]
    fn shell_tricks_stay_plain_arguments_and_do_not_match() {
        let allow = list(&["cargo test"]);
        assert!(
            allow.admit("cargo test; rm -rf /").is_err(),
            "`test;` is not `test`"
        );
        assert_eq!(allow.admit("  ").unwrap_err(), Refusal::Empty);
        assert!(matches!(
            allow.admit("cargo test 'unclosed"),
            Err(Refusal::Unparseable(_))
        ));
    }

    #[test]
    fn an_empty_allow_list_is_a_startup_error() {
        assert!(AllowList::parse(&[]).is_err());
        assert!(AllowList::parse(&["".into()]).is_err());
    }

    #[test]
    fn cwd_must_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let root = root.canonicalize().unwrap();
        assert_eq!(resolve_cwd(&root, None).unwrap(), root);
        assert_eq!(resolve_cwd(&root, Some("sub")).unwrap(), root.join("sub"));
        assert!(matches!(
            resolve_cwd(&root, Some("..")),
            Err(Refusal::OutsideRoot { .. })
        ));
        assert!(matches!(
            resolve_cwd(&root, Some("/")),
            Err(Refusal::OutsideRoot { .. })
        ));
        assert!(matches!(
            resolve_cwd(&root, Some("nope")),
            Err(Refusal::NoSuchDir(_))
        ));
        std::os::unix::fs::symlink(dir.path(), root.join("escape")).unwrap();
        assert!(matches!(
            resolve_cwd(&root, Some("escape")),
            Err(Refusal::OutsideRoot { .. })
        ));
    }
}
