//! [`RuleError`]: a problem with a rule file, naming the file, line, rule and field.

use std::path::PathBuf;

/// A problem with a rule file.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{file}:{line}: rule {rule:?}: {field}: {message}")]
    Invalid {
        file: PathBuf,
        line: u64,
        rule: String,
        field: String,
        message: String,
    },
}
