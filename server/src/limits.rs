//! Fixed bounds that are not worth a flag.

/// Longest SASL payload (base64) accepted across all `AUTHENTICATE` chunks.
pub const MAX_SASL_PAYLOAD: usize = 4096;
/// Rooms one user may be in at once.
pub const MAX_ROOMS_PER_USER: usize = 50;
/// Longest room name, `#` included.
pub const MAX_ROOM_NAME: usize = 50;
/// Targets in one `JOIN a,b,c` or `PRIVMSG a,b`.
pub const MAX_TARGETS: usize = 10;
/// Ciphertext a connection may hold before we stop encrypting more (our queue holds the rest).
/// One write per 64 KiB (a loopback segment) rather than per 16 KiB: at fan-out rates the
/// kernel's per-send cost dominated (0.33 -> 0.27 us of server CPU per delivery).
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;
/// Bytes read from a socket per read call.
pub const READ_CHUNK: usize = 16 * 1024;
/// The worker queue holds at least this many jobs; beyond that it has room for two per
/// connection (a login and a registration), so a burst of logins is queued, not refused.
pub const MIN_JOB_QUEUE: usize = 128;
/// Connections the event loop accepts from one listener per pass. Each costs an accept, a
/// registration and a fresh TLS session (some microseconds); with a thousand connections
/// pending, taking all of them in one pass holds up chat for every client. The rest are
/// taken in the next pass, which comes at once.
pub const ACCEPTS_PER_PASS: usize = 16;
/// Extra connection slots beyond --max-clients, used only to tell late comers the server is full.
pub const REJECT_SLOTS: usize = 8;
/// How long a closing connection may take to deliver its last lines.
pub const CLOSE_LINGER_SECS: u64 = 2;
/// Longest room topic, in characters.
pub const MAX_TOPIC_LEN: usize = 390;
/// Longest away message, in characters.
pub const MAX_AWAY_LEN: usize = 200;
/// History lines replayed to a user joining a room.
pub const JOIN_REPLAY: usize = 50;
/// Most messages one CHATHISTORY request returns.
pub const CHATHISTORY_MAX: usize = 100;
/// TLS handshakes the event loop advances per pass, at the end of the pass once its chat is
/// sent. A handshake's first flight costs the loop a key exchange and a signature (a fraction
/// of a millisecond); a storm of hundreds of connections would otherwise hold up chat for
/// every client in the same pass. The rest wait for the next pass, which comes at once.
pub const HANDSHAKES_PER_PASS: usize = 1;
/// Size from which a connection's buffers (plaintext queue, ciphertext, line buffer) are kept
/// between loop passes: a client in a burst refills them every pass. Smaller ones are freed
/// once empty, so idle connections hold none.
pub const KEEP_WHILE_BUSY: usize = 16 * 1024;
/// Output queued during a loop pass before it is encrypted and written, without waiting for
/// the end of the pass. A busy pass (20 senders fanning out to 20 rooms mates) could queue
/// megabytes, copied into each queue, then encrypted, then copied by the kernel, each time
/// from memory rather than cache; flushing in steps of this size keeps it in cache. (256 KiB
/// made writes too small; 4 MiB fell out of cache: both measured slower.)
pub const FLUSH_AFTER_BYTES: usize = 512 * 1024;
/// Departures `WHOWAS` remembers (the oldest falls out).
pub const WHOWAS_ENTRIES: usize = 1000;
/// Entries one `WHOWAS` reply lists at most.
pub const WHOWAS_REPLY_MAX: usize = 20;
/// Nicks one client may watch with `MONITOR` (the `MONITOR` ISUPPORT token).
pub const MONITOR_LIMIT: usize = 100;
/// Longest real name (`USER`, `SETNAME`), in characters.
pub const MAX_REALNAME_LEN: usize = 64;
