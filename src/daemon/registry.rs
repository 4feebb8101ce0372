//! The model registry in the running daemon: loaded at start (a bad file refuses the
//! start), swapped on SIGHUP (a bad file keeps the registry in use, logged and counted), and
//! every change of an entry against the last registry recorded is written to
//! `registry_changes`.

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::{Finding, Registry, RegistryError};
use crate::storage::registry_log;

/// Why the registry could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistrySetupError {
    #[error("registry.file {}: {} problem(s):\n{}", file.display(), errors.len(), errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        file: std::path::PathBuf,
        errors: Vec<RegistryError>,
    },
    #[error(transparent)]
    Log(#[from] registry_log::RegistryLogError),
}

/// Reads and validates the configured registry; `None` when none is configured. Warnings
/// are logged.
pub fn read(config: &Config) -> Result<Option<(Registry, Vec<Finding>)>, RegistrySetupError> {
    let Some(file) = &config.registry.file else {
        return Ok(None);
    };
    Registry::load(file)
        .map(Some)
        .map_err(|errors| RegistrySetupError::Invalid {
            file: file.clone(),
            errors,
        })
}

fn state_dir(config: &Config) -> std::path::PathBuf {
    config
        .storage
        .data_dir
        .join(crate::storage::layout::STATE_DIR)
}

/// Records what changed against the last registry recorded (a first start records nothing:
/// there is nothing to compare with), then makes `r` the one recorded.
fn record_changes(
    config: &Config,
    r: &Registry,
    metrics: &Metrics,
) -> Result<(), RegistrySetupError> {
    let state = state_dir(config);
    let previous = registry_log::load_snapshot(&state)?;
    if previous.as_deref() == Some(r.models()) {
        return Ok(());
    }
    if let Some(prev) = previous {
        let changes = crate::registry::changes::diff(&prev, r.models());
        for c in &changes {
            tracing::info!(model = %c.model, field = %c.field, old = c.old.as_deref().unwrap_or("-"), new = c.new.as_deref().unwrap_or("-"), "registry entry changed");
        }
        registry_log::record(
            &config.storage.data_dir,
            &changes,
            crate::time::now_ms(),
            r.file(),
        )?;
        metrics.registry_changes.inc_by(changes.len() as u64);
    }
    registry_log::save_snapshot(&state, r.models())?;
    Ok(())
}

/// The registry at start: read, warnings logged, changes since the last run recorded.
pub fn start(
    config: &Config,
    metrics: &Metrics,
) -> Result<Option<Arc<Registry>>, RegistrySetupError> {
    let Some((r, warnings)) = read(config)? else {
        return Ok(None);
    };
    for w in &warnings {
        tracing::warn!("{w}");
    }
    record_changes(config, &r, metrics)?;
    metrics.registry_models.set(r.models().len() as i64);
    tracing::info!(file = %r.file().display(), models = r.models().len(), "model registry loaded");
    Ok(Some(Arc::new(r)))
}

/// SIGHUP: the new registry, or `None` when the file is bad (logged and counted; the
/// caller keeps the one in use) or none is configured.
pub fn reload(config: &Config, metrics: &Metrics) -> Option<Arc<Registry>> {
    match read(config) {
        Ok(Some((r, warnings))) => {
            for w in &warnings {
                tracing::warn!("{w}");
            }
            if let Err(e) = record_changes(config, &r, metrics) {
                tracing::error!(error = %e, "registry changes not recorded");
            }
            metrics.registry_models.set(r.models().len() as i64);
            tracing::info!(file = %r.file().display(), models = r.models().len(), "model registry reloaded (SIGHUP)");
            Some(Arc::new(r))
        }
        Ok(None) => None,
        Err(e) => {
            metrics.registry_reload_failures.inc();
            tracing::error!(error = %e, "SIGHUP: registry not reloaded; the previous registry stays in use");
            None
        }
    }
}
