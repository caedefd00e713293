//! Account store: sled on disk, passwords only as argon2id PHC strings.
//!
//! Every method here blocks (argon2 takes tens of milliseconds, `flush` hits the disk), so the
//! event loop calls them only from the worker pool (see [`crate::storage::workers`]).

use std::fmt;
use std::path::{Path, PathBuf};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{self, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::cell::RefCell;

/// Name of the sled tree holding the accounts.
const TREE: &str = "accounts";
/// Page cache for sled: accounts are small and looked up rarely.
const CACHE_BYTES: u64 = 1 << 20;
/// Version tag at the start of every stored record.
const RECORD_VERSION: &str = "v1";

pub use huddle_protocol::account::{MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES};

/// Why the account database could not be opened or written.
#[derive(Debug)]
pub enum StoreError {
    /// Another process holds the database lock.
    Locked(PathBuf),
    /// sled found the files damaged or unusable.
    Corrupt(String),
    /// Any other I/O failure.
    Io(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Locked(dir) => write!(
                f,
                "another huddle-server is using {} (database is locked)",
                dir.display()
            ),
            StoreError::Corrupt(msg) => write!(f, "account database is corrupt: {msg}"),
            StoreError::Io(msg) => write!(f, "account database I/O error: {msg}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Why a registration was refused. The string is text for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    BadName(String),
    WeakPassword(String),
    Exists,
    Unavailable(String),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::BadName(msg)
            | RegisterError::WeakPassword(msg)
            | RegisterError::Unavailable(msg) => f.write_str(msg),
            RegisterError::Exists => f.write_str("Account already exists"),
        }
    }
}

impl std::error::Error for RegisterError {}

/// Why a login failed. Unknown account and wrong password are both `Invalid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    Invalid,
    Unavailable(String),
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::Invalid => f.write_str("Invalid account name or password"),
            LoginError::Unavailable(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for LoginError {}

/// Checks an account name against [`huddle_protocol::account::is_valid_name`].
pub fn validate_name(name: &str) -> Result<(), RegisterError> {
    if !huddle_protocol::account::is_valid_name(name) {
        return Err(RegisterError::BadName(
            huddle_protocol::account::NAME_RULE.to_string(),
        ));
    }
    Ok(())
}

/// Checks a password's length: 8-256 bytes.
pub fn validate_password(pw: &str) -> Result<(), RegisterError> {
    if pw.len() < MIN_PASSWORD_BYTES {
        return Err(RegisterError::WeakPassword(format!(
            "Password must be at least {MIN_PASSWORD_BYTES} bytes long"
        )));
    }
    if pw.len() > MAX_PASSWORD_BYTES {
        return Err(RegisterError::WeakPassword(format!(
            "Password must be at most {MAX_PASSWORD_BYTES} bytes long"
        )));
    }
    Ok(())
}

/// Accounts keyed by lowercase name. `Send + Sync`: share it with `Arc`.
pub struct AccountStore {
    db: sled::Db,
    tree: sled::Tree,
    /// Hash checked for unknown accounts so they cost as much as a wrong password.
    dummy_phc: String,
}

impl fmt::Debug for AccountStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountStore").finish_non_exhaustive()
    }
}

impl AccountStore {
    /// Opens (creating if needed) the sled database in `dir`.
    pub fn open(dir: &Path) -> Result<AccountStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| open_error(dir, e))?;
        let tree = db.open_tree(TREE).map_err(|e| open_error(dir, e))?;
        let dummy_phc = hash_password("huddle dummy password, never matches")
            .map_err(|e| StoreError::Io(format!("cannot prepare password hashing: {e}")));
        // This ran on the caller's thread (the event loop's, at start-up): keep no memory.
        release_hash_memory();
        let dummy_phc = dummy_phc?;
        Ok(AccountStore {
            db,
            tree,
            dummy_phc,
        })
    }

    /// Creates an account; returns only after the record is flushed to disk.
    pub fn register(&self, name: &str, password: &str) -> Result<String, RegisterError> {
        validate_name(name)?;
        validate_password(password)?;
        let key = name.to_ascii_lowercase();
        // Cheap early answer; the compare-and-swap below is what actually decides.
        if self.tree.contains_key(&key).map_err(unavailable)? {
            return Err(RegisterError::Exists);
        }
        let phc = hash_password(password).map_err(|e| {
            log::error!("argon2 hashing failed: {e}");
            RegisterError::Unavailable("Password hashing failed".into())
        })?;
        let record = encode_record(name, &phc);
        match self
            .tree
            .compare_and_swap(&key, None as Option<&[u8]>, Some(record.into_bytes()))
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(RegisterError::Exists),
            Err(e) => return Err(unavailable(e)),
        }
        let flushed = if crate::storage::faults::get().storage_fails_on(name) {
            Err(sled::Error::Io(std::io::Error::other(
                "injected storage fault",
            )))
        } else {
            self.db.flush().map(|_| ())
        };
        if let Err(e) = flushed {
            log::error!("flushing new account {name:?} failed: {e}");
            // Best effort: don't leave an account that was never acknowledged.
            let _ = self.tree.remove(&key);
            return Err(RegisterError::Unavailable(
                "Account database unavailable, try again later".into(),
            ));
        }
        Ok(name.to_string())
    }

    /// Checks a password; returns the account's display name as registered.
    pub fn verify(&self, name: &str, password: &str) -> Result<String, LoginError> {
        let found = if validate_name(name).is_ok() {
            self.tree.get(name.to_ascii_lowercase()).map_err(|e| {
                log::error!("account lookup failed: {e}");
                LoginError::Unavailable("Account database unavailable".into())
            })?
        } else {
            None
        };
        let Some(raw) = found else {
            // Same work as a wrong password, same answer.
            let _ = check_password(&self.dummy_phc, password);
            return Err(LoginError::Invalid);
        };
        let Some((display, phc)) = decode_record(&raw) else {
            log::error!("account record for {name:?} is unreadable");
            return Err(LoginError::Unavailable("Account record is damaged".into()));
        };
        match check_password(phc, password) {
            Ok(true) => Ok(display.to_string()),
            Ok(false) => Err(LoginError::Invalid),
            Err(e) => {
                log::error!("stored hash for {name:?} is unusable: {e}");
                Err(LoginError::Unavailable("Account record is damaged".into()))
            }
        }
    }

    /// Checks a server operator's password against `phc` (from the operator file); without
    /// one, against the dummy hash, so an unknown operator name costs the same.
    pub fn check_oper(&self, phc: Option<&str>, password: &str) -> bool {
        match phc {
            Some(phc) => check_password(phc, password).unwrap_or_else(|e| {
                log::error!("an operator's password hash is unusable: {e}");
                false
            }),
            None => {
                let _ = check_password(&self.dummy_phc, password);
                false
            }
        }
    }

    /// Every account name (lowercase), read in one pass at start-up.
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        self.tree
            .iter()
            .keys()
            .map(|k| {
                let k = k.map_err(|e| StoreError::Io(e.to_string()))?;
                Ok(String::from_utf8_lossy(&k).into_owned())
            })
            .collect()
    }

    /// Another tree in the same database (room history lives beside the accounts).
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        self.db
            .open_tree(name)
            .map_err(|e| StoreError::Io(e.to_string()))
    }

    /// The database itself (registered rooms are saved in it, see `storage::rooms`).
    pub fn database(&self) -> &sled::Db {
        &self.db
    }

    /// Writes everything pending to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| StoreError::Io(e.to_string()))
    }

    /// Number of accounts (walks the tree).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// True when no account exists.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

fn open_error(dir: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock") =>
        {
            StoreError::Locked(dir.to_path_buf())
        }
        sled::Error::Io(io) => StoreError::Io(format!("{}: {io}", dir.display())),
        sled::Error::Corruption { .. } => {
            StoreError::Corrupt(format!("{}: corrupted data found", dir.display()))
        }
        other => StoreError::Corrupt(format!("{}: {other}", dir.display())),
    }
}

fn unavailable(e: sled::Error) -> RegisterError {
    log::error!("account database error: {e}");
    RegisterError::Unavailable("Account database unavailable, try again later".into())
}

thread_local! {
    /// argon2's working memory (19 MiB with the default parameters), kept by a worker thread
    /// across a burst of hashing instead of mapped afresh, page by page, for every hash; freed
    /// by [`release_hash_memory`] when the worker runs out of jobs.
    static HASH_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Frees this thread's argon2 working memory (see `HASH_MEMORY`).
pub fn release_hash_memory() {
    HASH_MEMORY.with(|m| *m.borrow_mut() = Vec::new());
}

/// The argon2 output for `password` and `salt` under `argon2`'s parameters, `len` bytes.
fn argon2_output(
    argon2: &Argon2,
    password: &[u8],
    salt: Salt<'_>,
    len: usize,
) -> password_hash::Result<Output> {
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf)?;
    let blocks = argon2.params().block_count();
    HASH_MEMORY.with(|m| {
        let mut memory = m.borrow_mut();
        if memory.len() < blocks {
            *memory = vec![Block::default(); blocks];
        }
        Output::init_with(len, |out| {
            argon2
                .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
                .map_err(password_hash::Error::from)
        })
    })
}

/// A PHC string (`$argon2id$v=19$m=...`) for `password` with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let argon2 = Argon2::default();
    let len = argon2
        .params()
        .output_len()
        .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = argon2_output(&argon2, password.as_bytes(), salt.as_salt(), len)?;
    let phc = PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(argon2.params())?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// `Ok(false)` for a wrong password, `Err` when the stored hash itself is unusable. Uses the
/// algorithm, version and parameters the hash was made with.
pub fn check_password(phc: &str, password: &str) -> Result<bool, password_hash::Error> {
    let parsed = PasswordHash::new(phc)?;
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(&parsed)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(password_hash::Error::PhcStringField);
    };
    let argon2 = Argon2::new(algorithm, version, params);
    let output = argon2_output(&argon2, password.as_bytes(), salt, expected.len())?;
    // `Output` compares in constant time.
    Ok(output == expected)
}

/// Record layout: `v1 TAB display-name TAB phc`.
fn encode_record(display: &str, phc: &str) -> String {
    format!("{RECORD_VERSION}\t{display}\t{phc}")
}

fn decode_record(raw: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut parts = text.splitn(3, '\t');
    if parts.next()? != RECORD_VERSION {
        return None;
    }
    let display = parts.next()?;
    let phc = parts.next()?;
    Some((display, phc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    fn store() -> (tempfile::TempDir, AccountStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = AccountStore::open(&dir.path().join("accounts.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<AccountStore>();
    }

    #[test]
    fn register_then_verify() {
        let (_dir, s) = store();
        assert!(s.is_empty());
        assert_eq!(s.register("Alice", "correct horse").unwrap(), "Alice");
        assert_eq!(s.len(), 1);
        assert_eq!(s.verify("Alice", "correct horse").unwrap(), "Alice");
        // Lookup is case-insensitive and returns the registered spelling.
        assert_eq!(s.verify("alice", "correct horse").unwrap(), "Alice");
        assert_eq!(s.verify("Alice", "wrong horse"), Err(LoginError::Invalid));
        assert_eq!(s.verify("bob", "correct horse"), Err(LoginError::Invalid));
        assert_eq!(
            s.verify("bad name!", "correct horse"),
            Err(LoginError::Invalid)
        );
        assert_eq!(s.verify("", ""), Err(LoginError::Invalid));
    }

    #[test]
    fn names_are_unique_case_insensitively() {
        let (_dir, s) = store();
        s.register("Alice", "password1").unwrap();
        assert_eq!(s.register("alice", "password2"), Err(RegisterError::Exists));
        assert_eq!(s.register("ALICE", "password2"), Err(RegisterError::Exists));
        assert_eq!(s.verify("alice", "password1").unwrap(), "Alice");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn password_length_limits() {
        let (_dir, s) = store();
        assert!(matches!(
            s.register("carol", "short"),
            Err(RegisterError::WeakPassword(_))
        ));
        assert!(matches!(
            s.register("carol", &"x".repeat(257)),
            Err(RegisterError::WeakPassword(_))
        ));
        assert!(validate_password(&"x".repeat(8)).is_ok());
        assert!(validate_password(&"x".repeat(256)).is_ok());
        // Bytes, not characters: 4 two-byte characters are 8 bytes.
        assert!(validate_password("éééé").is_ok());
        assert!(validate_password("ééé").is_err());
        assert!(s.is_empty());
    }

    #[test]
    fn name_rules() {
        for good in ["a", "A_b-9", &"z".repeat(32)] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            &"z".repeat(33),
            "has space",
            "dot.ted",
            "é",
            "#room",
            "a\0b",
            "a:b",
        ] {
            assert!(
                matches!(validate_name(bad), Err(RegisterError::BadName(_))),
                "{bad:?}"
            );
        }
        let (_dir, s) = store();
        assert!(matches!(
            s.register("no good", "password1"),
            Err(RegisterError::BadName(_))
        ));
    }

    #[test]
    fn stored_value_is_argon2id_phc_without_password() {
        let (_dir, s) = store();
        let password = "hunter2hunter2";
        s.register("Dave", password).unwrap();
        let raw = s.tree.get("dave").unwrap().unwrap();
        let text = std::str::from_utf8(&raw).unwrap();
        assert!(!text.contains(password));
        let (display, phc) = decode_record(&raw).unwrap();
        assert_eq!(display, "Dave");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(PasswordHash::new(phc).is_ok());
    }

    #[test]
    fn reopen_keeps_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.db");
        {
            let s = AccountStore::open(&path).unwrap();
            s.register("erin", "password1").unwrap();
        }
        let s = AccountStore::open(&path).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.verify("ERIN", "password1").unwrap(), "erin");
    }

    #[test]
    fn second_open_is_locked() {
        let (dir, _s) = store();
        let path = dir.path().join("accounts.db");
        match AccountStore::open(&path) {
            Err(e @ StoreError::Locked(_)) => {
                let msg = e.to_string();
                assert!(msg.contains("another huddle-server is using"), "{msg}");
                assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[test]
    fn racing_registrations_have_one_winner() {
        let (_dir, s) = store();
        let s = Arc::new(s);
        let threads = 6;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let s = Arc::clone(&s);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let name = if i % 2 == 0 { "Frank" } else { "frank" };
                    barrier.wait();
                    s.register(name, &format!("password-{i}"))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "{results:?}");
        assert!(results
            .iter()
            .all(|r| r.is_ok() || *r == Err(RegisterError::Exists)));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn damaged_record_is_unavailable_not_invalid() {
        let (_dir, s) = store();
        s.tree.insert("gina", "garbage").unwrap();
        assert!(matches!(
            s.verify("gina", "password1"),
            Err(LoginError::Unavailable(_))
        ));
    }

    #[test]
    fn dummy_hash_uses_the_real_parameters() {
        let (_dir, s) = store();
        s.register("hal", "password1").unwrap();
        let raw = s.tree.get("hal").unwrap().unwrap();
        let (_, phc) = decode_record(&raw).unwrap();
        let params = |h: &str| h.rsplitn(3, '$').nth(2).unwrap().to_string();
        assert_eq!(params(phc), params(&s.dummy_phc));
        assert!(!check_password(&s.dummy_phc, "password1").unwrap());
    }

    #[test]
    fn record_round_trip() {
        let rec = encode_record("Name", "$argon2id$x");
        assert_eq!(decode_record(rec.as_bytes()), Some(("Name", "$argon2id$x")));
        assert_eq!(decode_record(b"v2\ta\tb"), None);
        assert_eq!(decode_record(b"v1\tonly"), None);
        assert_eq!(decode_record(&[0xff, 0xfe]), None);
    }

    #[test]
    fn hashes_interoperate_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Made the standard way (as accounts stored before this code existed).
        let salt = SaltString::generate(&mut OsRng);
        let standard = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(check_password(&standard, "correct horse").unwrap());
        assert!(!check_password(&standard, "correct horsE").unwrap());
        // Ours, checked the standard way.
        let ours = hash_password("battery staple").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"battery staple", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"battery stapl", &parsed)
            .is_err());
        // Other parameters in a stored hash are honoured.
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"tiny", &salt)
        .unwrap()
        .to_string();
        assert!(check_password(&small, "tiny").unwrap());
        release_hash_memory();
        assert!(!check_password(&small, "tinY").unwrap());
        assert!(check_password("$argon2id$v=19$m=1024,t=1,p=1$bm9zYWx0aGVyZQ", "x").is_err());
    }
}
