//! `roost user add|list|passwd|recover|remove`. Passwords come from a terminal
//! prompt or, with `--password-stdin`, from lines of standard input; never from
//! the command line, where other users could see them in `ps`.
//!
//! Each user has an age identity (roost_core::crypto): `add` creates it and
//! prints the recovery key once; `passwd` needs the current password (it
//! re-wraps the identity); `recover` sets a new password with the recovery key.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{bail, format_err, Context, Result};
use clap::{Args, Subcommand};

use roost_core::auth;
use roost_core::crypto::{RecoveryKey, UserKeys};
use roost_core::model::UserName;

use crate::cli::{now_ms, open_store, Global};
use crate::ops;

/// `roost user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user with the default mailboxes.
    Add(PasswordArgs),
    /// List users.
    List,
    /// Change a user's password. Asks for the current one first (standard
    /// input: current password line, then new password line); for a user from
    /// before encryption, only the new one, and creates their key.
    Passwd(PasswordArgs),
    /// Set a new password with the recovery key printed by `user add`
    /// (standard input: recovery key line, then new password line). The
    /// recovery key of another identity of the user's keyring (the user was
    /// created on two devices) folds it in under the current password
    /// instead (then the second line is the current password).
    Recover(PasswordArgs),
    /// Remove a user and all their mail.
    Remove(NameArg),
}

/// A user name and where the password comes from.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Login name (e.g. `alice` or `alice@example.org`).
    pub name: String,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// Just a user name.
#[derive(Debug, Args)]
pub struct NameArg {
    /// Login name.
    pub name: String,
}

/// Runs `roost user ...`.
pub fn run(global: &Global, command: UserCommand) -> Result<ExitCode> {
    let ctx = global.resolve()?;
    let mut store = open_store(&ctx.data_dir)?;
    match command {
        UserCommand::Add(args) => {
            let user = parse_name(&args.name)?;
            if store.user_exists(&user)? {
                bail!("user {user} already exists");
            }
            let mut input = Input::new(args.password_stdin);
            let password = input.new_password(&user)?;
            let hash = auth::hash_password(&password, &mut rand::rngs::OsRng);
            let (keys, recovery) = UserKeys::generate(&password, &mut rand::rngs::OsRng);
            store.write(now_ms(), |w| {
                w.add_user(&user, &hash)?;
                w.set_user_keys(&user, &hash, &keys)
            })?;
            outln!("added user {user}");
            outln!("recovery key (shown once; keep it offline, it resets the password): {recovery}");
        }
        UserCommand::List => {
            for user in store.users()? {
                outln!("{}\t{} mailboxes\t{} messages", user.name, user.mailboxes, user.messages);
            }
        }
        UserCommand::Passwd(args) => {
            let user = parse_name(&args.name)?;
            if !store.user_exists(&user)? {
                bail!("no user {user}");
            }
            let mut input = Input::new(args.password_stdin);
            let secrets = match store.user_keys(&user)? {
                Some(keys) => {
                    let current = input.secret(&format!("Current password for {user}: "), "the current password")?;
                    let keyring = store.user_keyring(&user)?;
                    let unlocked = ops::unlock_keyring(&user, &keys, &keyring, &current)?;
                    let password = input.new_password(&user)?;
                    ops::rewrapped_secrets(&user, &keys, &keyring, unlocked, &password)?
                }
                // A user from before encryption: their identity is created now;
                // mail stored before stays as it was (docs/security.md).
                None => {
                    let password = input.new_password(&user)?;
                    ops::changed_password_secrets(&user, None, &[], None, &password)?
                }
            };
            if let Some(recovery) = &secrets.recovery {
                outln!("recovery key (shown once; keep it offline, it resets the password): {recovery}");
            }
            store.write(now_ms(), |w| w.set_user_keyring(&user, &secrets.hash, &secrets.keys, &secrets.also))?;
            outln!("changed the password of {user}");
            warn_locked(&user, &secrets.locked);
        }
        UserCommand::Recover(args) => {
            let user = parse_name(&args.name)?;
            let Some(keys) = store.user_keys(&user)? else {
                bail!("no user {user} with a recovery key");
            };
            let keyring = store.user_keyring(&user)?;
            let mut input = Input::new(args.password_stdin);
            let typed = input.secret(&format!("Recovery key for {user}: "), "the recovery key")?;
            let recovery: RecoveryKey = typed.parse()?;
            if let Ok(key) = keys.recover(user.as_str(), &recovery) {
                // The current identity: a new password for it (and for nothing
                // else: the other identities' wraps need the old password).
                let password = input.new_password(&user)?;
                let unlocked = roost_core::crypto::KeyringUnlock {
                    key,
                    locked: keyring
                        .iter()
                        .filter(|k| k.public_key != keys.public_key)
                        .map(|k| k.public_key.clone())
                        .collect(),
                };
                let secrets = ops::rewrapped_secrets(&user, &keys, &keyring, unlocked, &password)?;
                store.write(now_ms(), |w| w.set_user_keyring(&user, &secrets.hash, &secrets.keys, &secrets.also))?;
                outln!("set a new password for {user} with the recovery key");
                warn_locked(&user, &secrets.locked);
                return Ok(ExitCode::SUCCESS);
            }
            // Another identity of the keyring (the user was created on two
            // devices): fold it in under the current password.
            let Some((other, key)) = keyring
                .iter()
                .filter(|k| k.public_key != keys.public_key)
                .find_map(|k| k.recover(user.as_str(), &recovery).ok().map(|key| (k, key)))
            else {
                bail!("this is not a recovery key of {user}");
            };
            outln!("this recovery key opens {user}'s other identity {}", other.public_key);
            let current = input.secret(&format!("Current password for {user}: "), "the current password")?;
            let mut unlocked = ops::unlock_keyring(&user, &keys, &keyring, &current)?;
            unlocked.key = unlocked.key.with(key);
            unlocked.locked.retain(|public_key| *public_key != other.public_key);
            let secrets = ops::rewrapped_secrets(&user, &keys, &keyring, unlocked, &current)?;
            store.write(now_ms(), |w| w.set_user_keyring(&user, &secrets.hash, &secrets.keys, &secrets.also))?;
            outln!(
                "folded identity {} into the keyring of {user}: the current password opens its mail",
                other.public_key
            );
            warn_locked(&user, &secrets.locked);
        }
        UserCommand::Remove(args) => {
            let user = parse_name(&args.name)?;
            store.write(now_ms(), |w| w.remove_user(&user)).with_context(|| format!("cannot remove {user}"))?;
            outln!("removed user {user} and their mail");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Names the identities a password change could not re-wrap.
fn warn_locked(user: &UserName, locked: &[String]) {
    for public_key in locked {
        eprintln!(
            "roost user: identity {public_key} of {user} is wrapped under another password; its mail opens after \
             `roost user recover {user}` with that identity's recovery key"
        );
    }
}

fn parse_name(name: &str) -> Result<UserName> {
    Ok(crate::ops::parse_user_name(name)?)
}

/// Where secrets come from: successive lines of standard input, or prompts.
pub(crate) struct Input {
    from_stdin: bool,
}

impl Input {
    pub(crate) fn new(from_stdin: bool) -> Input {
        Input { from_stdin }
    }

    /// One secret: the next line of standard input, or a prompt.
    pub(crate) fn secret(&mut self, prompt: &str, what: &str) -> Result<zeroize::Zeroizing<String>> {
        if self.from_stdin {
            let mut line = zeroize::Zeroizing::new(String::new());
            let n = std::io::stdin().lock().read_line(&mut line).with_context(|| format!("cannot read {what}"))?;
            if n == 0 {
                bail!("standard input ended before {what}");
            }
            let trimmed = line.trim_end_matches(['\r', '\n']).len();
            line.truncate(trimmed);
            Ok(line)
        } else if std::io::stdin().is_terminal() {
            Ok(zeroize::Zeroizing::new(
                rpassword::prompt_password(prompt).with_context(|| format!("cannot read {what}"))?,
            ))
        } else {
            bail!("no terminal to ask for {what} on: pass --password-stdin and write it to standard input");
        }
    }

    /// A new password, asked twice on a terminal, checked against the policy.
    fn new_password(&mut self, user: &UserName) -> Result<zeroize::Zeroizing<String>> {
        let password = self.secret(&format!("New password for {user}: "), "the password")?;
        if !self.from_stdin {
            let again = self.secret("Repeat it: ", "the password")?;
            if *again != *password {
                bail!("the passwords do not match");
            }
        }
        auth::check_password_strength(user.as_str(), &password).map_err(|e| format_err!("password refused: {e}"))?;
        Ok(password)
    }
}
