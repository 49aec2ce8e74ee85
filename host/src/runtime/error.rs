//! What a runtime call fails with: the WIT `error` cases, plus one the host
//! tells apart and a plugin does not see ([`Error::Unsupported`]).

use std::fmt;

use crate::wit::WitError;

/// What a runtime call fails with. The cases are the WIT `error`'s, which a
/// plugin sees as they are, and [`Error::Unsupported`], which reaches a
/// plugin as `other` (see `From<Error> for WitError`): the container routes
/// answer it 501, and an [`Error::Other`] failure (a file that cannot be
/// read or written) 500.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Error {
    /// The parameters are wrong; the text starts with the field's name.
    InvalidParams(String),
    /// A named image, container, file or registry does not exist.
    NotFound(String),
    /// The request conflicts with the current state.
    Conflict(String),
    /// The host refused: not granted, outside the share root, rejected credentials.
    Denied(String),
    /// The container runtime failed; the text is the runtime's message.
    Runtime(String),
    /// The task was cancelled while the call ran.
    Cancelled,
    /// Any other failure, described in words (e.g. reading or writing a file).
    Other(String),
    /// A call this backend or this server does not serve (no application
    /// store, an LXC call Docker-only): WIT `other` for a plugin.
    Unsupported(String),
}

impl Error {
    /// The error as a plugin sees it.
    pub fn to_wit(&self) -> WitError {
        self.clone().into()
    }

    /// The error for a user, as [`WitError::message`] spells it.
    pub fn message(&self) -> String {
        self.to_wit().message()
    }

    /// The WIT case name, e.g. `not-found` (`other` for [`Error::Unsupported`]).
    pub fn kind(&self) -> &'static str {
        self.to_wit().kind()
    }
}

impl From<Error> for WitError {
    fn from(e: Error) -> WitError {
        match e {
            Error::InvalidParams(m) => WitError::InvalidParams(m),
            Error::NotFound(m) => WitError::NotFound(m),
            Error::Conflict(m) => WitError::Conflict(m),
            Error::Denied(m) => WitError::Denied(m),
            Error::Runtime(m) => WitError::Runtime(m),
            Error::Cancelled => WitError::Cancelled,
            Error::Other(m) | Error::Unsupported(m) => WitError::Other(m),
        }
    }
}

impl From<WitError> for Error {
    fn from(e: WitError) -> Error {
        match e {
            WitError::InvalidParams(m) => Error::InvalidParams(m),
            WitError::NotFound(m) => Error::NotFound(m),
            WitError::Conflict(m) => Error::Conflict(m),
            WitError::Denied(m) => Error::Denied(m),
            WitError::Runtime(m) => Error::Runtime(m),
            WitError::Cancelled => Error::Cancelled,
            WitError::Other(m) => Error::Other(m),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unsupported(m) => f.debug_tuple("Error::Unsupported").field(m).finish(),
            other => fmt::Debug::fmt(&other.to_wit(), f),
        }
    }
}

/// As the WIT error shows itself (an unsupported call as `other`), so that
/// what is logged reads the same whichever side it is logged on.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_wit(), f)
    }
}

impl std::error::Error for Error {}
