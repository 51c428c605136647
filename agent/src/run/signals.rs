//! The signals the agent handles: SIGINT/SIGTERM stop it (a second one
//! ends it at once), SIGHUP reloads the in-kernel filters.

use std::sync::{Arc, Mutex};

use mapwatch_config::{CliArgs, Config};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::kernel::filters::Filters;

/// The signals the agent handles, registered before it reports that it is
/// watching: a signal arriving earlier would take its default action (end
/// the process without a flush).
pub(super) struct Signals {
    pub(super) interrupt: Signal,
    pub(super) terminate: Signal,
    pub(super) hangup: Signal,
}

impl Signals {
    /// Registers the handlers; must run inside the runtime.
    pub(super) fn register() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// Waits for SIGINT or SIGTERM; a second one ends the process at once.
pub(super) async fn shutdown_signal(mut int: Signal, mut term: Signal) {
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: detaching probes and flushing (again to force)");
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("mapwatch: second signal, exiting without flushing");
        std::process::exit(130);
    });
}

/// Re-reads the configuration on every SIGHUP and rewrites the in-kernel
/// filters; other settings need a restart, and a bad file keeps the old ones.
pub(super) async fn reload_on_hangup(
    mut hangup: Signal,
    cli: CliArgs,
    mut current: Config,
    filters: Arc<Mutex<Filters>>,
) {
    while hangup.recv().await.is_some() {
        let new = match Config::from_process(&cli) {
            Ok(new) => new,
            Err(error) => {
                tracing::error!(
                    "configuration reload failed, keeping the running filters: {error}"
                );
                continue;
            }
        };
        let applied = filters.lock().map_err(|_| ()).and_then(|mut f| {
            f.apply(&new.filter, &new.rate_limit).map_err(|error| {
                tracing::error!(
                    "configuration reload failed, keeping the running filters: {error}"
                );
            })
        });
        if applied.is_err() {
            continue;
        }
        let mut rest_old = current.clone();
        let mut rest_new = new.clone();
        (rest_old.filter, rest_old.rate_limit) = Default::default();
        (rest_new.filter, rest_new.rate_limit) = Default::default();
        if rest_old != rest_new {
            tracing::warn!(
                "configuration reloaded: filters and rate limit applied; other changes take effect after a restart"
            );
        } else {
            tracing::info!("configuration reloaded: filters and rate limit applied");
        }
        current = new;
    }
}
