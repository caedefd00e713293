//! Message ids: unique across restarts (the start time in ms, then a counter).

use std::time::SystemTime;

#[derive(Debug)]
pub struct MsgIds {
    prefix: String,
    counter: u64,
}

impl MsgIds {
    pub fn new() -> MsgIds {
        let start = crate::clock::unix_millis(SystemTime::now());
        MsgIds {
            prefix: format!("{start:x}"),
            counter: 0,
        }
    }

    /// The next id: `<start>-<counter>`, both in lowercase hex.
    pub fn next(&mut self) -> String {
        self.counter += 1;
        // By hand rather than `format!`: this runs for every message.
        let mut id = String::with_capacity(self.prefix.len() + 17);
        id.push_str(&self.prefix);
        id.push('-');
        let hex = self.counter;
        let digits = (64 - hex.leading_zeros()).div_ceil(4).max(1);
        for shift in (0..digits).rev() {
            let nibble = (hex >> (shift * 4)) & 0xf;
            id.push(char::from_digit(nibble as u32, 16).unwrap_or('0'));
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_prefix_dash_hex_counter() {
        let mut ids = MsgIds::new();
        let prefix = ids.prefix.clone();
        ids.counter = 0xfe;
        assert_eq!(ids.next(), format!("{prefix}-ff"));
        assert_eq!(ids.next(), format!("{prefix}-100"));
        ids.counter = u64::MAX - 1;
        assert_eq!(ids.next(), format!("{prefix}-{:x}", u64::MAX));
    }
}
