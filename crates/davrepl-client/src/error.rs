//! Errors as kinds a caller can branch on.

use std::fmt;

/// What went wrong, coarsely enough to decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `412`: the condition was false — someone else changed (or created) the resource.
    PreconditionFailed,
    /// `475 Invalid collblob`: discard the collblob and resync from scratch.
    InvalidCollblob,
    /// `401`: no or wrong credentials.
    Unauthorized,
    /// `403`: not allowed.
    Forbidden,
    /// `404`.
    NotFound,
    /// `409`: a parent collection is missing (or a similar conflict of the namespace).
    Conflict,
    /// `423`: the resource is locked.
    Locked,
    /// `507`: the server's quota is used up.
    InsufficientStorage,
    /// Any other status.
    Status,
    /// The connection failed or timed out.
    Transport,
    /// The server's answer could not be understood.
    Protocol,
    /// A local file could not be read.
    Io,
    /// The client was given something unusable (a bad URL).
    Usage,
}

/// An error from the client: its [`ErrorKind`], the HTTP status when there was one, and a
/// message for people.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    status: Option<u16>,
    message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "{} ({s})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The kind, to branch on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: None,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, message)
    }

    #[allow(clippy::needless_pass_by_value)] // `map_err(Error::transport)`
    pub(crate) fn transport(e: reqwest::Error) -> Self {
        Self::new(ErrorKind::Transport, format!("transport: {e}"))
    }

    #[allow(clippy::needless_pass_by_value)] // `map_err(Error::io)`
    pub(crate) fn io(e: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("local file: {e}"))
    }

    /// The error a non-success answer stands for (its body, trimmed, as the message).
    pub(crate) async fn from_response(mut resp: reqwest::Response, what: &str) -> Self {
        let status = resp.status().as_u16();
        let kind = match status {
            412 => ErrorKind::PreconditionFailed,
            475 => ErrorKind::InvalidCollblob,
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            423 => ErrorKind::Locked,
            507 => ErrorKind::InsufficientStorage,
            _ => ErrorKind::Status,
        };
        // The first few KiB of the body say why; the rest is not read.
        let mut head = Vec::new();
        while head.len() < 4096 {
            match resp.chunk().await {
                Ok(Some(c)) => head.extend_from_slice(&c),
                _ => break,
            }
        }
        let body = String::from_utf8_lossy(&head);
        let reason: String = body.trim().chars().take(200).collect();
        let message = if reason.is_empty() || reason.starts_with('<') {
            format!("{what} failed")
        } else {
            format!("{what} failed: {reason}")
        };
        Self {
            kind,
            status: Some(status),
            message,
        }
    }
}
