//! One error type for the whole pipeline. Every error can say *where*: the file and
//! line to blame, and the cluster and object when they matter. The CLI prints it as
//! `error: <path>:<line>: <message>` (the contract's format) and exits 1.

use std::fmt;

/// A place in an input file. `line` is 1-based; 0 means "the file as a whole".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub path: String,
    pub line: u32,
}

impl Location {
    pub fn new(path: impl Into<String>, line: u32) -> Self {
        Location {
            path: path.into(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}", self.path, self.line)
        } else {
            f.write_str(&self.path)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub location: Option<Location>,
    pub cluster: Option<String>,
    /// The object concerned, as `Kind namespace/name`.
    pub object: Option<String>,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn msg(message: impl Into<String>) -> Self {
        Error {
            location: None,
            cluster: None,
            object: None,
            message: message.into(),
        }
    }

    pub fn at(location: Location, message: impl Into<String>) -> Self {
        Error::msg(message).with_location(location)
    }

    pub fn with_location(mut self, location: Location) -> Self {
        // The innermost (first attached) location wins: it is the most precise.
        if self.location.is_none() {
            self.location = Some(location);
        }
        self
    }

    pub fn with_cluster(mut self, cluster: impl Into<String>) -> Self {
        if self.cluster.is_none() {
            self.cluster = Some(cluster.into());
        }
        self
    }

    pub fn with_object(mut self, object: impl Into<String>) -> Self {
        if self.object.is_none() {
            self.object = Some(object.into());
        }
        self
    }

    /// Prefix the message with context, keeping location, cluster and object.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

/// Credentials are scrubbed from every error as it is shown (`redact::scrub`): a git or
/// registry client's message may quote a URL as the user typed it.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        if let Some(location) = &self.location {
            text.push_str(&format!("{location}: "));
        }
        match (&self.cluster, &self.object) {
            (Some(c), Some(o)) => text.push_str(&format!("cluster {c}, {o}: ")),
            (Some(c), None) => text.push_str(&format!("cluster {c}: ")),
            (None, Some(o)) => text.push_str(&format!("{o}: ")),
            (None, None) => {}
        }
        text.push_str(&self.message);
        // One line, whatever a message quotes (a name with a line break in it, found by
        // fuzzing): a line break is shown escaped, as YAML and JSON would write it.
        let text = if text.contains(['\n', '\r']) {
            text.trim_end().replace('\n', "\\n").replace('\r', "\\r")
        } else {
            text
        };
        f.write_str(&crate::redact::scrub(&text))
    }
}

impl std::error::Error for Error {}

/// Attach a description to I/O errors, which otherwise do not say which file.
pub trait IoContext<T> {
    fn io_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::msg(format!("{}: {e}", what())))
    }
}
