//! Every vigil-protocol encoder and decoder behind two exported functions, linked with LTO and a
//! panic handler that calls an undefined symbol: if any path of theirs can panic, the symbol is
//! still referenced in the linked library. Run by `check.sh`.

#![no_std]
use vigil_protocol::*;

unsafe extern "C" {
    fn vigil_panic_reached() -> !;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    unsafe { vigil_panic_reached() }
}

#[unsafe(no_mangle)]
pub extern "Rust" fn scan_decode(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    if let Ok(v) = Header::peek_version(data) {
        acc ^= u64::from(v.minor);
    }
    match Message::parse(data) {
        Ok(Message::EventBatch(b)) => {
            for r in b.records() {
                let x = r.repr();
                acc ^= x.sequence
                    ^ x.path.units().fold(0u64, |a, u| a ^ u64::from(u))
                    ^ x.target.units().count() as u64
                    ^ u64::from(x.flags.bits())
                    ^ x.file_id[3] as u64;
            }
        }
        Ok(Message::VerdictRequest(v)) => {
            let x = v.repr();
            acc ^= x.request_id ^ x.path.units().count() as u64 ^ x.target.units().count() as u64;
        }
        Ok(Message::SetConfig(c)) => {
            let x = c.config();
            acc ^= x.validate().is_ok() as u64;
            for p in x.protected_prefixes.as_slice() {
                acc ^= p.units().count() as u64;
            }
        }
        Ok(Message::StatsReply(s)) => acc ^= s.stats.dropped_total(),
        Ok(Message::ProcessRecord(p)) => {
            let x = p.repr();
            acc ^= x.process_key
                ^ x.image.units().count() as u64
                ^ x.user_sid.map_or(0, |sid| {
                    sid.sub_authorities()
                        .fold(sid.authority(), |a, s| a ^ u64::from(s))
                });
        }
        Ok(m) => acc ^= m.kind().to_u16() as u64,
        Err(_) => acc ^= 1,
    }
    if let Ok(r) = EventRecord::new_checked(data) {
        acc ^= r.repr().timestamp;
    }
    acc
}

#[unsafe(no_mangle)]
pub extern "Rust" fn scan_encode(data: &[u8], out: &mut [u8], path: &[u16]) -> usize {
    let mut n = 0usize;
    if let Ok(m) = Message::parse(data) {
        n = n.wrapping_add(m.emit(out).unwrap_or(0));
    }
    let repr = EventRepr {
        kind: EventKind::Open,
        flags: EventFlags::NONE,
        status: 0,
        sequence: 1,
        timestamp: 2,
        process_id: 3,
        thread_id: 4,
        volume_id: 5,
        desired_access: 6,
        create_disposition: 7,
        information: 8,
        file_id: [0; 16],
        process_key: 0,
        path: Utf16Str::from_units(path),
        target: Utf16Str::from_units(path),
    };
    n = n.wrapping_add(EventRecord::emit(&repr, out).unwrap_or(0));
    n = n.wrapping_add(EventRecord::encoded_len(path.len(), path.len()));
    let _ = EventRecord::set_sequence(out, 9);
    if let Ok(mut w) = BatchWriter::new(out) {
        let _ = w.push(&repr);
        n = n.wrapping_add(w.finish().unwrap_or(0));
    }
    n = n.wrapping_add(EventBatch::emit_header(out, 1, 1, 96).unwrap_or(0));
    let v = VerdictRequestRepr {
        request_id: 1,
        operation: VerdictOperation::Create,
        flags: EventFlags::NONE,
        process_id: 1,
        path: Utf16Str::from_units(path),
        target: Utf16Str::EMPTY,
    };
    n = n.wrapping_add(v.emit(out).unwrap_or(0));
    let prefixes = [Utf16Str::from_units(path)];
    if let Ok(list) = PrefixList::from_slice(&prefixes) {
        let c = Config {
            protected_prefixes: list,
            ..Config::DEFAULT
        };
        n = n.wrapping_add(c.emit(out).unwrap_or(0));
    }
    n = n.wrapping_add(
        VerdictReply {
            request_id: 1,
            verdict: Verdict::Deny,
            reason: 0,
        }
        .emit(out)
        .unwrap_or(0),
    );
    n = n.wrapping_add(
        HelloReply {
            status: 0,
            max_message_size: 1,
            ring_capacity_bytes: 1,
        }
        .emit(out)
        .unwrap_or(0),
    );
    n = n.wrapping_add(StatsReply::default().emit(out).unwrap_or(0));
    let process = ProcessRepr {
        event: ProcessEvent::Start,
        process_key: 1,
        process_id: 2,
        parent_process_id: 3,
        timestamp: 4,
        session_id: 5,
        exit_status: 0,
        flags: ProcessFlags::NONE,
        image: Utf16Str::from_units(path),
        user_sid: Sid::new_checked(data).ok(),
    };
    n = n.wrapping_add(process.emit(out).unwrap_or(0));
    n = n.wrapping_add(Pong { nonce: 1 }.emit(out).unwrap_or(0));
    n = n.wrapping_add(SetConfigReply { status: 0 }.emit(out).unwrap_or(0));
    n
}
