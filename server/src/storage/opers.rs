//! The server operators' file: one operator a line, `name $argon2id$...` (a PHC string
//! made with `huddle-server --hash-password`); blank lines and `#` comments are skipped.
//! Read at start-up and again on SIGHUP or REHASH.

use std::io;
use std::path::Path;

/// Most operators read from the file.
pub const MAX_OPERS: usize = 100;
/// Longest operator name.
const MAX_NAME: usize = 32;

/// Operator name and its password hash.
pub type Oper = (String, String);

/// Reads and checks the operators' file.
pub fn read_opers(path: &Path) -> io::Result<Vec<Oper>> {
    parse(&std::fs::read_to_string(path)?)
}

fn invalid(line: usize, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("line {line}: {why}"))
}

fn parse(text: &str) -> io::Result<Vec<Oper>> {
    let mut opers: Vec<Oper> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, phc) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| invalid(n + 1, "expected `name $argon2id$...`"))?;
        let phc = phc.trim();
        let name_ok = name.len() <= MAX_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(invalid(
                n + 1,
                "an operator name is 1-32 letters, digits, - _ .",
            ));
        }
        let parsed = argon2::password_hash::PasswordHash::new(phc)
            .map_err(|e| invalid(n + 1, &format!("not a password hash: {e}")))?;
        if parsed.algorithm.as_str() != "argon2id" {
            return Err(invalid(n + 1, "the hash must be argon2id"));
        }
        if opers.iter().any(|(o, _)| o.eq_ignore_ascii_case(name)) {
            return Err(invalid(n + 1, &format!("operator {name} is listed twice")));
        }
        if opers.len() >= MAX_OPERS {
            return Err(invalid(n + 1, "too many operators"));
        }
        opers.push((name.to_string(), phc.to_string()));
    }
    Ok(opers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_operators_and_refuses_bad_lines() {
        let phc = crate::storage::accounts::hash_password("pw").unwrap();
        let text = format!("# operators\n\nroot {phc}\n");
        assert_eq!(
            parse(&text).unwrap(),
            vec![("root".to_string(), phc.clone())]
        );
        assert!(parse("root").is_err());
        assert!(parse("root plaintext").is_err());
        assert!(parse(&format!("ro ot {phc}")).is_err());
        assert!(parse(&format!("root {phc}\nROOT {phc}")).is_err());
    }
}
