//! Routes of the admin API and the web UI, token authentication, and the
//! handlers. A handler parses its request into `dto` types, calls `crate::ops`
//! or `roost-core` through the `Daemon` (reads on blocking threads, writes
//! through the group committer), and converts the result back. Every error is
//! `{"error": "..."}` with a status saying whose fault it is.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /api/status` | device, counts, storage, peers |
//! | `GET /api/storage` | counts and sizes |
//! | `GET,POST /api/users` | list, add |
//! | `PUT /api/users/{name}/password` | change a password |
//! | `DELETE /api/users/{name}` | remove a user and their mail |
//! | `GET /api/users/{name}/mailboxes` | mailboxes with counts |
//! | `GET /api/peers` | paired devices with connection state |
//! | `DELETE /api/peers/{id}` | stop trusting a device (id or prefix) |
//! | `GET /api/lag` | lag history per peer |
//! | `POST /api/pair/invite`, `POST /api/pair/join` | pairing |
//! | `GET /api/events` | event log, filtered |
//! | `GET /api/conflicts?limit=` | conflicts the merge resolved, newest first |
//! | `GET /api/backups` | the `[backup]` schedule and the backups in its dir |
//! | `POST /api/backups` | a backup now, into `[backup] dir` (kept by `keep`) |
//! | `POST /api/setup` | first-run setup (only while no user exists) |
//! | `GET /api/client-setup[/autoconfig.xml, /roost.mobileconfig]` | mail client settings |
//! | `GET /metrics` | Prometheus |
//! | `GET /`, `/app.js`, `/style.css` | the UI (no token needed) |

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use subtle::ConstantTimeEq;

use roost_core::model::{Flag, UserName};
use roost_core::store::StoreError;

use crate::admin::client_setup::{self, ClientSettings};
use crate::admin::dto::*;
use crate::admin::{assets, device_auth, metrics, AdminState};
use crate::cli::now_ms;
use crate::ops::{self, EventFilter, OpError};

/// Largest request body: the biggest legitimate one is a pasted ticket.
const BODY_BYTES_MAX: usize = 64 * 1024;

/// The router over `state`.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/status", get(status))
        .route("/api/storage", get(storage))
        .route("/api/users", get(list_users).post(add_user))
        .route("/api/users/{name}", delete(remove_user))
        .route("/api/users/{name}/password", put(set_password))
        .route("/api/users/{name}/mailboxes", get(mailboxes))
        .route("/api/peers", get(peers))
        .route("/api/peers/{id}", delete(remove_peer))
        .route("/api/lag", get(lag))
        .route("/api/pair/invite", post(invite))
        .route("/api/pair/join", post(join))
        .route("/api/events", get(events))
        .route("/api/conflicts", get(conflicts))
        .route("/api/backups", get(list_backups).post(back_up_now))
        .route("/api/setup", post(setup))
        .route("/api/client-setup", get(client_setup))
        .route("/api/client-setup/autoconfig.xml", get(autoconfig))
        .route("/api/client-setup/roost.mobileconfig", get(mobileconfig))
        .route("/api/{*rest}", get(api_not_found).post(api_not_found).put(api_not_found).delete(api_not_found))
        .route("/metrics", get(prometheus))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(asset))
        .route("/app.js", get(asset))
        .route("/style.css", get(asset))
        .merge(api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

// --- errors --------------------------------------------------------------------

/// An error answer: a status and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorDto { error: self.message })).into_response()
    }
}

impl From<OpError> for ApiError {
    fn from(err: OpError) -> Self {
        let status = match &err {
            OpError::Invalid(_) => StatusCode::BAD_REQUEST,
            OpError::NotFound(_) => StatusCode::NOT_FOUND,
            OpError::Conflict(_) => StatusCode::CONFLICT,
            OpError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            OpError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "admin API request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, format!("{err:#}"))
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        OpError::from(err).into()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(err: JsonRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, format!("malformed request body: {}", err.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(err: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, format!("malformed query: {}", err.body_text()))
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs a read on the daemon's store, flattening the op error.
async fn read<T, F>(state: &AdminState, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&roost_core::store::Store) -> ops::OpResult<T> + Send + 'static,
{
    state.daemon.read(move |s| Ok(f(s))).await?.map_err(ApiError::from)
}

// --- authentication ------------------------------------------------------------

/// Lets a request through only with `Authorization: Bearer <token>`, or
/// signed by an active paired device (`device_auth`).
async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let presented =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let signed =
        (header(device_auth::HEADER_DEVICE), header(device_auth::HEADER_TIME), header(device_auth::HEADER_SIGNATURE));
    match (presented, signed) {
        (Some(token), _) if token_matches(token.trim(), state.token.expose()) => next.run(request).await,
        (Some(_), _) => {
            tracing::warn!("admin API request with a wrong token");
            ApiError::new(StatusCode::UNAUTHORIZED, "wrong admin token (see `roost admin token`)").into_response()
        }
        (None, (Some(device), Some(time), Some(signature))) => {
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
            let method = request.method().as_str().to_string();
            let checked = device_auth::verify(&device, &time, &signature, &method, &path, now_ms());
            let device = match checked {
                Ok(device) => device,
                Err(reason) => {
                    tracing::warn!(%reason, "admin API request with a bad device signature");
                    return ApiError::new(StatusCode::UNAUTHORIZED, format!("device signature refused: {reason}"))
                        .into_response();
                }
            };
            match state.daemon.read(move |s| s.is_active_peer(device)).await {
                Ok(true) => next.run(request).await,
                Ok(false) => {
                    tracing::warn!(peer = %device.short(), "admin API request signed by a device that is not paired");
                    ApiError::new(StatusCode::UNAUTHORIZED, "device signature refused: not a paired device")
                        .into_response()
                }
                Err(e) => ApiError::from(e).into_response(),
            }
        }
        (None, _) => ApiError::new(StatusCode::UNAUTHORIZED, "missing admin token: send Authorization: Bearer <token>")
            .into_response(),
    }
}

/// Compares in constant time (for equal lengths; the length is not secret).
fn token_matches(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

// --- status --------------------------------------------------------------------

fn live_peers(state: &AdminState) -> Option<Vec<roost_core::model::DeviceId>> {
    state.sync.as_ref().map(|s| s.connected_peers())
}

async fn status(State(state): State<AdminState>) -> ApiResult<Json<StatusDto>> {
    let live = live_peers(&state);
    let data_dir = state.daemon.data_dir.display().to_string();
    let dto = read(&state, move |s| {
        let stats = s.stats()?;
        let peers = ops::peer_views(s, live.as_deref(), now_ms())?;
        Ok(StatusDto {
            device_id: s.identity().id().to_string(),
            device_name: crate::sync::pairing::device_name(),
            slot: s.identity().slot().get(),
            data_dir,
            needs_setup: stats.users == 0,
            storage: stats.into(),
            peers: peers.into_iter().map(PeerDto::from).collect(),
        })
    })
    .await?;
    Ok(Json(dto))
}

async fn storage(State(state): State<AdminState>) -> ApiResult<Json<StorageDto>> {
    Ok(Json(read(&state, |s| Ok(s.stats()?.into())).await?))
}

// --- users ---------------------------------------------------------------------

async fn list_users(State(state): State<AdminState>) -> ApiResult<Json<Vec<UserDto>>> {
    let users = read(&state, |s| Ok(s.users()?)).await?;
    Ok(Json(users.into_iter().map(UserDto::from).collect()))
}

async fn add_user(
    State(state): State<AdminState>,
    body: Result<Json<NewUserDto>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<UserDto>)> {
    let Json(body) = body?;
    let user = create_user(&state, &body.name, &body.password).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Validates, hashes and creates the user's age identity (on a blocking
/// thread: argon2 takes a while) and adds; the answer carries the recovery
/// key, shown once.
async fn create_user(state: &AdminState, name: &str, password: &str) -> ApiResult<UserDto> {
    let user = ops::parse_user_name(name)?;
    let password = password.to_string();
    let secret_user = user.clone();
    let (hash, keys, recovery) = tokio::task::spawn_blocking(move || ops::new_user_secrets(&secret_user, &password))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("hashing failed: {e}")))??;
    let add = user.clone();
    state
        .daemon
        .write(move |w| {
            w.add_user(&add, &hash)?;
            w.set_user_keys(&add, &hash, &keys)
        })
        .await?;
    tracing::info!(user = %user, "admin API added a user");
    let mut dto = user_dto(state, user).await?.0;
    dto.recovery_key = Some(recovery.to_string());
    Ok(dto)
}

async fn set_password(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Json<PasswordDto>, JsonRejection>,
) -> ApiResult<Json<UserDto>> {
    let Json(body) = body?;
    let user = ops::parse_user_name(&name)?;
    let exists_user = user.clone();
    if !read(&state, move |s| Ok(s.user_exists(&exists_user)?)).await? {
        return Err(OpError::NotFound(format!("no user {user}")).into());
    }
    let keys_user = user.clone();
    let (keys, keyring) = read(&state, move |s| Ok((s.user_keys(&keys_user)?, s.user_keyring(&keys_user)?))).await?;
    let secret_user = user.clone();
    let secrets = tokio::task::spawn_blocking(move || {
        ops::changed_password_secrets(&secret_user, keys, &keyring, body.current.as_deref(), &body.password)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("hashing failed: {e}")))??;
    let write_user = user.clone();
    let ops::NewSecrets { hash, keys, also, recovery, locked } = secrets;
    state.daemon.write(move |w| w.set_user_keyring(&write_user, &hash, &keys, &also)).await?;
    tracing::info!(user = %user, "admin API changed a password");
    if !locked.is_empty() {
        tracing::warn!(user = %user, identities = ?locked,
            "the old password did not open these identities: they keep their old password (see /api/conflicts)");
    }
    let mut dto = user_dto(&state, user).await?;
    dto.0.recovery_key = recovery.map(|r| r.to_string());
    Ok(dto)
}

async fn remove_user(State(state): State<AdminState>, Path(name): Path<String>) -> ApiResult<Json<UserDto>> {
    let user = ops::parse_user_name(&name)?;
    let dto = user_dto(&state, user.clone()).await?;
    let write_user = user.clone();
    state.daemon.write(move |w| w.remove_user(&write_user)).await?;
    tracing::info!(user = %user, "admin API removed a user");
    Ok(Json(dto.0))
}

async fn user_dto(state: &AdminState, user: UserName) -> ApiResult<Json<UserDto>> {
    let name = user.to_string();
    let info = read(state, move |s| Ok(s.users()?.into_iter().find(|u| u.name == name))).await?;
    info.map(|u| Json(u.into())).ok_or_else(|| OpError::NotFound(format!("no user {user}")).into())
}

async fn mailboxes(State(state): State<AdminState>, Path(name): Path<String>) -> ApiResult<Json<Vec<MailboxDto>>> {
    let user = ops::parse_user_name(&name)?;
    let list = read(&state, move |s| {
        if !s.user_exists(&user)? {
            return Err(OpError::NotFound(format!("no user {user}")));
        }
        let seen = Flag::seen();
        let mut out = Vec::new();
        for mailbox in s.mailboxes(&user)? {
            let entries = s.entries(mailbox.id)?;
            let unseen = entries.iter().filter(|e| !e.flags.contains(&seen)).count() as u64;
            out.push(MailboxDto {
                name: mailbox.name,
                special_use: mailbox.special_use.map(|u| u.attribute().to_string()),
                messages: entries.len() as u64,
                unseen,
                uid_validity: mailbox.uid_validity.get(),
                uid_next: mailbox.uid_next,
            });
        }
        Ok(out)
    })
    .await?;
    Ok(Json(list))
}

// --- peers and pairing -----------------------------------------------------------

async fn peers(State(state): State<AdminState>) -> ApiResult<Json<Vec<PeerDto>>> {
    let live = live_peers(&state);
    let views = read(&state, move |s| ops::peer_views(s, live.as_deref(), now_ms())).await?;
    Ok(Json(views.into_iter().map(PeerDto::from).collect()))
}

async fn remove_peer(State(state): State<AdminState>, Path(id): Path<String>) -> ApiResult<Json<PairedDto>> {
    let device = read(&state, move |s| ops::remove_peer(s, &id, now_ms())).await?;
    tracing::info!(peer = %device.short(), "admin API removed a pairing");
    Ok(Json(PairedDto { device_id: device.to_string(), name: None }))
}

async fn lag(State(state): State<AdminState>) -> Json<LagHistoryDto> {
    let peers = state
        .lag
        .snapshot()
        .into_iter()
        .map(|(id, samples)| {
            let samples = samples
                .into_iter()
                .map(|s| LagSampleDto {
                    t_ms: s.t_ms,
                    lag_ms: s.lag_ms,
                    events_they_lack: s.events_they_lack,
                    events_we_lack: s.events_we_lack,
                    connected: s.connected,
                })
                .collect();
            (id.to_string(), samples)
        })
        .collect();
    Json(LagHistoryDto { interval_ms: crate::admin::lag::SAMPLE_INTERVAL.as_millis() as u64, peers })
}

/// Addresses for tickets: the sync service's, else what the daemon wrote.
fn sync_addrs(state: &AdminState) -> Vec<SocketAddr> {
    match &state.sync {
        Some(sync) => sync.advertised_addrs(),
        None => crate::sync::read_addrs_file(&state.daemon.data_dir).unwrap_or_default(),
    }
}

async fn invite(State(state): State<AdminState>, body: axum::body::Bytes) -> ApiResult<(StatusCode, Json<InviteDto>)> {
    // The body is optional: no body means the default expiry.
    let request: InviteRequestDto = if body.iter().all(u8::is_ascii_whitespace) {
        InviteRequestDto::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed request body: {e}")))?
    };
    let minutes = request.expires_minutes.unwrap_or(ops::TICKET_MINUTES_DEFAULT);
    let addrs = sync_addrs(&state);
    let ticket = read(&state, move |s| ops::create_invite(s, addrs, minutes, now_ms())).await?;
    let text = ticket.encode();
    let qr_svg = client_setup::qr_svg(&text).map_err(OpError::Internal)?;
    tracing::info!(expires_ms = ticket.expires_ms, "admin API made a pairing ticket");
    Ok((StatusCode::CREATED, Json(InviteDto { ticket: text, expires_ms: ticket.expires_ms, qr_svg })))
}

async fn join(
    State(state): State<AdminState>,
    body: Result<Json<JoinRequestDto>, JsonRejection>,
) -> ApiResult<Json<PairedDto>> {
    let Json(body) = body?;
    let data_dir = state.daemon.data_dir.clone();
    let my_addrs = sync_addrs(&state);
    // Joining holds a store across the network exchange; it uses its own
    // connection, as `roost pair join` does while the daemon runs, so the
    // daemon's store is not held while the other device answers.
    let mut store = crate::cli::open_store(&data_dir).map_err(OpError::Internal)?;
    let (device, name) = ops::join(&mut store, &data_dir, &body.ticket, my_addrs, now_ms()).await?;
    tracing::info!(peer = %device.short(), "admin API paired this device");
    Ok(Json(PairedDto { device_id: device.to_string(), name: Some(name) }))
}

// --- event log, conflicts, backups -----------------------------------------------

async fn events(
    State(state): State<AdminState>,
    query: Result<Query<EventQueryDto>, QueryRejection>,
) -> ApiResult<Json<Vec<EventDto>>> {
    let Query(q) = query?;
    let filter = EventFilter {
        device: q.device.filter(|s| !s.is_empty()),
        user: q.user.filter(|s| !s.is_empty()),
        mailbox: q.mailbox.filter(|s| !s.is_empty()),
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        limit: q.limit,
    };
    let views = read(&state, move |s| ops::browse_events(s, &filter)).await?;
    Ok(Json(views.into_iter().map(EventDto::from).collect()))
}

async fn conflicts(
    State(state): State<AdminState>,
    query: Result<Query<ConflictQueryDto>, QueryRejection>,
) -> ApiResult<Json<Vec<ConflictDto>>> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(200);
    let views = read(&state, move |s| ops::conflict_views(s, limit)).await?;
    Ok(Json(views.into_iter().map(ConflictDto::from).collect()))
}

/// The `[backup]` settings and the backups written into its `dir`.
async fn list_backups(State(state): State<AdminState>) -> ApiResult<Json<BackupsDto>> {
    let backup = &state.daemon.config.backup;
    let recipient = backup.recipient.clone();
    let Some(dir) = backup.dir.clone() else {
        return Ok(Json(BackupsDto {
            dir: None,
            every: backup.every.clone(),
            keep: backup.keep,
            recipient,
            backups: vec![],
        }));
    };
    let list_dir = dir.clone();
    let backups = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<BackupFileDto>> {
        if !list_dir.exists() {
            return Ok(vec![]);
        }
        let mut out = Vec::new();
        for path in crate::backup::scheduled_backups(&list_dir)?.into_iter().rev() {
            let meta = std::fs::metadata(&path)?;
            let written_ms =
                meta.modified()?.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
            let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            out.push(BackupFileDto { file, bytes: meta.len(), written_ms });
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("listing backups failed: {e}")))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    Ok(Json(BackupsDto { dir: Some(dir), every: backup.every.clone(), keep: backup.keep, recipient, backups }))
}

/// Writes a backup now into `[backup] dir`, encrypted to `[backup] recipient`,
/// through the same code as the schedule (old ones beyond `keep` go).
async fn back_up_now(State(state): State<AdminState>) -> ApiResult<(StatusCode, Json<BackupFileDto>)> {
    let backup = &state.daemon.config.backup;
    let recipient = backup
        .recipient()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "no backup recipient: set [backup] recipient = \"age1...\" (roost backup keygen) and dir in the config",
            )
        })?;
    let dir = backup
        .dir
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "no backup dir: set [backup] dir in the config"))?;
    let keep = backup.keep;
    let data_dir = state.daemon.data_dir.clone();
    let config_file = state.config_file.clone();
    let (path, summary) = tokio::task::spawn_blocking(move || {
        crate::backup::scheduled_backup(
            &data_dir,
            config_file.as_deref(),
            &recipient,
            &dir,
            keep,
            std::time::SystemTime::now(),
        )
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("backup failed: {e}")))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("backup failed: {e:#}")))?;
    tracing::info!(file = %path.display(), blobs = summary.blobs, "admin API wrote a backup");
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let written_ms = now_ms();
    Ok((StatusCode::CREATED, Json(BackupFileDto { file, bytes: summary.bytes, written_ms })))
}

// --- first-run setup ---------------------------------------------------------------

async fn setup(
    State(state): State<AdminState>,
    body: Result<Json<SetupDto>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<SetupDoneDto>)> {
    let Json(body) = body?;
    // Everything is checked before anything is written: nothing half-done.
    let config_snippet = match &body.tls {
        TlsChoiceDto::SelfSigned => String::new(),
        TlsChoiceDto::Own { cert_path, key_path } => {
            check_pem(cert_path, "CERTIFICATE")?;
            check_pem(key_path, "PRIVATE KEY")?;
            format!("[imap]\ntls_cert = {:?}\ntls_key = {:?}\n", cert_path, key_path)
        }
    };
    ops::parse_user_name(&body.user)?;
    let users = read(&state, |s| Ok(s.stats()?.users)).await?;
    if users > 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this device is already set up: add users on the Users screen",
        ));
    }
    let user = create_user(&state, &body.user, &body.password).await?;
    Ok((StatusCode::CREATED, Json(SetupDoneDto { user, config_snippet })))
}

/// Checks that `path` is a readable PEM file holding a `what` block.
fn check_pem(path: &str, what: &str) -> ApiResult<()> {
    if !std::path::Path::new(path).is_absolute() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("{path:?} is not an absolute path")));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("cannot read {path}: {e}")))?;
    if !text.contains("-----BEGIN") || !text.contains(what) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("{path} holds no PEM {what}")));
    }
    Ok(())
}

// --- client setup ------------------------------------------------------------------

async fn settings_for(state: &AdminState, headers: &HeaderMap, user: &str) -> ApiResult<ClientSettings> {
    let user = ops::parse_user_name(user)?;
    let exists_user = user.clone();
    if !read(state, move |s| Ok(s.user_exists(&exists_user)?)).await? {
        return Err(OpError::NotFound(format!("no user {user}")).into());
    }
    let host = request_host(headers);
    Ok(ClientSettings::new(&user, &host, &state.daemon.config))
}

/// The host name the browser used, which is also how mail clients on the
/// same network reach the device; `localhost` if it is missing or odd.
fn request_host(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.is_empty() => name,
        _ => host,
    };
    if client_setup::host_is_plausible(host) {
        host.to_string()
    } else {
        "localhost".to_string()
    }
}

async fn client_setup(
    State(state): State<AdminState>,
    headers: HeaderMap,
    query: Result<Query<UserQueryDto>, QueryRejection>,
) -> ApiResult<Json<ClientSetupDto>> {
    let Query(q) = query?;
    let settings = settings_for(&state, &headers, &q.user).await?;
    let qr_svg = client_setup::qr_svg(&settings.qr_text()).map_err(OpError::Internal)?;
    Ok(Json(ClientSetupDto {
        user: settings.user,
        host: settings.host,
        imaps_port: settings.imaps_port,
        imap_port: settings.imap_port,
        qr_svg,
    }))
}

async fn autoconfig(
    State(state): State<AdminState>,
    headers: HeaderMap,
    query: Result<Query<UserQueryDto>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    let settings = settings_for(&state, &headers, &q.user).await?;
    Ok(download(settings.autoconfig_xml(), "application/xml", "config-v1.1.xml"))
}

async fn mobileconfig(
    State(state): State<AdminState>,
    headers: HeaderMap,
    query: Result<Query<UserQueryDto>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    let settings = settings_for(&state, &headers, &q.user).await?;
    let seed = read(&state, |s| Ok(s.identity().id().to_string())).await?;
    Ok(download(settings.mobileconfig(&seed), "application/x-apple-aspen-config", "roost.mobileconfig"))
}

fn download(body: String, content_type: &'static str, file_name: &'static str) -> Response {
    let disposition = format!("attachment; filename=\"{file_name}\"");
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

// --- metrics, assets, fallbacks ----------------------------------------------------

async fn prometheus(State(state): State<AdminState>) -> ApiResult<Response> {
    let live = live_peers(&state);
    let text = read(&state, move |s| {
        let peers = ops::peer_views(s, live.as_deref(), now_ms())?;
        Ok(metrics::render(&peers, &s.stats()?))
    })
    .await?;
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(response)
}

async fn asset(uri: axum::http::Uri) -> Response {
    match assets::find(uri.path()) {
        Some(asset) => {
            let mut response = asset.body.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
            // The UI runs no third-party code and is not meant to be framed.
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
                ),
            );
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            response
        }
        None => not_found().await.into_response(),
    }
}

async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such API endpoint")
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
        assert!(!token_matches("", "abc"));
    }

    #[test]
    fn host_header_parsing() {
        let mut headers = HeaderMap::new();
        assert_eq!(request_host(&headers), "localhost");
        headers.insert(header::HOST, HeaderValue::from_static("roost.lan:7080"));
        assert_eq!(request_host(&headers), "roost.lan");
        headers.insert(header::HOST, HeaderValue::from_static("[::1]:7080"));
        assert_eq!(request_host(&headers), "[::1]");
        headers.insert(header::HOST, HeaderValue::from_static("a<b"));
        assert_eq!(request_host(&headers), "localhost");
    }
}
