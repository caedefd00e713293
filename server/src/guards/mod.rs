//! Abuse guards: the per-connection flood bucket, per-address connection limits with exempt
//! networks, login back-off and lockout, how often users may ring each other for direct
//! links, and the bandwidth cap of relayed links.
//!
//! Pure bookkeeping over time and addresses: no sockets, no IRC syntax.

pub mod bandwidth;
pub mod flood;
pub mod ip_limits;
pub mod logins;
pub mod peer_calls;
