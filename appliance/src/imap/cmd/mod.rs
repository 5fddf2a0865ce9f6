//! Command dispatch: which connection state allows which command (RFC 9051
//! 6.1-6.4), and one `match` handing each parsed command to its module. A
//! command we parse but do not implement has its own arm answering
//! `NO [CANNOT]`, never a wildcard.

pub mod append;
pub mod auth;
pub mod copy_move;
pub mod expunge;
pub mod fetch;
pub mod idle;
pub mod info;
pub mod list;
pub mod mailbox;
pub mod search;
pub mod select;
pub mod status;
pub mod store;

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::mailbox::Mailbox;
use roost_core::store::StoreError;

use crate::imap::conn::{Env, ImapConn};
use crate::imap::extended::Extras;
use crate::imap::names;
use crate::imap::selected::ExpungePolicy;

/// How a command ended, when it did not fail.
#[derive(Debug)]
pub enum Done {
    /// Tagged OK with this text (may start with a response code).
    Ok {
        /// Text after `OK `.
        text: String,
        /// Whether pending expunges may be announced before the OK.
        policy: ExpungePolicy,
    },
    /// IDLE accepted: send `+ idling` and wait for DONE.
    Idle,
    /// AUTHENTICATE wants the SASL response: send `+ `.
    SaslContinue,
    /// LOGOUT: BYE, tagged OK, close.
    Logout,
    /// STARTTLS accepted: tagged OK, then the TLS handshake.
    StartTls,
    /// COMPRESS DEFLATE accepted: tagged OK, then deflate both directions.
    Compress,
}

impl Done {
    /// Tagged OK; pending expunges are announced first.
    pub fn ok(text: impl Into<String>) -> Done {
        Done::Ok { text: text.into(), policy: ExpungePolicy::Announce }
    }

    /// Tagged OK of FETCH, STORE, SEARCH by message number: expunges wait.
    pub fn ok_holding_expunges(text: impl Into<String>) -> Done {
        Done::Ok { text: text.into(), policy: ExpungePolicy::Hold }
    }
}

/// The tagged NO for a change while a restored device catches up with its
/// peers: the condition is temporary, so a client retries later.
pub const REJOINING_NO: &str =
    "[UNAVAILABLE] This device was restored from a backup and is catching up with its other devices; \
     changes are refused until then, reading works";

/// How a command failed (STYLE 29): each becomes the tagged reply.
#[derive(Debug)]
pub enum CmdError {
    /// Tagged BAD: the command was malformed or not valid now.
    Bad(String),
    /// Tagged NO with text (may start with a response code).
    No(String),
    /// Tagged NO after a failed login, sent after a delay.
    LoginFailed(String),
    /// The store failed unexpectedly: NO [SERVERBUG], logged.
    Store(StoreError),
}

impl From<StoreError> for CmdError {
    fn from(e: StoreError) -> CmdError {
        match e {
            StoreError::NoSuchMailbox(name) => CmdError::No(format!("[NONEXISTENT] No mailbox {name}")),
            StoreError::MailboxExists(name) => CmdError::No(format!("[ALREADYEXISTS] Mailbox {name} exists")),
            StoreError::InboxProtected(what) => CmdError::No(format!("[CANNOT] INBOX cannot be {what}")),
            StoreError::InvalidName { reason, .. } => CmdError::No(format!("[CANNOT] Invalid mailbox name: {reason}")),
            StoreError::UidSpaceExhausted(name) => CmdError::No(format!("[LIMIT] Mailbox {name} is full")),
            // Temporary (RFC 5530 UNAVAILABLE): reads work, changes wait until
            // the restored device has rejoined (docs/security.md, Backups).
            StoreError::Rejoining => CmdError::No(REJOINING_NO.into()),
            other => CmdError::Store(other),
        }
    }
}

/// Connection states of RFC 9051 3, as far as the state table needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotAuthenticated,
    Authenticated,
    Selected,
}

/// Runs one parsed command.
pub fn execute(
    conn: &mut ImapConn,
    env: &mut Env<'_>,
    command: Command<'static>,
    extras: Extras,
) -> Result<Done, CmdError> {
    let state = match (&conn.session, &conn.selected) {
        (None, _) => State::NotAuthenticated,
        (Some(_), None) => State::Authenticated,
        (Some(_), Some(_)) => State::Selected,
    };
    let tag = command.tag.as_ref().to_string();
    if !allowed(&command.body, state) {
        return Err(CmdError::Bad(format!("{} not allowed now", command.body.name())));
    }
    match command.body {
        CommandBody::Capability => info::capability(conn),
        CommandBody::Noop | CommandBody::Check => Ok(Done::ok("NOOP completed")),
        CommandBody::Logout => Ok(Done::Logout),
        CommandBody::Id { .. } => info::id(conn),
        CommandBody::Enable { capabilities } => info::enable(conn, capabilities.as_ref()),
        CommandBody::Namespace => info::namespace(conn),
        CommandBody::StartTLS => auth::starttls(conn),
        CommandBody::Login { username, password } => {
            auth::login(conn, env, username.as_ref(), password.declassify().as_ref())
        }
        CommandBody::Authenticate { mechanism, initial_response } => {
            auth::authenticate(conn, env, &mechanism, initial_response.as_ref().map(|r| r.declassify().as_ref()))
        }
        CommandBody::Select { mailbox, parameters } => select::select(conn, env, &mailbox, &parameters, false),
        CommandBody::Examine { mailbox, parameters } => select::select(conn, env, &mailbox, &parameters, true),
        CommandBody::Close => select::close(conn, env),
        CommandBody::Unselect => select::unselect(conn),
        CommandBody::Create { mailbox } => mailbox::create(conn, env, &mailbox),
        CommandBody::Delete { mailbox } => mailbox::delete(conn, env, &mailbox),
        CommandBody::Rename { from, to } => mailbox::rename(conn, env, &from, &to),
        CommandBody::Subscribe { mailbox } => mailbox::subscribe(conn, env, &mailbox, mailbox::Subscription::On),
        CommandBody::Unsubscribe { mailbox } => mailbox::subscribe(conn, env, &mailbox, mailbox::Subscription::Off),
        CommandBody::List { reference, mailbox_wildcard } => {
            list::list(conn, env, &reference, &mailbox_wildcard, extras.list, list::Kind::List)
        }
        CommandBody::Lsub { reference, mailbox_wildcard } => {
            list::list(conn, env, &reference, &mailbox_wildcard, None, list::Kind::Lsub)
        }
        CommandBody::Status { mailbox, item_names } => status::status(conn, env, &mailbox, item_names.as_ref()),
        CommandBody::Append { mailbox, flags, date, message } => {
            append::append(conn, env, &mailbox, &flags, date.as_ref(), &message)
        }
        CommandBody::Expunge => expunge::expunge(conn, env, None),
        CommandBody::ExpungeUid { sequence_set } => expunge::expunge(conn, env, Some(&sequence_set)),
        CommandBody::Search { charset, criteria, uid } => {
            search::search(conn, env, &tag, charset.as_ref(), criteria.as_ref(), uid, extras.search_return)
        }
        CommandBody::Fetch { sequence_set, macro_or_item_names, uid, modifiers } => {
            fetch::fetch(conn, env, &sequence_set, macro_or_item_names, uid, &modifiers)
        }
        CommandBody::Store { sequence_set, kind, response, flags, uid, modifiers } => {
            let args =
                store::StoreArgs { set: &sequence_set, kind, response, flags: &flags, uid, modifiers: &modifiers };
            store::store(conn, env, args)
        }
        CommandBody::Copy { sequence_set, mailbox, uid } => {
            copy_move::copy_move(conn, env, &sequence_set, &mailbox, uid, copy_move::Kind::Copy)
        }
        CommandBody::Move { sequence_set, mailbox, uid } => {
            copy_move::copy_move(conn, env, &sequence_set, &mailbox, uid, copy_move::Kind::Move)
        }
        CommandBody::Idle => idle::idle(conn),
        CommandBody::Sort { .. } => not_implemented("SORT"),
        CommandBody::Thread { .. } => not_implemented("THREAD"),
        CommandBody::Compress { .. } => info::compress(conn),
        CommandBody::GetQuota { .. } | CommandBody::GetQuotaRoot { .. } | CommandBody::SetQuota { .. } => {
            not_implemented("QUOTA")
        }
    }
}

fn not_implemented(what: &str) -> Result<Done, CmdError> {
    Err(CmdError::No(format!("[CANNOT] not implemented yet: {what}")))
}

/// The state table (RFC 9051 6.1-6.4).
fn allowed(body: &CommandBody<'_>, state: State) -> bool {
    use State::*;
    match body {
        CommandBody::Capability | CommandBody::Noop | CommandBody::Logout | CommandBody::Id { .. } => true,
        CommandBody::StartTLS | CommandBody::Login { .. } | CommandBody::Authenticate { .. } => {
            state == NotAuthenticated
        }
        CommandBody::Check
        | CommandBody::Close
        | CommandBody::Unselect
        | CommandBody::Expunge
        | CommandBody::ExpungeUid { .. }
        | CommandBody::Search { .. }
        | CommandBody::Sort { .. }
        | CommandBody::Thread { .. }
        | CommandBody::Fetch { .. }
        | CommandBody::Store { .. }
        | CommandBody::Copy { .. }
        | CommandBody::Move { .. } => state == Selected,
        _ => state != NotAuthenticated,
    }
}

/// The mailbox name a client sent, as stored (UTF-8): modified UTF-7 is
/// decoded unless the client enabled UTF-8 names (RFC 6855 3).
pub fn mailbox_name(conn: &ImapConn, mailbox: &Mailbox<'_>) -> Result<String, CmdError> {
    let raw = match mailbox {
        Mailbox::Inbox => return Ok("INBOX".to_string()),
        Mailbox::Other(other) => other.as_ref(),
    };
    let text = std::str::from_utf8(raw).map_err(|_| CmdError::Bad("Mailbox name is not UTF-8".into()))?;
    if conn.enabled.utf8 || !text.is_ascii() {
        return Ok(text.to_string());
    }
    names::decode_mutf7(text).ok_or_else(|| CmdError::Bad("Invalid modified UTF-7 in mailbox name".into()))
}

/// A stored name as the client expects it on the wire.
pub fn wire_name(conn: &ImapConn, name: &str) -> String {
    if conn.enabled.utf8 {
        name.to_string()
    } else {
        names::encode_mutf7(name)
    }
}

/// The logged-in user (the state table guarantees one).
pub fn user(conn: &ImapConn) -> Result<roost_core::model::UserName, CmdError> {
    conn.session.as_ref().map(|s| s.user.clone()).ok_or_else(|| CmdError::Bad("Not logged in".into()))
}

/// Converts client flags to stored flags; `\Recent` and unknown system flags
/// cannot be stored (RFC 9051 2.3.2).
pub fn stored_flags(
    flags: &[imap_codec::imap_types::flag::Flag<'_>],
) -> Result<Vec<roost_core::model::Flag>, CmdError> {
    let mut out = Vec::with_capacity(flags.len());
    for flag in flags {
        let text = flag.to_string();
        let flag = roost_core::model::Flag::parse(&text)
            .ok_or_else(|| CmdError::Bad(format!("Flag {text} cannot be stored")))?;
        if !out.contains(&flag) {
            out.push(flag);
        }
    }
    Ok(out)
}
