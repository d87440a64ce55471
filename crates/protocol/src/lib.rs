//! Vigil's wire protocol: every byte that crosses the Filter Manager communication port, with
//! its validation. Runs in the kernel at any IRQL (no allocation, no panics, no unsafe code)
//! and in user mode; the driver and the service both depend on it, and nothing else defines a
//! message layout, the port name, a limit or the protocol version.
//!
//! # Shape
//!
//! Modelled on smoltcp's `wire` module. Each message has
//! * a **checked view** over `&[u8]` (`new_checked`) for variable-length messages, or a small
//!   `Copy` struct (`parse`) for fixed-size ones: one check up front, every length computed by
//!   subtraction against the buffer (rule 10), after which no accessor can fail or panic;
//! * a **parsed representation** (`EventRepr`, `VerdictRequestRepr`, `Config`, and the fixed-size
//!   structs themselves), which `emit`s into a caller's `&mut [u8]`: the length written is
//!   returned, every byte of the message is set (reserved fields and padding to zero, rule 11),
//!   bytes after it are untouched, and a short buffer gives [`Error::BufferTooSmall`].
//!
//! [`Message::parse`] dispatches on the kind. Decoders are strict: a reserved byte that is not
//! zero, a string that is not where the layout puts it, a length that does not match, are all
//! refused with their own [`Error`] variant, so that whatever decodes re-encodes to the same
//! bytes (the fuzz targets check exactly that). The one exception is the minor version, which
//! every encoder sets to [`VERSION_MINOR`].
//!
//! In the kernel, a buffer from user mode is copied under SEH into kernel memory first and
//! decoded from the copy (rule 8); the protocol never sees a user address.
//!
//! # Conventions
//!
//! * The port carries only these messages: Filter Manager adds its own `FILTER_MESSAGE_HEADER`
//!   / `FILTER_REPLY_HEADER` on the user-mode side, in front of them, and they are not part of
//!   this protocol.
//! * Little-endian; integers at their natural alignment relative to the message start; every
//!   message and every event record a multiple of 8 bytes long. Decoders read bytes, so they
//!   accept any buffer alignment.
//! * No pointers (rule 13): strings are `(offset, length)` pairs, relative to the record for
//!   event records (so a record is copied into a batch unchanged) and to the message otherwise;
//!   lengths are in bytes.
//! * Strings are UTF-16LE, not terminated, not required to be valid UTF-16 (Windows names need
//!   not be). They follow the fixed part back to back in field order, then zero padding to 8.
//! * Reserved fields and padding are zero when written and refused when not zero when read.
//! * Enumerations never use zero, so a zeroed buffer is never a valid message body.
//! * Versions: a different [`VERSION_MAJOR`] is refused ([`Error::UnsupportedVersion`]); any
//!   minor of the same major is accepted. Version 2 (process identity) changed the event
//!   record, so a version-1 driver or service is refused at its first message. The first 8 bytes (magic, major, minor) are the same in
//!   every major version ([`Header::peek_version`]).
//!
//! # Message kinds
//!
//! | kind | value | direction | length | reply |
//! |---|---|---|---|---|
//! | [`EventBatch`] | `0x0001` | driver → service | 32 + records | none (`FltSendMessage` without reply) |
//! | [`VerdictRequest`] | `0x0002` | driver → service | 64 + strings | [`VerdictReply`] |
//! | [`VerdictReply`] | `0x0003` | service → driver | 40 | — |
//! | [`ProcessRecord`] | `0x0004` | driver → service | 88 + image + SID | none |
//! | [`Hello`] | `0x0010` | service → driver | 32 | [`HelloReply`] (40) |
//! | [`GetStats`] | `0x0012` | service → driver | 24 | [`StatsReply`] (176) |
//! | [`SetConfig`] | `0x0014` | service → driver | 48 + 8 × prefixes + strings | [`SetConfigReply`] (32) |
//! | [`Ping`] | `0x0016` | service → driver | 32 | [`Pong`] (32) |
//!
//! Reply kinds are the request's value plus one (`0x0011`, `0x0013`, `0x0015`, `0x0017`); every
//! other value is [`Error::UnknownKind`].
//!
//! # Common header (24 bytes, every message)
//!
//! | offset | size | field | notes |
//! |---|---|---|---|
//! | 0 | 4 | magic | [`MAGIC`], the bytes `"VGIL"` |
//! | 4 | 2 | version major | [`VERSION_MAJOR`] |
//! | 6 | 2 | version minor | [`VERSION_MINOR`] |
//! | 8 | 2 | kind | [`MessageKind`] |
//! | 10 | 2 | reserved | zero |
//! | 12 | 4 | total length | whole message in bytes, header included; 24 ..= [`MAX_MESSAGE_SIZE`] |
//! | 16 | 8 | sequence | event batch: its first record's sequence number; every other kind: zero |
//!
//! # Event batch (`0x0001`)
//!
//! | offset | size | field | notes |
//! |---|---|---|---|
//! | 0 | 24 | header | sequence = first record's sequence number |
//! | 24 | 4 | record count | 1 ..= [`MAX_BATCH_RECORDS`]; exactly the records that follow |
//! | 28 | 4 | reserved | zero |
//! | 32 | … | records | event records back to back, each a multiple of 8 bytes, filling the message |
//!
//! # Event record (104 bytes + strings, 8-byte aligned)
//!
//! | offset | size | field | notes |
//! |---|---|---|---|
//! | 0 | 4 | record length | 104 + path + target, rounded up to 8 |
//! | 4 | 2 | kind | [`EventKind`] |
//! | 6 | 2 | reserved | zero |
//! | 8 | 4 | flags | [`EventFlags`]; unknown bits carried through |
//! | 12 | 4 | status | NTSTATUS (`i32`) |
//! | 16 | 8 | sequence | per record, in ring push order |
//! | 24 | 8 | timestamp | 100 ns units since 1601-01-01 UTC |
//! | 32 | 8 | process id | |
//! | 40 | 8 | thread id | |
//! | 48 | 4 | volume id | volume serial number |
//! | 52 | 4 | desired access | create only, else 0 |
//! | 56 | 4 | create disposition | create only, else 0 |
//! | 60 | 4 | information | `IoStatus.Information` of the create, else 0 |
//! | 64 | 16 | file id | `FILE_ID_128`; a 64-bit id zero-extended when flag `FILE_ID_64`; zero when unknown |
//! | 80 | 8 | process key | the requestor's [`ProcessRecord`] key; zero when unknown |
//! | 88 | 4 | path offset | from the record start; always 104 |
//! | 92 | 4 | path length | bytes, even, ≤ [`MAX_PATH_BYTES`] |
//! | 96 | 4 | target offset | from the record start; always 104 + path length |
//! | 100 | 4 | target length | bytes, even, ≤ [`MAX_PATH_BYTES`]; 0 unless rename or hard link |
//! | 104 | … | path, target, padding | UTF-16LE, then zeros to a multiple of 8 |
//!
//! # Process record (`0x0004`, 88 bytes + image + SID)
//!
//! Sent when a process starts, when it exits, and when the driver first sees a process that
//! was running before it loaded. Events carry only the key; this record gives the rest once.
//! Ordering contract: the driver sends a process's record before any batch holding an event
//! with its key, and sends `Seen` again to a newly connected service for each live process it
//! knows (a restarted service starts with an empty table). A service that meets a key it has
//! no record for still reports the event, with the pid alone.
//!
//! | offset | size | field | notes |
//! |---|---|---|---|
//! | 0 | 24 | header | sequence zero |
//! | 24 | 8 | process key | never reused while the machine runs (the process start key) |
//! | 32 | 8 | process id | |
//! | 40 | 8 | parent process id | |
//! | 48 | 8 | timestamp | 100 ns units since 1601-01-01 UTC: creation, exit or first sight |
//! | 56 | 2 | event | [`ProcessEvent`]: 1 start, 2 exit, 3 seen (running before the load) |
//! | 58 | 2 | reserved | zero |
//! | 60 | 4 | session id | |
//! | 64 | 4 | exit status | NTSTATUS of an exit, else 0 |
//! | 68 | 4 | flags | [`ProcessFlags`]; bit 0 image truncated; unknown bits carried through |
//! | 72 | 4 | image offset | from the message start; always 88 |
//! | 76 | 4 | image length | bytes, even, ≤ [`MAX_PATH_BYTES`]; NT path of the image, UTF-16LE |
//! | 80 | 4 | SID offset | always 88 + image length |
//! | 84 | 4 | SID length | 0 (no SID) or 8 + 4 × sub-authorities ≤ [`MAX_SID_BYTES`] |
//! | 88 | … | image, SID, padding | the SID in its binary Windows form ([`Sid`]), then zeros to a multiple of 8 |
//!
//! A SID is refused ([`Error::BadSid`]) unless its revision is 1, it has at most 15
//! sub-authorities and its length matches their count.
//!
//! # Verdict request (`0x0002`, 64 bytes + strings)
//!
//! | offset | size | field | notes |
//! |---|---|---|---|
//! | 0 | 24 | header | |
//! | 24 | 8 | request id | echoed by the reply |
//! | 32 | 2 | operation | [`VerdictOperation`] |
//! | 34 | 2 | reserved | zero |
//! | 36 | 4 | flags | [`EventFlags`] |
//! | 40 | 8 | process id | |
//! | 48 | 4 | path offset | from the message start; always 64 |
//! | 52 | 4 | path length | bytes, even, ≤ [`MAX_PATH_BYTES`] |
//! | 56 | 4 | target offset | always 64 + path length |
//! | 60 | 4 | target length | bytes, even, ≤ [`MAX_PATH_BYTES`]; 0 unless rename or link |
//! | 64 | … | path, target, padding | UTF-16LE, then zeros to a multiple of 8 |
//!
//! # Verdict reply (`0x0003`, 40 bytes)
//!
//! | offset | size | field | notes |
//! |---|---|---|---|
//! | 0 | 24 | header | |
//! | 24 | 8 | request id | the request's |
//! | 32 | 4 | verdict | [`Verdict`]: 1 allow, 2 deny; anything else is refused |
//! | 36 | 4 | reason | the policy's reason code |
//!
//! # Hello (`0x0010`, 32 bytes) and hello reply (`0x0011`, 40 bytes)
//!
//! Each side's protocol version is the one in its message's header.
//!
//! | offset | size | hello | hello reply |
//! |---|---|---|---|
//! | 0 | 24 | header | header |
//! | 24 | 4 | client process id (low half) | status (NTSTATUS) |
//! | 28 | 4 | client process id (high half) | max message size |
//! | 32 | 4 | — | ring capacity in bytes |
//! | 36 | 4 | — | reserved, zero |
//!
//! # Get statistics (`0x0012`, 24 bytes) and statistics reply (`0x0013`, 176 bytes)
//!
//! Get statistics is the header alone. The reply is the header and 19 `u64` counters, at
//! offsets 24, 32, …, 168, in the order of the fields of [`Stats`]: events generated, delivered,
//! dropped (ring full, too large, no memory, send timeout, disconnected), batches sent, verdicts
//! allowed, denied, defaulted open, defaulted closed, verdict timeouts, connections,
//! disconnects, allocation failures, name query failures, process table overflows, process records dropped.
//!
//! # Set configuration (`0x0014`, 48 bytes + prefix table + strings)
//!
//! | offset | size | field | notes |
//! |---|---|---|---|
//! | 0 | 24 | header | |
//! | 24 | 4 | batch size | records per batch, [`BATCH_SIZE_RANGE`] |
//! | 28 | 4 | verdict timeout | ms, [`VERDICT_TIMEOUT_MS_RANGE`] |
//! | 32 | 4 | send timeout | ms, [`SEND_TIMEOUT_MS_RANGE`] |
//! | 36 | 4 | default verdict | [`Verdict`] |
//! | 40 | 4 | flags | bit 0: attach network volumes; other bits refused |
//! | 44 | 4 | prefix count | 0 ..= [`MAX_PROTECTED_PREFIXES`] |
//! | 48 | 8 × count | prefix table | per prefix: offset `u32` (from the message start), length `u32` (bytes, even, ≤ [`MAX_PREFIX_BYTES`]) |
//! | 48 + 8 × count | … | prefixes, padding | UTF-16LE back to back, then zeros to a multiple of 8 |
//!
//! Ranges are checked by [`Config::validate`], not by the decoder.
//!
//! # Set configuration reply (`0x0015`, 32 bytes), ping (`0x0016`) and pong (`0x0017`), 32 bytes each
//!
//! | offset | size | set configuration reply | ping / pong |
//! |---|---|---|---|
//! | 0 | 24 | header | header |
//! | 24 | 4 | status (NTSTATUS) | nonce (low half) |
//! | 28 | 4 | reserved, zero | nonce (high half) |
//!
//! # Left out on purpose
//!
//! Acknowledgements of batches (Filter Manager's send completes when the service has taken the
//! message), per-message checksums (the port is a local kernel copy), and compression.

#![no_std]
#![forbid(unsafe_code)]

mod batch;
mod bytes;
mod command;
mod config;
mod consts;
mod error;
mod event;
mod header;
mod message;
mod paths;
mod process;
mod sid;
mod utf16;
mod verdict;

pub use batch::{
    BATCH_HEADER_LEN, BatchWriter, EventBatch, MAX_BATCH_RECORDS, MAX_BATCH_RECORDS_LEN, Records,
};
pub use command::{GetStats, Hello, HelloReply, Ping, Pong, SetConfigReply, Stats, StatsReply};
pub use config::{
    CONFIG_ATTACH_NETWORK_VOLUMES, CONFIG_FLAGS_DEFINED, Config, PrefixList, SET_CONFIG_FIXED_LEN,
    SetConfig,
};
pub use consts::*;
pub use error::{ConfigField, Error, Result};
pub use event::{EVENT_FIXED_LEN, EventFlags, EventKind, EventRecord, EventRepr, MAX_EVENT_LEN};
pub use header::{HEADER_LEN, Header, MessageKind, Version, is_compatible};
pub use message::Message;
pub use process::{
    MAX_PROCESS_RECORD_LEN, PROCESS_RECORD_FIXED_LEN, ProcessEvent, ProcessFlags, ProcessRecord,
    ProcessRepr,
};
pub use sid::{MAX_SID_BYTES, MAX_SID_SUB_AUTHORITIES, SID_REVISION, Sid};
pub use utf16::{Units, Utf16Str};
pub use verdict::{
    VERDICT_REQUEST_FIXED_LEN, Verdict, VerdictOperation, VerdictReply, VerdictRequest,
    VerdictRequestRepr,
};

// The layout promises of the crate documentation, checked at compile time.
const _: () = {
    assert!(HEADER_LEN.is_multiple_of(8));
    assert!(BATCH_HEADER_LEN.is_multiple_of(8));
    assert!(EVENT_FIXED_LEN.is_multiple_of(8));
    assert!(VERDICT_REQUEST_FIXED_LEN.is_multiple_of(8));
    assert!(PROCESS_RECORD_FIXED_LEN.is_multiple_of(8));
    // Every process record fits in one message.
    assert!(MAX_PROCESS_RECORD_LEN <= MAX_MESSAGE_SIZE);
    assert!(SET_CONFIG_FIXED_LEN.is_multiple_of(8));
    assert!(VerdictReply::LEN == 40);
    assert!(Hello::LEN == 32 && HelloReply::LEN == 40);
    assert!(GetStats::LEN == 24 && StatsReply::LEN == 176);
    assert!(SetConfigReply::LEN == 32 && Ping::LEN == 32 && Pong::LEN == 32);
    // Every record the encoder can produce fits in a batch with room to spare.
    assert!(MAX_EVENT_LEN <= MAX_BATCH_RECORDS_LEN);
    // Every verdict request fits in one message.
    assert!(VerdictRequestRepr::encoded_len_for(usize::MAX, usize::MAX) <= MAX_MESSAGE_SIZE);
    // A full set-configuration fits in one message.
    assert!(
        SET_CONFIG_FIXED_LEN + MAX_PROTECTED_PREFIXES * (8 + MAX_PREFIX_BYTES) <= MAX_MESSAGE_SIZE
    );
    // Lengths fit their u32 fields.
    assert!(MAX_MESSAGE_SIZE <= u32::MAX as usize);
};
