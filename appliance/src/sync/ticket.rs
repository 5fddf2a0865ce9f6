//! Pairing tickets: what `roost pair invite` prints and `roost pair join`
//! takes. A ticket holds the inviter's endpoint id, the addresses its daemon
//! is bound to, a one-time secret and an expiry. Encoded as `ROOST1` +
//! base32 of JSON: upper-case letters and digits only, so it survives
//! copy-paste and fits a QR code's alphanumeric mode.

use std::net::SocketAddr;

use anyhow::{bail, format_err, Result};
use serde::{Deserialize, Serialize};

use roost_core::model::DeviceId;

const PREFIX: &str = "ROOST1";

/// Bytes of the one-time secret (128 bits).
pub const SECRET_BYTES: usize = 16;

/// A decoded ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairTicket {
    /// The inviting device (its iroh endpoint id).
    pub id: DeviceId,
    /// Where its daemon listens.
    pub addrs: Vec<SocketAddr>,
    /// One-time secret, hex.
    pub secret: String,
    /// Expiry, ms since the epoch.
    pub expires_ms: u64,
}

impl PairTicket {
    /// The printable form.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("ticket serialises");
        format!("{PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&json))
    }

    /// Parses a ticket, with an error that says what is wrong with it.
    pub fn decode(text: &str) -> Result<PairTicket> {
        let text = text.trim();
        let Some(body) = text.strip_prefix(PREFIX) else {
            bail!("not a Roost pairing ticket (it should start with {PREFIX})");
        };
        let json = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|e| format_err!("the pairing ticket is damaged (base32: {e}); copy it again"))?;
        let ticket: PairTicket = serde_json::from_slice(&json)
            .map_err(|e| format_err!("the pairing ticket is damaged ({e}); copy it again"))?;
        if ticket.secret.len() != SECRET_BYTES * 2 || hex::decode(&ticket.secret).is_err() {
            bail!("the pairing ticket's secret is malformed");
        }
        Ok(ticket)
    }

    /// The secret's bytes.
    pub fn secret_bytes(&self) -> Vec<u8> {
        hex::decode(&self.secret).unwrap_or_default()
    }
}

/// Renders text as a QR code for the terminal (two rows per character).
pub fn qr_for_terminal(text: &str) -> Result<String> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::L)
        .map_err(|e| format_err!("cannot make a QR code of the ticket: {e}"))?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> PairTicket {
        PairTicket {
            id: DeviceId::from_bytes([4; 32]),
            addrs: vec!["127.0.0.1:7947".parse().unwrap()],
            secret: hex::encode([9u8; SECRET_BYTES]),
            expires_ms: 1_800_000_000_000,
        }
    }

    #[test]
    fn round_trip() {
        let text = ticket().encode();
        assert!(text.starts_with("ROOST1"));
        assert!(text.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert_eq!(PairTicket::decode(&format!("  {text}\n")).unwrap(), ticket());
    }

    #[test]
    fn damaged_tickets_say_so() {
        let text = ticket().encode();
        let err = PairTicket::decode("hello").unwrap_err().to_string();
        assert!(err.contains("not a Roost pairing ticket"), "{err}");
        let err = PairTicket::decode(&text[..text.len() - 7]).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        let err = PairTicket::decode(&format!("{text}!")).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }

    #[test]
    fn qr_renders() {
        let qr = qr_for_terminal(&ticket().encode()).unwrap();
        assert!(qr.lines().count() > 10);
    }
}
