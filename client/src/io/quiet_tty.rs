//! The terminal between line reads: no echo and no line buffering, so keys typed while a
//! command waits for the server stay unseen in the terminal's input queue (instead of being
//! echoed into the middle of the output) until the line editor reads them with the prompt
//! that is right by then. Ctrl-C still interrupts. Bracketed paste stays on (the editor
//! turns it off after each line), so a paste made during a wait still arrives as one paste.
//! The original settings come back when the program ends.

use std::io::Write;
use std::os::fd::AsRawFd;

const BRACKETED_PASTE_ON: &[u8] = b"\x1b[?2004h";
const BRACKETED_PASTE_OFF: &[u8] = b"\x1b[?2004l";

/// Asks the terminal to mark pastes again, after the line editor turned that off.
pub(super) fn keep_bracketed_paste() {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(BRACKETED_PASTE_ON).and_then(|()| out.flush());
}

/// The terminal's settings from before; restored on drop.
pub(super) struct QuietTty {
    fd: i32,
    original: libc::termios,
}

impl QuietTty {
    /// Turns echo and canonical mode off on stdin; `None` if it is not a terminal.
    pub(super) fn engage() -> Option<QuietTty> {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: termios is plain data; tcgetattr fills it for our own stdin.
        let mut original: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut original) } != 0 {
            return None;
        }
        let mut quiet = original;
        quiet.c_lflag &= !(libc::ECHO | libc::ICANON);
        quiet.c_cc[libc::VMIN] = 1;
        quiet.c_cc[libc::VTIME] = 0;
        // SAFETY: sets our own stdin's attributes from a copy of its own.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return None;
        }
        Some(QuietTty { fd, original })
    }
}

impl Drop for QuietTty {
    fn drop(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = out
            .write_all(BRACKETED_PASTE_OFF)
            .and_then(|()| out.flush());
        // SAFETY: restores the attributes read from this descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.original) };
    }
}
