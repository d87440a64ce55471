//! The service's commands to the driver, each one `send_command` round trip through any
//! [`PortClient`]: the version handshake, statistics, set-configuration, ping. User mode,
//! portable; used by the core at every connection and by `vigil status` / `vigil stats`.

use vigil_protocol::{
    Config, GetStats, HEADER_LEN, Header, Hello, HelloReply, MAX_MESSAGE_SIZE, Ping, Pong,
    SetConfigReply, Stats, StatsReply, Version,
};

use crate::client::{ClientError, PortClient};

/// `STATUS_REVISION_MISMATCH`: the driver's answer to a Hello of another major version.
pub const STATUS_REVISION_MISMATCH: i32 = 0xC000_0059_u32.cast_signed();

/// What the driver said in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverHello {
    /// The driver's protocol version (same major as this service's, or the handshake failed).
    pub version: Version,
    /// Largest message it sends.
    pub max_message_size: u32,
    /// Its event ring's capacity, in bytes.
    pub ring_capacity_bytes: u32,
}

/// The protocol name of a command (`hello`, `get-statistics`, `set-configuration`, `ping`), for
/// [`ClientError::CommandRefused`]: what every port client reports when the driver refuses one.
pub fn command_name(command: &[u8]) -> &'static str {
    match Header::parse(command).map(|h| h.kind) {
        Ok(vigil_protocol::MessageKind::Hello) => "hello",
        Ok(vigil_protocol::MessageKind::GetStats) => "get-statistics",
        Ok(vigil_protocol::MessageKind::SetConfig) => "set-configuration",
        Ok(vigil_protocol::MessageKind::Ping) => "ping",
        _ => "command",
    }
}

fn malformed(what: &'static str) -> impl Fn(vigil_protocol::Error) -> ClientError {
    move |error| ClientError::Malformed { what, error }
}

/// The version handshake: sends `Hello`, checks the reply. A driver of another major version
/// is refused with both versions named when its reply says which it speaks.
///
/// # Errors
///
/// [`ClientError::VersionMismatch`], [`ClientError::CommandRefused`], the client's errors, or
/// [`ClientError::Malformed`].
pub fn hello<P: PortClient + ?Sized>(
    client: &mut P,
    client_process_id: u64,
) -> Result<DriverHello, ClientError> {
    let mut request = [0u8; Hello::LEN];
    Hello { client_process_id }
        .emit(&mut request)
        .map_err(malformed("hello"))?;
    let mut reply = [0u8; HelloReply::LEN];
    let len = match client.send_command(&request, &mut reply) {
        Err(ClientError::CommandRefused { status, .. }) if status == STATUS_REVISION_MISMATCH => {
            return Err(ClientError::VersionMismatch {
                driver: None,
                service: Version::CURRENT,
            });
        }
        other => other?,
    };
    let bytes = reply.get(..len).unwrap_or(&reply);
    let version = Header::peek_version(bytes).map_err(malformed("hello reply"))?;
    if !version.is_compatible() {
        return Err(ClientError::VersionMismatch {
            driver: Some(version),
            service: Version::CURRENT,
        });
    }
    let parsed = HelloReply::parse(bytes).map_err(malformed("hello reply"))?;
    if parsed.status == STATUS_REVISION_MISMATCH {
        return Err(ClientError::VersionMismatch {
            driver: Some(version),
            service: Version::CURRENT,
        });
    }
    if parsed.status != 0 {
        return Err(ClientError::CommandRefused {
            command: "hello",
            status: parsed.status,
        });
    }
    Ok(DriverHello {
        version,
        max_message_size: parsed.max_message_size,
        ring_capacity_bytes: parsed.ring_capacity_bytes,
    })
}

/// The driver's counters.
///
/// # Errors
///
/// The client's errors, or [`ClientError::Malformed`].
pub fn stats<P: PortClient + ?Sized>(client: &mut P) -> Result<Stats, ClientError> {
    let mut request = [0u8; GetStats::LEN];
    GetStats
        .emit(&mut request)
        .map_err(malformed("statistics request"))?;
    let mut reply = [0u8; StatsReply::LEN];
    let len = client.send_command(&request, &mut reply)?;
    let parsed =
        StatsReply::parse(reply.get(..len).unwrap_or(&reply)).map_err(malformed("statistics"))?;
    Ok(parsed.stats)
}

/// Pushes a configuration (already validated by the policy).
///
/// # Errors
///
/// [`ClientError::CommandRefused`] when the driver refused it (it keeps its old one then), the
/// client's errors, or [`ClientError::Malformed`].
pub fn set_config<P: PortClient + ?Sized>(
    client: &mut P,
    config: &Config<'_>,
) -> Result<(), ClientError> {
    let mut request = vec![0u8; config.encoded_len().clamp(HEADER_LEN, MAX_MESSAGE_SIZE)];
    let len = config
        .emit(&mut request)
        .map_err(malformed("set-configuration"))?;
    let mut reply = [0u8; SetConfigReply::LEN];
    let got = client.send_command(request.get(..len).unwrap_or(&request), &mut reply)?;
    let parsed = SetConfigReply::parse(reply.get(..got).unwrap_or(&reply))
        .map_err(malformed("set-configuration reply"))?;
    if parsed.status != 0 {
        return Err(ClientError::CommandRefused {
            command: "set-configuration",
            status: parsed.status,
        });
    }
    Ok(())
}

/// A liveness check: sends a nonce and checks that it comes back.
///
/// # Errors
///
/// The client's errors, or [`ClientError::Malformed`] (also for a wrong nonce).
pub fn ping<P: PortClient + ?Sized>(client: &mut P, nonce: u64) -> Result<(), ClientError> {
    let mut request = [0u8; Ping::LEN];
    Ping { nonce }
        .emit(&mut request)
        .map_err(malformed("ping"))?;
    let mut reply = [0u8; Pong::LEN];
    let len = client.send_command(&request, &mut reply)?;
    let pong = Pong::parse(reply.get(..len).unwrap_or(&reply)).map_err(malformed("pong"))?;
    if pong.nonce != nonce {
        return Err(ClientError::UnexpectedReply(
            "pong with another nonce than the ping's",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_name_names_each_command_by_its_header() {
        let mut buf = [0u8; 64];
        let len = Hello {
            client_process_id: 1,
        }
        .emit(&mut buf)
        .unwrap();
        assert_eq!(command_name(&buf[..len]), "hello");
        let len = GetStats.emit(&mut buf).unwrap();
        assert_eq!(command_name(&buf[..len]), "get-statistics");
        let len = Ping { nonce: 7 }.emit(&mut buf).unwrap();
        assert_eq!(command_name(&buf[..len]), "ping");
        assert_eq!(command_name(&[0xAB; 40]), "command");
    }
}
