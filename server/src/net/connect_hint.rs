//! The start-up lines that tell a user how to connect: the `huddle` command line for this
//! listener, with trust on first use and with the certificate pinned by `--ca`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::storage::identity::{hostname, CERT_FILE};

/// The certificate clients can pin with `--ca`: the one given with `--cert`, or the
/// generated one in the data directory (absolute when it can be resolved).
fn cert_file(config: &Config) -> PathBuf {
    let path = config
        .cert
        .clone()
        .unwrap_or_else(|| config.data_dir.join(CERT_FILE));
    std::fs::canonicalize(&path).unwrap_or(path)
}

/// The host a client names to reach `ip`: the machine's host name when listening on every
/// interface (it is in the generated certificate), otherwise the address itself.
fn host_for(ip: IpAddr) -> String {
    match ip {
        ip if ip.is_unspecified() => hostname().unwrap_or_else(|| "localhost".to_string()),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The lines printed after the fingerprint, for a server listening on `local`.
pub fn connect_hint(config: &Config, local: SocketAddr) -> Vec<String> {
    hint_lines(&host_for(local.ip()), local.port(), &cert_file(config))
}

fn hint_lines(host: &str, port: u16, cert: &Path) -> Vec<String> {
    vec![
        format!(
            "connect with: huddle {host} {port}   (compare the fingerprint above on first contact)"
        ),
        format!(
            "or pinned:    huddle --ca {} {host} {port}   (with a copy of the certificate)",
            cert.display()
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_host_port_and_certificate() {
        let lines = hint_lines("chat.example", 6697, Path::new("/srv/huddle/cert.pem"));
        assert!(lines[0].starts_with("connect with: huddle chat.example 6697 "));
        assert!(lines[1]
            .starts_with("or pinned:    huddle --ca /srv/huddle/cert.pem chat.example 6697 "));
    }

    #[test]
    fn hosts_for_addresses() {
        assert_eq!(host_for("127.0.0.1".parse().unwrap()), "127.0.0.1");
        assert_eq!(host_for("::1".parse().unwrap()), "[::1]");
        assert!(!host_for("0.0.0.0".parse().unwrap()).is_empty());
    }
}
