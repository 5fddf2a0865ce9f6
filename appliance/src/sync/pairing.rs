//! Pairing over ALPN `roost/pair/1`. The joiner dials the inviter's endpoint
//! (iroh's handshake proves the inviter holds the ticket's key), presents the
//! one-time secret, and both record each other as peers. The inviter assigns
//! the joiner a free UID slot.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, format_err, Context, Result};
use iroh::endpoint::presets;
use iroh::{Endpoint, EndpointAddr, SecretKey, TransportAddr};

use roost_core::model::{DeviceId, DeviceSlot};
use roost_core::store::peers::InviteCheck;
use roost_core::store::Store;

use crate::cli::now_ms;
use crate::serve::Daemon;
use crate::sync::frames::{read_frame, write_frame};
use crate::sync::messages::{PairRequest, PairResponse};
use crate::sync::ticket::PairTicket;
use crate::sync::PAIR_ALPN;

/// This device's display name for peers: the host name.
pub fn device_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "roost".into())
}

/// Inviter side: answers one pairing request.
pub async fn serve_pairing(daemon: &Daemon, conn: iroh::endpoint::Connection) -> Result<()> {
    let peer = DeviceId::from_bytes(*conn.remote_id().as_bytes());
    let (mut send, mut recv) = conn.accept_bi().await?;
    let Some((request, _)) = read_frame::<_, PairRequest>(&mut recv).await? else {
        bail!("the joiner sent nothing");
    };
    let secret = hex::decode(&request.secret).unwrap_or_default();
    let name = request.name.chars().take(64).collect::<String>();
    let addrs = request.addrs.clone();
    let response = daemon
        .read(move |s| {
            Ok(match s.consume_invite(&secret, now_ms())? {
                InviteCheck::Accepted => match s.free_slot()? {
                    Some(slot) => {
                        s.add_peer(peer, &name, slot, &addrs, now_ms())?;
                        PairResponse::Accepted {
                            name: device_name(),
                            slot: s.identity().slot().get(),
                            your_slot: slot.get(),
                        }
                    }
                    None => PairResponse::Refused { reason: "all 16 device slots are in use".into() },
                },
                InviteCheck::Unknown => {
                    PairResponse::Refused { reason: "the ticket is not valid on this device".into() }
                }
                InviteCheck::Expired => {
                    PairResponse::Refused { reason: "the ticket has expired: make a new one".into() }
                }
                InviteCheck::AlreadyUsed => {
                    PairResponse::Refused { reason: "the ticket was already used: make a new one".into() }
                }
            })
        })
        .await?;
    match &response {
        PairResponse::Accepted { .. } => tracing::info!(peer = %peer, "paired a new device"),
        PairResponse::Refused { reason } => tracing::warn!(peer = %peer, %reason, "refused a pairing request"),
    }
    write_frame(&mut send, &response).await?;
    send.finish()?;
    // Let the answer reach the joiner before the connection goes away.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn.closed()).await;
    Ok(())
}

/// Joiner side: pairs this device (its store, opened by the caller) with the
/// ticket's device. `my_addrs` are where this device's daemon listens.
pub async fn join(
    store: &mut Store,
    data_dir: &Path,
    ticket: &PairTicket,
    my_addrs: Vec<SocketAddr>,
) -> Result<String> {
    if ticket.id == store.identity().id() {
        bail!("this ticket was made by this device: run `roost pair join` on the other device");
    }
    if store.is_active_peer(ticket.id)? {
        bail!("this device is already paired with {}", ticket.id.short());
    }
    if ticket.expires_ms < now_ms() {
        bail!("the ticket has expired: make a new one with `roost pair invite`");
    }
    let secret = crate::device::load_key(data_dir)?;
    let endpoint = Endpoint::builder(presets::Minimal)
        .secret_key(SecretKey::from_bytes(&secret))
        .alpns(vec![PAIR_ALPN.to_vec()])
        .clear_ip_transports()
        .bind_addr("0.0.0.0:0")
        .map_err(|e| format_err!("{e}"))?
        .bind()
        .await
        .map_err(|e| format_err!("cannot bind a QUIC endpoint: {e}"))?;
    let key = iroh::PublicKey::from_bytes(ticket.id.as_bytes()).map_err(|e| format_err!("ticket device id: {e}"))?;
    let target = EndpointAddr { id: key, addrs: ticket.addrs.iter().copied().map(TransportAddr::Ip).collect() };
    let conn = tokio::time::timeout(std::time::Duration::from_secs(15), endpoint.connect(target, PAIR_ALPN))
        .await
        .map_err(|_| {
            format_err!("cannot reach {} at {:?} within 15 s: is its daemon running?", ticket.id.short(), ticket.addrs)
        })?
        .map_err(|e| format_err!("cannot connect to {} at {:?}: {e}", ticket.id.short(), ticket.addrs))?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let request = PairRequest {
        secret: ticket.secret.clone(),
        name: device_name(),
        addrs: my_addrs.iter().map(|a| a.to_string()).collect(),
    };
    write_frame(&mut send, &request).await?;
    send.finish()?;
    let (response, _) = read_frame::<_, PairResponse>(&mut recv).await?.context("the inviter closed the connection")?;
    conn.close(0u32.into(), b"paired");
    endpoint.close().await;
    match response {
        PairResponse::Refused { reason } => bail!("pairing refused by {}: {reason}", ticket.id.short()),
        PairResponse::Accepted { name, slot, your_slot } => {
            let slot = DeviceSlot::new(slot).context("inviter sent a bad slot")?;
            let your_slot = DeviceSlot::new(your_slot).context("inviter sent a bad slot")?;
            let addrs: Vec<String> = ticket.addrs.iter().map(|a| a.to_string()).collect();
            store.add_peer(ticket.id, &name, slot, &addrs, now_ms())?;
            store.set_slot(your_slot)?;
            Ok(name)
        }
    }
}
