//! A WAN emulator for tests and benchmarks: a UDP forwarder that stands in
//! front of one endpoint and adds one-way delay, jitter, loss and reordering,
//! and can cut the link (partition) and restore it. These kernels have no
//! `netem` qdisc, so the emulation is in user space.
//!
//! Clients send to `addr()`; each client address gets its own upstream socket
//! towards the target, so the target sees one distinct peer per client and
//! answers go back the same way. Randomness is seeded: a run is repeatable up
//! to the operating system's scheduling.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;

/// Largest UDP datagram forwarded (QUIC never sends more than ~1500 bytes on
/// these links; 64 KiB covers any datagram).
const DATAGRAM_BYTES_MAX: usize = 65_536;

/// Characteristics of the emulated link, applied to each direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkParams {
    /// One-way delay.
    pub delay: Duration,
    /// Extra random delay, uniform in `0..=jitter` (which also reorders).
    pub jitter: Duration,
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Bandwidth of each direction in bytes per second (`None`: unlimited).
    /// Datagrams queue behind each other as on a real link.
    pub rate_bytes_per_s: Option<u64>,
}

impl LinkParams {
    /// A perfect link.
    pub fn ideal() -> LinkParams {
        LinkParams { delay: Duration::ZERO, jitter: Duration::ZERO, loss: 0.0, rate_bytes_per_s: None }
    }
}

/// Direction of a datagram through the emulator.
#[derive(Debug, Clone, Copy)]
enum Direction {
    ToTarget = 0,
    ToClient = 1,
}

/// Counters of what the emulator did.
#[derive(Debug, Default)]
pub struct WanCounters {
    /// Datagrams forwarded.
    pub forwarded: AtomicU64,
    /// Datagrams dropped by loss or partition.
    pub dropped: AtomicU64,
    /// Bytes forwarded.
    pub bytes: AtomicU64,
}

/// A running emulator in front of one target address.
#[derive(Debug)]
pub struct WanEmulator {
    front_addr: SocketAddr,
    params: Arc<Mutex<LinkParams>>,
    partitioned: Arc<AtomicBool>,
    /// What was forwarded and dropped.
    pub counters: Arc<WanCounters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WanEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    params: Arc<Mutex<LinkParams>>,
    partitioned: Arc<AtomicBool>,
    counters: Arc<WanCounters>,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    /// Per direction, when the emulated link is free to send the next datagram.
    link_free_at: [Mutex<tokio::time::Instant>; 2],
    /// Datagrams to release later (`run_delay_line`), and their arrival count.
    delay_line: Mutex<std::sync::mpsc::Sender<Delayed>>,
    order: AtomicU64,
}

impl Shared {
    /// When to deliver a datagram of `len` bytes, or `None` to drop it.
    fn schedule(&self, direction: Direction, len: usize) -> Option<Duration> {
        if self.partitioned.load(Ordering::Relaxed) {
            return None;
        }
        let params = *self.params.lock().unwrap_or_else(|e| e.into_inner());
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        if 0.0 < params.loss && rng.gen::<f64>() < params.loss {
            return None;
        }
        let jitter_us = params.jitter.as_micros() as u64;
        let extra = if jitter_us == 0 { 0 } else { rng.gen_range(0..=jitter_us) };
        let queueing = match params.rate_bytes_per_s {
            Some(rate) if 0 < rate => {
                let now = tokio::time::Instant::now();
                let mut free_at = self.link_free_at[direction as usize].lock().unwrap_or_else(|e| e.into_inner());
                let start = (*free_at).max(now);
                *free_at = start + Duration::from_nanos(len as u64 * 1_000_000_000 / rate);
                *free_at - now
            }
            _ => Duration::ZERO,
        };
        Some(queueing + params.delay + Duration::from_micros(extra))
    }
}

/// A socket of the emulator: the tokio one receives; a duplicate of its file
/// descriptor lets the delay line's thread send.
#[derive(Clone)]
struct Port {
    socket: Arc<UdpSocket>,
    sender: Arc<std::net::UdpSocket>,
}

impl Port {
    fn new(socket: UdpSocket) -> Result<Port> {
        use std::os::fd::AsFd;
        let sender = std::net::UdpSocket::from(socket.as_fd().try_clone_to_owned()?);
        Ok(Port { socket: Arc::new(socket), sender: Arc::new(sender) })
    }
}

/// A datagram waiting out its delay.
struct Delayed {
    at: std::time::Instant,
    /// Arrival order, so equal deadlines keep it.
    order: u64,
    sender: Arc<std::net::UdpSocket>,
    to: SocketAddr,
    datagram: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// Releases delayed datagrams at their deadlines, from one thread per
/// emulator. Why not a tokio sleep per datagram: tokio's timer has 1 ms
/// resolution and rounds up, which added 1-2 ms to every emulated one-way
/// trip; a thread waiting with a deadline wakes within tens of microseconds.
/// Ends when every sender of `queue` is gone (the emulator's tasks ended).
fn run_delay_line(queue: std::sync::mpsc::Receiver<Delayed>) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut waiting: std::collections::BinaryHeap<std::cmp::Reverse<Delayed>> = Default::default();
    loop {
        let now = std::time::Instant::now();
        while waiting.peek().is_some_and(|next| next.0.at <= now) {
            let Some(std::cmp::Reverse(due)) = waiting.pop() else { break };
            // UDP: a send error is a lost datagram, which QUIC recovers from.
            let _ = due.sender.send_to(&due.datagram, due.to);
        }
        let arrived = match waiting.peek() {
            Some(next) => queue.recv_timeout(next.0.at.saturating_duration_since(now)),
            None => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match arrived {
            Ok(datagram) => waiting.push(std::cmp::Reverse(datagram)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn send_later(shared: &Arc<Shared>, direction: Direction, port: &Port, to: SocketAddr, datagram: Vec<u8>) {
    let Some(after) = shared.schedule(direction, datagram.len()) else {
        shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    shared.counters.bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
    if after.is_zero() {
        // UDP: a send error is a lost datagram, which QUIC recovers from.
        let _ = port.sender.send_to(&datagram, to);
        return;
    }
    let order = shared.order.fetch_add(1, Ordering::Relaxed);
    let delayed = Delayed { at: std::time::Instant::now() + after, order, sender: port.sender.clone(), to, datagram };
    let _ = shared.delay_line.lock().unwrap_or_else(|e| e.into_inner()).send(delayed);
}

impl WanEmulator {
    /// Starts forwarding from a new socket on `bind` (e.g. `127.0.0.1:0`) to `target`.
    pub async fn start(bind: SocketAddr, target: SocketAddr, params: LinkParams, seed: u64) -> Result<WanEmulator> {
        let front =
            Port::new(UdpSocket::bind(bind).await.with_context(|| format!("WAN emulator cannot bind {bind}"))?)?;
        let front_addr = front.socket.local_addr()?;
        let (delay_line, queue) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("wan-delay-line".into())
            .spawn(move || run_delay_line(queue))
            .context("cannot start the WAN emulator's delay line")?;
        let params = Arc::new(Mutex::new(params));
        let partitioned = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(WanCounters::default());
        let shared = Arc::new(Shared {
            params: params.clone(),
            partitioned: partitioned.clone(),
            counters: counters.clone(),
            rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(seed)),
            link_free_at: [Mutex::new(tokio::time::Instant::now()), Mutex::new(tokio::time::Instant::now())],
            delay_line: Mutex::new(delay_line),
            order: AtomicU64::new(0),
        });
        // The kernel picks the source address by route, so the target's answers
        // come back even when it lives in another network namespace.
        let upstream_bind: SocketAddr =
            if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("valid address");
        let task = tokio::spawn(async move {
            let mut upstreams: HashMap<SocketAddr, Port> = HashMap::new();
            let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
            // Runs until the emulator is dropped (the task is aborted).
            loop {
                let Ok((n, client)) = front.socket.recv_from(&mut buf).await else { continue };
                let upstream = match upstreams.get(&client) {
                    Some(port) => port.clone(),
                    None => {
                        let Ok(port) =
                            UdpSocket::bind(upstream_bind).await.map_err(anyhow::Error::from).and_then(Port::new)
                        else {
                            continue;
                        };
                        upstreams.insert(client, port.clone());
                        // Answers from the target go back to this client.
                        let (back, front, shared) = (port.socket.clone(), front.clone(), shared.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
                            // Runs as long as the emulator's runtime does.
                            while let Ok((n, _)) = back.recv_from(&mut buf).await {
                                send_later(&shared, Direction::ToClient, &front, client, buf[..n].to_vec());
                            }
                        });
                        port
                    }
                };
                send_later(&shared, Direction::ToTarget, &upstream, target, buf[..n].to_vec());
            }
        });
        Ok(WanEmulator { front_addr, params, partitioned, counters, task })
    }

    /// Where clients send to reach the target through the emulated link.
    pub fn addr(&self) -> SocketAddr {
        self.front_addr
    }

    /// Cuts (`true`) or restores (`false`) the link.
    pub fn set_partitioned(&self, partitioned: bool) {
        self.partitioned.store(partitioned, Ordering::Relaxed);
    }

    /// Changes delay, jitter and loss.
    pub fn set_params(&self, params: LinkParams) {
        *self.params.lock().unwrap_or_else(|e| e.into_inner()) = params;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn forwards_with_delay_and_partitions() {
        let target = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let params = LinkParams { delay: Duration::from_millis(30), ..LinkParams::ideal() };
        let wan =
            WanEmulator::start("127.0.0.1:0".parse().unwrap(), target.local_addr().unwrap(), params, 1).await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let started = std::time::Instant::now();
        client.send_to(b"ping", wan.addr()).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = target.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert!(Duration::from_millis(30) <= started.elapsed());
        target.send_to(b"pong", from).await.unwrap();
        let (n, from) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"pong"[..], wan.addr()));
        assert!(Duration::from_millis(60) <= started.elapsed());

        wan.set_partitioned(true);
        client.send_to(b"lost", wan.addr()).await.unwrap();
        let res = tokio::time::timeout(Duration::from_millis(200), target.recv_from(&mut buf)).await;
        // (A send into a partition must not wait for the link either.)
        assert!(res.is_err(), "a partitioned link delivers nothing");
        assert_eq!(wan.counters.dropped.load(Ordering::Relaxed), 1);
        wan.set_partitioned(false);
        client.send_to(b"back", wan.addr()).await.unwrap();
        let (n, _) = target.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"back");
    }

    #[tokio::test]
    async fn rate_limit_queues_datagrams() {
        let target = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // 100 KB/s: 20 datagrams of 1000 bytes take 200 ms to pass.
        let params = LinkParams { rate_bytes_per_s: Some(100_000), ..LinkParams::ideal() };
        let wan =
            WanEmulator::start("127.0.0.1:0".parse().unwrap(), target.local_addr().unwrap(), params, 3).await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let started = std::time::Instant::now();
        for _ in 0..20 {
            client.send_to(&[0u8; 1000], wan.addr()).await.unwrap();
        }
        let mut buf = [0u8; 2000];
        for _ in 0..20 {
            target.recv_from(&mut buf).await.unwrap();
        }
        assert!(Duration::from_millis(190) <= started.elapsed(), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn loss_drops_about_the_configured_share() {
        let target = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let params = LinkParams { loss: 0.5, ..LinkParams::ideal() };
        let wan =
            WanEmulator::start("127.0.0.1:0".parse().unwrap(), target.local_addr().unwrap(), params, 7).await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for _ in 0..400 {
            client.send_to(b"x", wan.addr()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let dropped = wan.counters.dropped.load(Ordering::Relaxed);
        assert!((120..280).contains(&dropped), "dropped {dropped} of 400 at 50% loss");
    }
}
