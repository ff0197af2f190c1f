//! `satflow user add NAME --role R | list | remove NAME | passwd NAME | role NAME R`: the
//! dashboard's accounts.
//!
//! A password is asked twice on a terminal (without echo), or read as the first line of stdin
//! when stdin is not a terminal (scripts, `satflow demo`). It must never be printed, logged or
//! accepted on the command line (where `ps` and the shell history would show it).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use serde_json::json;

use super::{Outcome, open_store, runtime};
use crate::store::users::{self, Role, UserName};

#[derive(Debug, clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub action: UserCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add an account; the password is asked twice (or read from stdin when piped)
    Add {
        name: String,
        /// viewer (sees), operator (also retries outbox items, triggers workflows), admin (also manages users)
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Every account with its role
    List {
        /// Print one JSON document instead of text
        #[arg(long)]
        json: bool,
    },
    /// Remove an account and end its sessions
    Remove { name: String },
    /// Set a new password (ends the account's sessions)
    Passwd { name: String },
    /// Change an account's role
    Role {
        name: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse().map_err(|e: users::UnknownRole| e.to_string())
}

pub fn run(config_path: &Path, args: &UserArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let Some(store) = open_store(config_path).await? else {
            return Ok(Outcome::UserError);
        };
        let now = crate::clock::system_now();
        match &args.action {
            UserCommand::Add { name, role } => {
                let name = match UserName::parse(name) {
                    Ok(name) => name,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Ok(Outcome::UserError);
                    }
                };
                if store.user(name.as_str()).await?.is_some() {
                    eprintln!(
                        "error: there is already a user `{name}` (change it with `satflow user passwd` or `satflow user role`)"
                    );
                    return Ok(Outcome::UserError);
                }
                let Some(password) = new_password(&name)? else {
                    return Ok(Outcome::UserError);
                };
                let hash = users::hash_password(&password);
                if store.add_user(&name, *role, &hash, now).await? {
                    audit_user(&store, "user.added", name.as_str(), json!({ "role": role.name() }), now).await?;
                    println!("user {name} added with role {role}");
                    Ok(Outcome::Success)
                } else {
                    eprintln!("error: there is already a user `{name}`");
                    Ok(Outcome::UserError)
                }
            }
            UserCommand::List { json } => {
                let all = store.list_users().await?;
                if *json {
                    println!("{}", serde_json::to_string_pretty(&json!({ "users": all }))?);
                } else if all.is_empty() {
                    println!("no users yet; add one with `satflow user add NAME --role admin`");
                } else {
                    for u in &all {
                        println!(
                            "{:<24} {:<8} added {}",
                            u.name,
                            u.role,
                            u.created_at.format("%Y-%m-%d %H:%M UTC")
                        );
                    }
                }
                Ok(Outcome::Success)
            }
            UserCommand::Remove { name } => {
                if store.remove_user(name).await? {
                    audit_user(&store, "user.removed", name, json!({}), now).await?;
                    println!("user {name} removed; their sessions are ended");
                    Ok(Outcome::Success)
                } else {
                    eprintln!("error: there is no user `{name}` (see `satflow user list`)");
                    Ok(Outcome::UserError)
                }
            }
            UserCommand::Passwd { name } => {
                let Some(user) = store.user(name).await? else {
                    eprintln!("error: there is no user `{name}` (see `satflow user list`)");
                    return Ok(Outcome::UserError);
                };
                let Some(password) = new_password(&user.name)? else {
                    return Ok(Outcome::UserError);
                };
                store
                    .set_password(name, &users::hash_password(&password), now)
                    .await?;
                audit_user(&store, "user.password_changed", name, json!({}), now).await?;
                println!("password of {name} changed; their sessions are ended");
                Ok(Outcome::Success)
            }
            UserCommand::Role { name, role } => {
                if store.set_role(name, *role, now).await? {
                    audit_user(&store, "user.role_changed", name, json!({ "role": role.name() }), now).await?;
                    println!("user {name} now has role {role}");
                    Ok(Outcome::Success)
                } else {
                    eprintln!("error: there is no user `{name}` (see `satflow user list`)");
                    Ok(Outcome::UserError)
                }
            }
        }
    })
}

/// A change of accounts, on the audit log (never the password or its hash).
async fn audit_user(
    store: &crate::store::Store,
    kind: &str,
    name: &str,
    detail: serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let entry = crate::store::audit::NewAudit {
        actor: crate::treasury::audit::cli_actor(),
        kind: kind.into(),
        subject: format!("user/{name}"),
        detail,
    };
    store.audit(&entry, now).await?;
    Ok(())
}

/// A new password for `name`: asked twice on a terminal, else the first line of stdin. `None`
/// (after saying why) when it is refused.
fn new_password(name: &UserName) -> anyhow::Result<Option<String>> {
    let password = if std::io::stdin().is_terminal() {
        let first = ask_hidden(&format!("password for {name}: "))?;
        let second = ask_hidden("the same password again: ")?;
        if first != second {
            eprintln!("error: the two passwords differ; nothing changed");
            return Ok(None);
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if let Err(e) = users::check_new_password(&password) {
        eprintln!("error: {e}; nothing changed");
        return Ok(None);
    }
    Ok(Some(password))
}

/// Reads a line from the terminal with echo off, restoring the terminal afterwards.
fn ask_hidden(prompt: &str) -> anyhow::Result<String> {
    let mut err = std::io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    let _echo = EchoOff::new();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    // ECHONL echoed the newline.
    drop(_echo);
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Turns the terminal's echo off while alive.
struct EchoOff {
    #[cfg(unix)]
    saved: Option<libc::termios>,
}

impl EchoOff {
    #[cfg(unix)]
    fn new() -> EchoOff {
        // SAFETY: termios is plain data; tcgetattr fills it for a valid descriptor or fails.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
            return EchoOff { saved: None };
        }
        let saved = t;
        t.c_lflag &= !libc::ECHO;
        t.c_lflag |= libc::ECHONL;
        // SAFETY: a termios read from the same descriptor, with only the echo flags changed.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) };
        EchoOff { saved: Some(saved) }
    }

    #[cfg(not(unix))]
    fn new() -> EchoOff {
        EchoOff {}
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = &self.saved {
            // SAFETY: restores the termios read in `new` on the same descriptor.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
        }
    }
}
