//! Fault injection for the end-to-end tests of failure handling. Only debug builds read it;
//! release builds compile it to "no faults".
//!
//! `HUDDLE_FAULTS` holds comma-separated faults:
//! - `panic-on-account=NAME`: a worker panics while handling a job for account NAME.
//! - `storage-fail-on-account=NAME`: storing or flushing account NAME fails as if the disk did.

use std::sync::OnceLock;

#[derive(Debug, Default)]
pub struct Faults {
    panic_on_account: Option<String>,
    storage_fail_on_account: Option<String>,
}

fn parse(spec: &str) -> Faults {
    let mut f = Faults::default();
    for item in spec.split(',') {
        match item.split_once('=') {
            Some(("panic-on-account", name)) => {
                f.panic_on_account = Some(name.to_ascii_lowercase())
            }
            Some(("storage-fail-on-account", name)) => {
                f.storage_fail_on_account = Some(name.to_ascii_lowercase())
            }
            _ if item.is_empty() => {}
            _ => log::warn!("unknown HUDDLE_FAULTS entry {item:?}"),
        }
    }
    f
}

pub fn get() -> &'static Faults {
    static FAULTS: OnceLock<Faults> = OnceLock::new();
    FAULTS.get_or_init(|| {
        if cfg!(debug_assertions) {
            match std::env::var("HUDDLE_FAULTS") {
                Ok(spec) => {
                    log::warn!("fault injection active: {spec}");
                    parse(&spec)
                }
                Err(_) => Faults::default(),
            }
        } else {
            Faults::default()
        }
    })
}

impl Faults {
    pub fn panics_on(&self, account: &str) -> bool {
        self.panic_on_account.as_deref() == Some(&account.to_ascii_lowercase())
    }

    pub fn storage_fails_on(&self, account: &str) -> bool {
        self.storage_fail_on_account.as_deref() == Some(&account.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let f = parse("panic-on-account=Bob,storage-fail-on-account=x,bogus");
        assert!(f.panics_on("bob"));
        assert!(!f.panics_on("alice"));
        assert!(f.storage_fails_on("X"));
        assert!(!Faults::default().panics_on("bob"));
    }
}
