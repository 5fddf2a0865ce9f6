//! Admin requests signed by a paired device, the second way in besides the
//! token: the request carries the device's id, the time, and an Ed25519
//! signature by its device key (the iroh endpoint key, whose public half is
//! the device id) over `roost-admin-v1`, the method, the path with query and
//! the time. The API accepts it when the device is an active peer, the time is
//! within `CLOCK_SKEW_MS_MAX` of ours and the signature verifies.
//!
//! The body is not signed, and a captured request can be replayed within the
//! skew window: like the token, this is for loopback, a LAN or a TLS proxy.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use roost_core::model::DeviceId;

/// Header with the signing device's id (hex).
pub const HEADER_DEVICE: &str = "x-roost-device";
/// Header with the signing time, ms since the epoch.
pub const HEADER_TIME: &str = "x-roost-time";
/// Header with the signature (hex).
pub const HEADER_SIGNATURE: &str = "x-roost-signature";
/// How far the signing time may be from ours (clocks of paired devices are
/// NTP-synchronised in practice; a minute leaves room).
pub const CLOCK_SKEW_MS_MAX: u64 = 60_000;

fn signed_bytes(method: &str, path_and_query: &str, time_ms: u64) -> Vec<u8> {
    format!("roost-admin-v1\n{method}\n{path_and_query}\n{time_ms}").into_bytes()
}

/// The signature header value for a request, by the device whose key is `secret`.
pub fn sign(secret: &[u8; 32], method: &str, path_and_query: &str, time_ms: u64) -> String {
    let key = SigningKey::from_bytes(secret);
    hex::encode(key.sign(&signed_bytes(method, path_and_query, time_ms)).to_bytes())
}

/// Checks a signed request's headers; returns the signing device, whose
/// pairing the caller still checks.
pub fn verify(
    device_hex: &str,
    time: &str,
    signature_hex: &str,
    method: &str,
    path_and_query: &str,
    now_ms: u64,
) -> Result<DeviceId, &'static str> {
    let mut id = [0u8; 32];
    hex::decode_to_slice(device_hex.trim(), &mut id).map_err(|_| "malformed device id")?;
    let time_ms: u64 = time.trim().parse().map_err(|_| "malformed signing time")?;
    if now_ms.abs_diff(time_ms) > CLOCK_SKEW_MS_MAX {
        return Err("signing time too far from this device's clock");
    }
    let mut sig = [0u8; 64];
    hex::decode_to_slice(signature_hex.trim(), &mut sig).map_err(|_| "malformed signature")?;
    let key = VerifyingKey::from_bytes(&id).map_err(|_| "malformed device id")?;
    key.verify(&signed_bytes(method, path_and_query, time_ms), &Signature::from_bytes(&sig))
        .map_err(|_| "bad signature")?;
    Ok(DeviceId::from_bytes(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A signature verifies for exactly the method, path and time it was made for.
    #[test]
    fn sign_then_verify() {
        let secret = [5u8; 32];
        let id = hex::encode(SigningKey::from_bytes(&secret).verifying_key().to_bytes());
        let sig = sign(&secret, "GET", "/api/status", 1_000_000);
        assert!(verify(&id, "1000000", &sig, "GET", "/api/status", 1_030_000).is_ok());
        assert_eq!(verify(&id, "1000000", &sig, "GET", "/api/users", 1_000_000), Err("bad signature"));
        assert_eq!(verify(&id, "1000000", &sig, "POST", "/api/status", 1_000_000), Err("bad signature"));
        assert_eq!(verify(&id, "1000001", &sig, "GET", "/api/status", 1_000_000), Err("bad signature"));
        let late = verify(&id, "1000000", &sig, "GET", "/api/status", 1_000_000 + CLOCK_SKEW_MS_MAX + 1);
        assert_eq!(late, Err("signing time too far from this device's clock"));
        assert_eq!(verify("zz", "1", &sig, "GET", "/", 1), Err("malformed device id"));
        assert_eq!(verify(&id, "soon", &sig, "GET", "/", 1), Err("malformed signing time"));
    }
}
