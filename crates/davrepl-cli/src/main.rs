//! The `davrepl` command.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use davrepl_cli::{Fatal, Options, Syncer};

#[derive(Parser)]
#[command(
    name = "davrepl",
    version,
    about = "Keep a local folder and a davrepl collection in sync"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Two-way sync of DIR with the collection at URL: local creations, edits, deletes and
    /// renames go up, the server's come down; when both sides changed a file, both versions
    /// are kept. Exit status 0: everything synced; 1: some items failed; 2: usage error.
    Sync {
        /// The local folder (its state lives in DIR/.davrepl/).
        dir: PathBuf,
        /// The collection, e.g. http://127.0.0.1:8080/notes/
        url: String,
        /// User name for HTTP Basic authentication.
        #[arg(long)]
        user: Option<String>,
        /// A file whose first line is the password (or set DAVREPL_PASSWORD).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Show what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep syncing whenever either side changes.
        #[arg(long, conflicts_with = "dry_run")]
        watch: bool,
        /// Only warnings, failures and the summary.
        #[arg(long)]
        quiet: bool,
        /// Transfers in flight at once.
        #[arg(long, default_value_t = 8)]
        jobs: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Sync {
        dir,
        url,
        user,
        password_file,
        dry_run,
        watch,
        quiet,
        jobs,
    } = cli.command;
    let credentials = match credentials(user, password_file) {
        Ok(c) => c,
        Err(m) => {
            eprintln!("davrepl: {m}");
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        dir,
        url,
        credentials,
        dry_run,
        quiet,
        concurrency: jobs,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("davrepl: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = rt.block_on(async move {
        let syncer = Arc::new(Syncer::open(&opts)?);
        if watch {
            return davrepl_cli::watch::watch(syncer).await;
        }
        let summary = syncer.sync_once().await?;
        if dry_run {
            for line in &summary.planned {
                println!("{line}");
            }
            println!(
                "dry run: {} actions planned, nothing changed",
                summary.planned.len()
            );
        }
        Ok(!summary.failures.is_empty() || (!summary.converged && !dry_run))
    });
    match outcome {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(1),
        Err(Fatal::Usage(m)) => {
            eprintln!("davrepl: {m}");
            ExitCode::from(2)
        }
        Err(Fatal::Failed(m)) => {
            eprintln!("davrepl: {m}");
            ExitCode::from(1)
        }
    }
}

fn credentials(
    user: Option<String>,
    password_file: Option<PathBuf>,
) -> Result<Option<(String, String)>, String> {
    let password = match password_file {
        Some(f) => Some(
            std::fs::read_to_string(&f)
                .map_err(|e| format!("{}: {e}", f.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        ),
        None => std::env::var("DAVREPL_PASSWORD").ok(),
    };
    match (user, password) {
        (Some(u), Some(p)) => Ok(Some((u, p))),
        (Some(_), None) => Err("--user needs --password-file or DAVREPL_PASSWORD".into()),
        (None, Some(_)) => Err("a password without --user".into()),
        (None, None) => Ok(None),
    }
}
