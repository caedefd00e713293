//! Abuse guards: the per-connection flood bucket, per-address connection limits with exempt
//! networks, and login back-off and lockout.
//!
//! Pure bookkeeping over time and addresses: no sockets, no IRC syntax.

pub mod flood;
pub mod ip_limits;
pub mod logins;
