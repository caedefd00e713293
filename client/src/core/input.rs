//! What the core asks the user for next, what comes back, and the credentials being asked
//! for when `register` or `login` lacks them.

/// What the core wants read next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InputRequest {
    /// A command line, with this prompt (interactive mode only).
    Command(String),
    /// A visible answer (an account name).
    Text(String),
    /// A password: never echoed (the line editor shows `*` for each character).
    Secret(String),
}

/// What came back from the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InputReply {
    Line(String),
    /// End of input (Ctrl-D, or the end of stdin).
    Eof,
    /// Ctrl-C: cancel what is being typed.
    Interrupted,
}

/// Missing credentials being asked for.
#[derive(Debug)]
pub(super) struct Ask {
    pub(super) register: bool,
    pub(super) name: Option<String>,
    pub(super) password: Option<String>,
}

impl Ask {
    /// The question for the next missing piece; `None` once nothing is missing.
    pub(super) fn request(&self) -> InputRequest {
        match self {
            Ask { name: None, .. } => InputRequest::Text("account name: ".into()),
            Ask { password: None, .. } => InputRequest::Secret("password: ".into()),
            _ => InputRequest::Secret("repeat password: ".into()),
        }
    }
}
