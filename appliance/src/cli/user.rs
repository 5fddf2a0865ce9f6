//! `roost user add|list|passwd|remove`. Passwords come from a terminal prompt
//! or, with `--password-stdin`, from the first line of standard input; never
//! from the command line, where other users could see them in `ps`.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use roost_core::model::UserName;

use crate::cli::{now_ms, open_store, Global};

/// `roost user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user with the default mailboxes.
    Add(PasswordArgs),
    /// List users.
    List,
    /// Change a user's password.
    Passwd(PasswordArgs),
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
            let hash = read_new_password(&user, args.password_stdin)?;
            store.write(now_ms(), |w| w.add_user(&user, &hash))?;
            println!("added user {user}");
        }
        UserCommand::List => {
            for user in store.users()? {
                println!("{}\t{} mailboxes\t{} messages", user.name, user.mailboxes, user.messages);
            }
        }
        UserCommand::Passwd(args) => {
            let user = parse_name(&args.name)?;
            if !store.user_exists(&user)? {
                bail!("no user {user}");
            }
            let hash = read_new_password(&user, args.password_stdin)?;
            store.write(now_ms(), |w| w.set_password(&user, &hash))?;
            println!("changed the password of {user}");
        }
        UserCommand::Remove(args) => {
            let user = parse_name(&args.name)?;
            store.write(now_ms(), |w| w.remove_user(&user)).with_context(|| format!("cannot remove {user}"))?;
            println!("removed user {user} and their mail");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_name(name: &str) -> Result<UserName> {
    Ok(crate::ops::parse_user_name(name)?)
}

/// Reads a new password, checks the policy and returns its hash.
fn read_new_password(user: &UserName, from_stdin: bool) -> Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {user}: ")).context("cannot read password")?;
        let second = rpassword::prompt_password("Repeat it: ").context("cannot read password")?;
        if first != second {
            bail!("the passwords do not match");
        }
        first
    } else {
        bail!("no terminal to ask for the password on: pass --password-stdin and write it to standard input");
    };
    Ok(crate::ops::hash_new_password(user, &password)?)
}
