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
    /// (standard input: recovery key line, then new password line).
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
            let keys = match store.user_keys(&user)? {
                Some(keys) => {
                    let current = input.secret(&format!("Current password for {user}: "), "the current password")?;
                    let key = keys
                        .unlock(user.as_str(), &current)
                        .map_err(|_| format_err!("the current password of {user} is wrong"))?;
                    let password = input.new_password(&user)?;
                    let keys = keys.rewrap(&key, &password, &mut rand::rngs::OsRng)?;
                    (password, keys)
                }
                // A user from before encryption: their identity is created now;
                // mail stored before stays as it was (docs/security.md).
                None => {
                    let password = input.new_password(&user)?;
                    let (keys, recovery) = UserKeys::generate(&password, &mut rand::rngs::OsRng);
                    outln!("recovery key (shown once; keep it offline, it resets the password): {recovery}");
                    (password, keys)
                }
            };
            let hash = auth::hash_password(&keys.0, &mut rand::rngs::OsRng);
            store.write(now_ms(), |w| w.set_user_keys(&user, &hash, &keys.1))?;
            outln!("changed the password of {user}");
        }
        UserCommand::Recover(args) => {
            let user = parse_name(&args.name)?;
            let Some(keys) = store.user_keys(&user)? else {
                bail!("no user {user} with a recovery key");
            };
            let mut input = Input::new(args.password_stdin);
            let typed = input.secret(&format!("Recovery key for {user}: "), "the recovery key")?;
            let recovery: RecoveryKey = typed.parse()?;
            let key = keys
                .recover(user.as_str(), &recovery)
                .map_err(|_| format_err!("this is not the recovery key of {user}"))?;
            let password = input.new_password(&user)?;
            let keys = keys.rewrap(&key, &password, &mut rand::rngs::OsRng)?;
            let hash = auth::hash_password(&password, &mut rand::rngs::OsRng);
            store.write(now_ms(), |w| w.set_user_keys(&user, &hash, &keys))?;
            outln!("set a new password for {user} with the recovery key");
        }
        UserCommand::Remove(args) => {
            let user = parse_name(&args.name)?;
            store.write(now_ms(), |w| w.remove_user(&user)).with_context(|| format!("cannot remove {user}"))?;
            outln!("removed user {user} and their mail");
        }
    }
    Ok(ExitCode::SUCCESS)
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
