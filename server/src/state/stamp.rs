//! What the server adds to a user's message when it relays it: the time, the message id and
//! the sender's account. How these become IRC tags for each recipient is `irc/`'s business.

use std::time::SystemTime;

/// The time, id and account of one user message; each recipient gets the tags its
/// capabilities ask for (`server-time`, `message-tags`, `account-tag`).
#[derive(Debug, Clone)]
pub struct Stamp {
    pub time: SystemTime,
    pub msgid: Option<String>,
    pub account: Option<String>,
}
