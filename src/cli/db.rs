//! `satflow db copy --from URL --to URL` (move every table into an empty database, verified)
//! and `satflow db backup PATH` (a consistent snapshot of the running SQLite database).
//!
//! A database URL may hold a password: it is never printed, only its scheme and host.

use std::path::{Path, PathBuf};

use super::{Outcome, open_config, runtime};
use crate::config::{Database, PostgresUrl};
use crate::store::{CopyError, Store};

#[derive(Debug, clap::Args)]
pub struct DbArgs {
    #[command(subcommand)]
    pub action: DbCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DbCommand {
    /// Copy every table into an empty database in one transaction, verified by row counts and money sums
    Copy {
        /// The database to copy from, e.g. sqlite://satflow.db
        #[arg(long)]
        from: String,
        /// The empty database to copy into, e.g. sqlite://new.db
        #[arg(long)]
        to: String,
    },
    /// Write a consistent snapshot of the configured SQLite database to PATH (a new file)
    Backup {
        /// Where to write the snapshot; must not exist
        path: PathBuf,
    },
}

/// A URL as it may be shown: its scheme and what follows the `@` (never a password).
fn shown(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{host}")
        }
        None => "(not a URL)".into(),
    }
}

/// `url` (of `--flag`) as a database, or why not.
fn parse_url(flag: &str, url: &str) -> Result<Database, String> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"));
    match path {
        Some(path) if !path.is_empty() && !path.starts_with(':') => {
            let path = path.split('?').next().unwrap_or(path);
            Ok(Database::Sqlite(PathBuf::from(path)))
        }
        _ if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            match url::Url::parse(url) {
                Ok(parsed) if parsed.host_str().is_some_and(|h| !h.is_empty()) => {
                    Ok(Database::Postgres(PostgresUrl::new(url.to_string())))
                }
                _ => Err(format!(
                    "--{flag} {}: not a PostgreSQL URL with a host; accepted: postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                    shown(url)
                )),
            }
        }
        _ => Err(format!(
            "--{flag} {}: not a database URL satflow can open; accepted: sqlite://PATH, postgres://USER:PASSWORD@HOST:PORT/DATABASE",
            shown(url)
        )),
    }
}

pub fn run(config_path: &Path, args: &DbArgs) -> anyhow::Result<Outcome> {
    match &args.action {
        DbCommand::Copy { from, to } => copy(from, to),
        DbCommand::Backup { path } => backup(config_path, path),
    }
}

fn copy(from: &str, to: &str) -> anyhow::Result<Outcome> {
    let (source, target) = match (parse_url("from", from), parse_url("to", to)) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return Ok(Outcome::UserError);
        }
    };
    let Database::Sqlite(source_path) = &source else {
        eprintln!(
            "error: --from {}: only a SQLite database can be copied from (for PostgreSQL, use pg_dump)",
            shown(from)
        );
        return Ok(Outcome::UserError);
    };
    if !source_path.is_file() {
        eprintln!(
            "error: --from {}: there is no database file there",
            shown(from)
        );
        return Ok(Outcome::UserError);
    }
    if let (Database::Sqlite(a), Database::Sqlite(b)) = (&source, &target)
        && a.canonicalize().ok() == b.canonicalize().ok()
    {
        eprintln!("error: --to {}: that is the source itself", shown(to));
        return Ok(Outcome::UserError);
    }
    runtime()?.block_on(async {
        let source = Store::open(&source).await?;
        let target = Store::open(&target).await?;
        let result = source.copy_into(&target).await;
        source.close().await;
        target.close().await;
        match result {
            Ok(tables) => {
                let rows: i64 = tables.iter().map(|t| t.rows).sum();
                for t in &tables {
                    let sums = t
                        .sums
                        .iter()
                        .map(|(c, s)| format!("{c} Σ {s}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    println!("  {:<26} {:>8} rows  {sums}", t.table, t.rows);
                }
                println!(
                    "copied {rows} rows of {} tables from {} to {}; row counts and money sums verified",
                    tables.len(),
                    shown(from),
                    shown(to)
                );
                Ok(Outcome::Success)
            }
            Err(
                err @ (CopyError::TargetNotEmpty { .. }
                | CopyError::MissingTable { .. }
                | CopyError::Exists { .. }),
            ) => {
                eprintln!("error: --to {}: {err}", shown(to));
                Ok(Outcome::UserError)
            }
            Err(err) => {
                eprintln!("error: {err}");
                Ok(Outcome::Failure)
            }
        }
    })
}

fn backup(config_path: &Path, path: &Path) -> anyhow::Result<Outcome> {
    let Some(config) = open_config(config_path) else {
        return Ok(Outcome::UserError);
    };
    if path.exists() {
        eprintln!(
            "error: {} exists already; name a new file (satflow never overwrites a backup)",
            path.display()
        );
        return Ok(Outcome::UserError);
    }
    runtime()?.block_on(async {
        let store = Store::open(&config.database).await?;
        let result = store.backup_to(path).await;
        store.close().await;
        match result {
            Ok(()) => {
                let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                println!("backup written to {} ({bytes} bytes)", path.display());
                Ok(Outcome::Success)
            }
            Err(err @ CopyError::Exists { .. }) => {
                eprintln!("error: {err}");
                Ok(Outcome::UserError)
            }
            Err(err) => {
                eprintln!("error: cannot write the backup: {err}");
                Ok(Outcome::Failure)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            shown("postgres://satflow:hunter2@db.example:5432/satflow"),
            "postgres://db.example:5432/satflow"
        );
        let err = parse_url("to", "mysql://u:hunter2@h/db").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("--to mysql://h/db"), "{err}");
    }
}
