//! `sevroute serve [--config FILE]`: load settings and rules, open the
//! store, start the pipeline, the delivery worker and the HTTP server, and
//! run until SIGINT/SIGTERM. SIGHUP (or `POST /-/reload`) re-reads the
//! rules. Shutdown stops accepting, finishes in-flight requests and leaves
//! undelivered work in the store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::cli::check::report;
use crate::cli::{Format, failed};
use crate::config::Settings;
use crate::deliver::backoff::RetryPolicy;
use crate::deliver::sender::{WebhookSender, install_crypto_provider};
use crate::deliver::worker::{Worker, WorkerSettings};
use crate::ingest::{AppState, Limits, router};
use crate::metrics::{Metrics, ReloadOutcome};
use crate::pipeline::{Clock, Pipeline, PipelineSettings, SystemClock};
use crate::prometheus_source::PrometheusSource;
use crate::rules::load_paths;
use crate::slo::EngineConfig;
use crate::store::Store;
use crate::store::sqlite::SqliteStore;

/// Runs the service until a shutdown signal.
pub async fn run(config: Option<PathBuf>) -> Result<ExitCode> {
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sevroute: the configuration is invalid:\n{e}");
            return Ok(failed());
        }
    };
    install_crypto_provider();

    let loaded = load_paths(
        std::slice::from_ref(&settings.rules.path),
        settings.rules.env_policy(),
    );
    if loaded.warning_count() > 0 {
        tracing::warn!(warnings = loaded.warning_count(), diagnostics = %loaded.summary_lines(), "The rule set loaded with warnings.");
    }
    let Some(ruleset) = loaded.ruleset else {
        eprint!("{}", report(&loaded, Format::Text));
        eprintln!(
            "sevroute: the rule set in {} does not check; not starting",
            settings.rules.path.display()
        );
        return Ok(failed());
    };
    let rule_count = ruleset.rules.len();
    let ruleset = Arc::new(ArcSwap::from_pointee(ruleset));

    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&settings.store.path).with_context(|| {
            format!("cannot open the store at {}", settings.store.path.display())
        })?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::new());
    metrics
        .rule_reloads
        .get_or_create(&ReloadOutcome {
            outcome: "success".into(),
        })
        .inc();
    metrics
        .rules_loaded_timestamp
        .set(clock.now().unix_timestamp());

    let (pipeline, router_task) = Pipeline::start(
        store.clone(),
        ruleset.clone(),
        clock.clone(),
        PipelineSettings {
            max_batch: settings.store.group_commit_max_batch,
            max_wait: settings.store.group_commit_max_wait(),
            slo_evaluation: settings.timers.slo_evaluation(),
            slo_hold_down: settings.timers.slo_hold_down(),
            tick: settings.timers.tick(),
            public_url: settings.server.public_url.clone(),
        },
    )?;

    let policy = RetryPolicy {
        initial: settings.delivery.backoff_initial(),
        max: settings.delivery.backoff_max(),
        max_attempts: settings.delivery.max_attempts,
        retry_after_max: settings.delivery.retry_after_max(),
    };
    let worker = Worker {
        store: store.clone(),
        ruleset: ruleset.clone(),
        sender: WebhookSender::new(policy.clone())?,
        policy,
        metrics: metrics.clone(),
        clock: clock.clone(),
        ready: pipeline.deliveries_ready.clone(),
        early: pipeline.early_pages(),
        settings: WorkerSettings {
            concurrency: settings.delivery.workers,
            request_timeout: settings.delivery.request_timeout(),
            poll: Duration::from_secs(1).min(settings.timers.tick()),
            horizon: settings.delivery.horizon(),
            min_penalty: Duration::from_secs(settings.delivery.min_penalty_secs),
            destination_concurrency: settings.delivery.destination_concurrency,
            breaker_failures: settings.delivery.breaker_failures,
            breaker_cooldown: Duration::from_secs(settings.delivery.breaker_cooldown_secs),
        },
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let source = PrometheusSource::new(
        &settings.slo,
        EngineConfig::default(),
        ruleset.clone(),
        pipeline.clone(),
        clock.clone(),
    )?;
    let source_task = tokio::spawn(source.run(stop_rx.clone()));
    let worker_task = tokio::spawn(worker.run(stop_rx));

    let state = Arc::new(AppState {
        pipeline,
        store,
        metrics,
        auth: settings.auth.clone(),
        resolve_timeout: settings.ingest.resolve_timeout(),
        clock,
        rules_path: settings.rules.path.clone(),
        env_policy: settings.rules.env_policy(),
        reload_lock: tokio::sync::Mutex::new(()),
    });
    let app = router(
        state.clone(),
        Limits {
            max_body_bytes: usize::try_from(settings.server.max_body_bytes).unwrap_or(usize::MAX),
            request_timeout: settings.server.request_timeout(),
        },
    );
    let addr = settings.server.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, rules = rule_count, store = %settings.store.path.display(), "sevroute is listening.");
    // Registered before the address is announced, so a HUP that follows
    // the announcement reloads instead of killing the process.
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    let hangups = None;
    let sighup_task = tokio::spawn(reload_on_sighup(state.clone(), hangups));
    // Tests and scripts read the bound address (the port may be 0) here.
    println!("listening on {local}");
    let grace = settings.server.shutdown_grace();
    let (closing_tx, mut closing_rx) = watch::channel(false);
    let mut server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = closing_rx.wait_for(|closing| *closing).await;
            })
            .into_future(),
    );
    tokio::select! {
        result = &mut server => {
            result.context("the HTTP server task failed")?.context("the HTTP server failed")?;
        }
        () = shutdown_signal() => {
            let _ = closing_tx.send(true);
            // In-flight requests get the grace period to finish.
            match tokio::time::timeout(grace, &mut server).await {
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(grace_secs = grace.as_secs(), "In-flight requests outlived the grace period; closing them.");
                    server.abort();
                }
            }
        }
    }
    tracing::info!("Stopped accepting requests; stopping the delivery worker.");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(grace, worker_task).await;
    let _ = tokio::time::timeout(grace, source_task).await;
    // Dropping the last pipeline handle ends the router once it drained.
    sighup_task.abort();
    let _ = sighup_task.await;
    drop(state);
    let _ = tokio::time::timeout(grace, router_task).await;
    tracing::info!("sevroute stopped.");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("A shutdown signal arrived.");
}

#[cfg(unix)]
async fn reload_on_sighup(state: Arc<AppState>, hangups: Option<tokio::signal::unix::Signal>) {
    let Some(mut hangups) = hangups else {
        return;
    };
    while hangups.recv().await.is_some() {
        // The outcome is logged and counted by reload_rules.
        let _ = crate::ingest::reload_rules(&state).await;
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_state: Arc<AppState>, _hangups: Option<()>) {}
