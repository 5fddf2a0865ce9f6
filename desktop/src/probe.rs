//! Checks a device before the app remembers it: `GET /api/status` with its
//! token, over a plain HTTP/1.1 connection (the admin API listens on loopback
//! or a trusted network; no HTTP client crate needed for one request).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::DesktopError;

/// How long to wait for a device to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest status answer read (a status with 16 peers is a few KiB).
const RESPONSE_BYTES_MAX: u64 = 1024 * 1024;

/// What the device said about itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Probed {
    /// Its host name.
    pub device_name: String,
    /// Its id.
    pub device_id: String,
    /// Whether it still needs first-run setup.
    pub needs_setup: bool,
}

/// Asks the device at `address` for its status with `token`.
pub fn status(address: &str, token: &str) -> Result<Probed, DesktopError> {
    let addr: SocketAddr = address
        .to_socket_addrs()
        .map_err(|e| DesktopError::Invalid(format!("{address:?} is not host:port ({e})")))?
        .next()
        .ok_or_else(|| DesktopError::Invalid(format!("{address:?} resolves to no address")))?;
    if token.is_empty() || !token.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(DesktopError::Invalid("the admin token is 64 hex digits (`roost admin token`)".into()));
    }
    let unreachable = |e: std::io::Error| DesktopError::Unreachable(format!("cannot reach {address}: {e}"));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(unreachable)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(unreachable)?;
    let request = format!(
        "GET /api/status HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(unreachable)?;
    let mut response = Vec::new();
    stream.take(RESPONSE_BYTES_MAX).read_to_end(&mut response).map_err(unreachable)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| DesktopError::Unreachable(format!("{address} is not a Roost admin API")))?;
    let code: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let json: serde_json::Value = serde_json::from_str(body)
        .map_err(|_| DesktopError::Unreachable(format!("{address} is not a Roost admin API")))?;
    match code {
        200 => Ok(Probed {
            device_name: json["device_name"].as_str().unwrap_or("roost").to_string(),
            device_id: json["device_id"].as_str().unwrap_or("").to_string(),
            needs_setup: json["needs_setup"].as_bool().unwrap_or(false),
        }),
        401 => Err(DesktopError::WrongToken(json["error"].as_str().unwrap_or("wrong admin token").to_string())),
        _ => Err(DesktopError::Unreachable(format!(
            "{address} answered {code}: {}",
            json["error"].as_str().unwrap_or("unknown error")
        ))),
    }
}
