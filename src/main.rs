//! The `sevroute` binary: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sevroute::cli::{self, Format};

/// mimalloc (its 2.x line, which returns freed pages to the system after
/// 10 ms): under a storm of alerts glibc's malloc spent a third of the
/// server's CPU merging freed small blocks (`malloc_consolidate`) each
/// time a request's large buffers came and went; see docs/performance.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// SLO-driven severity classifier and alert router.
#[derive(Parser)]
#[command(name = "sevroute", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: HTTP ingest, incidents, delivery.
    Serve {
        /// A settings file (TOML) layered over the embedded defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Replay recorded alerts (JSON lines, any ingest format) on a simulated
    /// clock, without delivering: every decision and a summary.
    Replay {
        /// Rule folder or files.
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
        /// The recording: one payload per line, optionally wrapped as
        /// {"at": TIME, "source": FORMAT, "body": PAYLOAD}.
        file: PathBuf,
        /// Seconds an alert without endsAt stays firing (Alertmanager's resolve_timeout).
        #[arg(long, default_value_t = 300)]
        resolve_timeout_secs: u64,
        /// Print only the summary.
        #[arg(long)]
        quiet: bool,
    },
    /// Dead letters and other deliveries of a running server: list them,
    /// or replay them with their original webhook-id.
    Deliveries {
        /// The server's base URL. Default: the embedded listen address.
        #[arg(long, global = true)]
        url: Option<String>,
        /// The admin token. Default: $SEVROUTE__AUTH__ADMIN_TOKEN.
        #[arg(long, global = true)]
        token: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
        format: Format,
        #[command(subcommand)]
        action: DeliveriesCommand,
    },
    /// Check a rule set and print every problem found.
    Check {
        /// Rule folders (every *.sev file inside) or files. Default: rules/
        paths: Vec<PathBuf>,
        /// Fail (exit 1) on warnings too.
        #[arg(long)]
        deny_warnings: bool,
        /// Treat unset env("VAR") variables as errors, as the service does.
        #[arg(long)]
        require_env: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run rule unit tests (TOML files, or folders of them).
    Test {
        /// Test files or folders.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the SLOs of a Sloth, Pyrra or OpenSLO file as `slo` blocks and
    /// multiwindow burn rules (rules language, to stdout).
    Import {
        /// The tool the file was written for.
        #[arg(value_enum)]
        format: cli::import::ImportFormat,
        /// The YAML file (one or more documents).
        file: PathBuf,
    },
    /// Classify the alerts in a JSON file and explain the verdict.
    Explain {
        /// Rule folder or files.
        #[arg(long, default_value = "rules")]
        rules: Vec<PathBuf>,
        /// One alert object, a list (Alertmanager API v2) or an Alertmanager webhook body.
        alert: PathBuf,
        /// Burn rate of an SLO over a window: SLO:WINDOW=VALUE (repeatable).
        #[arg(long = "burn", value_name = "SLO:WINDOW=VALUE")]
        burns: Vec<String>,
        /// Error budget left: SLO=FRACTION or SLO=PERCENT% (repeatable).
        #[arg(long = "budget", value_name = "SLO=FRACTION")]
        budgets: Vec<String>,
        /// Evaluation time, RFC 3339. Default: now.
        #[arg(long)]
        at: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum DeliveriesCommand {
    /// List deliveries, newest first.
    List {
        /// Only this status: pending, delivered, dead, skipped, failed_over.
        #[arg(long)]
        status: Option<String>,
        /// Only those finished at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Replay a dead or failed-over delivery, or every one since a time.
    Retry {
        /// The delivery's id.
        #[arg(required_unless_present = "since", conflicts_with = "since")]
        id: Option<i64>,
        /// Every dead or failed-over delivery finished at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
}

/// Turns transparent huge pages off for this process. mimalloc reserves
/// its arena with `MADV_HUGEPAGE`, then gives freed memory back in pieces
/// of about 2 MiB; on a kernel in THP `madvise` mode each piece used again
/// came back as a fresh huge page to zero (and compact for), a tenth of
/// the server's CPU while new alerts poured in, and more resident memory
/// per alert (docs/performance.md). Faults after this call get 4 KiB pages.
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory
    // of ours; a kernel without it answers EINVAL, which changes nothing.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> anyhow::Result<ExitCode> {
    without_transparent_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("SEVROUTE_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(cli::serve::run(config))
        }
        Command::Check {
            paths,
            deny_warnings,
            require_env,
            format,
        } => Ok(cli::check::run(&cli::check::CheckOptions {
            paths,
            deny_warnings,
            require_env,
            format,
        })),
        Command::Test { files } => cli::rule_tests::run(&files),
        Command::Import { format, file } => Ok(cli::import::run(format, &file)),
        Command::Deliveries {
            url,
            token,
            format,
            action,
        } => cli::deliveries::run(&cli::deliveries::Options {
            url,
            token,
            format,
            action: match action {
                DeliveriesCommand::List {
                    status,
                    since,
                    limit,
                } => cli::deliveries::Action::List {
                    status,
                    since,
                    limit,
                },
                DeliveriesCommand::Retry { id, since } => {
                    cli::deliveries::Action::Retry { id, since }
                }
            },
        }),
        Command::Replay {
            rules,
            file,
            resolve_timeout_secs,
            quiet,
        } => cli::replay::run(&cli::replay::ReplayOptions {
            rules,
            file,
            resolve_timeout_secs,
            quiet,
        }),
        Command::Explain {
            rules,
            alert,
            burns,
            budgets,
            at,
            format,
        } => cli::explain::run(&cli::explain::ExplainOptions {
            rules,
            alert_file: alert,
            burns,
            budgets,
            at,
            format,
        }),
    }
}
