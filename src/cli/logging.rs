//! Log output on stderr: human lines by default, JSON lines with `--log-format json`.
//! `RUST_LOG` overrides the level chosen with -v/-q. Colours only on a terminal, and never
//! with `NO_COLOR` set (<https://no-color.org>): a log piped to a file or a pager must not be
//! full of escape codes.
//!
//! The filter is `Targets` (`target=level` directives, comma-separated), not `EnvFilter`: the
//! latter links a regex engine and its Unicode tables for span and field filters nobody here
//! uses, about half a megabyte of a binary meant for a Raspberry Pi.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

pub fn init(format: LogFormat, verbose: u8, quiet: u8) {
    let level = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref(), level);
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_writer(std::io::stderr);
    // A second init (tests calling `cli::main` twice) keeps the first subscriber.
    let _ = match format {
        LogFormat::Human => builder.finish().with(filter).try_init(),
        LogFormat::Json => builder.json().finish().with(filter).try_init(),
    };
}

/// `RUST_LOG` when it is set and readable as `target=level` directives; otherwise satflow's own
/// lines at `level` and everyone else's warnings.
fn filter(rust_log: Option<&str>, level: &str) -> Targets {
    rust_log
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| {
            format!("satflow={level},warn")
                .parse()
                .unwrap_or_else(|_| Targets::new())
        })
}

/// Whether to colour output on a stream: only on a terminal, and not when `NO_COLOR` is set to
/// anything but the empty string.
pub fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_overrides_the_level_unless_unreadable() {
        use tracing::Level;
        let default = filter(None, "info");
        assert!(default.would_enable("satflow::engine", &Level::INFO));
        assert!(!default.would_enable("satflow::engine", &Level::DEBUG));
        assert!(!default.would_enable("sqlx::query", &Level::INFO));
        assert!(default.would_enable("sqlx::query", &Level::WARN));
        let debug = filter(Some("satflow=debug,sqlx=info"), "info");
        assert!(debug.would_enable("satflow::store", &Level::DEBUG));
        assert!(debug.would_enable("sqlx::query", &Level::INFO));
        let unreadable = filter(Some("satflow=loud"), "warn");
        assert!(!unreadable.would_enable("satflow", &Level::INFO));
        assert!(unreadable.would_enable("satflow", &Level::WARN));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".as_ref())));
        assert!(!colour(true, Some("1".as_ref())));
        assert!(!colour(false, None));
    }
}
