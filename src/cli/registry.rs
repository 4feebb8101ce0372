//! `driftwatch registry`: work on the model registry file.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use super::Failure;
use crate::registry::Date;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: RegistryCommand,
}

#[derive(Subcommand, Debug)]
enum RegistryCommand {
    /// Import model prices, context windows and deprecation dates from another table into a
    /// registry file (created when missing; hand-written fields such as fallbacks and evals
    /// are kept). Exit code 2, naming the entry at fault, when the input is bad.
    #[command(after_help = IMPORT_EXAMPLES)]
    Import(ImportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Source {
    /// LiteLLM's `model_prices_and_context_window.json`.
    Litellm,
}

#[derive(clap::Args, Debug)]
struct ImportArgs {
    /// The table's format.
    source: Source,
    /// The file to import.
    file: PathBuf,
    /// The registry file to write or merge into.
    #[arg(long)]
    into: PathBuf,
    /// First day the imported prices apply (YYYY-MM-DD, UTC) [default: today].
    #[arg(long)]
    effective: Option<String>,
    /// Import only this entry (repeatable) [default: every entry with per-token prices].
    #[arg(long = "model")]
    models: Vec<String>,
}

const IMPORT_EXAMPLES: &str = r#"Examples:
  driftwatch registry import litellm model_prices_and_context_window.json --into models.yaml
  driftwatch registry import litellm prices.json --into models.yaml --effective 2026-12-01 --model gpt-4o --model gpt-4o-mini"#;

pub async fn run(args: Args) -> Result<(), Failure> {
    match args.command {
        RegistryCommand::Import(a) => import(a),
    }
}

fn import(a: ImportArgs) -> Result<(), Failure> {
    let config = |m: String| Failure::Config(anyhow::anyhow!(m));
    let effective = match &a.effective {
        Some(d) => Date::parse(d)
            .ok_or_else(|| config(format!("--effective {d:?}: not a date; write YYYY-MM-DD")))?,
        None => Date::of_ms(crate::time::now_ms()),
    };
    let Source::Litellm = a.source;
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| config(format!("{}: {e}", a.file.display())))?;
    let existing = match std::fs::read_to_string(&a.into) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(config(format!("{}: {e}", a.into.display()))),
    };
    let (out, report) = crate::registry::litellm::import(
        &a.file.display().to_string(),
        &text,
        existing.as_deref(),
        &a.into,
        effective,
        &a.models,
    )
    .map_err(|e| config(e.to_string()))?;
    if let Some(dir) = a.into.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Runtime(anyhow::anyhow!("{}: {e}", dir.display())))?;
    }
    crate::durable::write_atomic(&a.into, out.as_bytes()).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "{} {}: {}",
            e.op,
            e.path.display(),
            e.source
        ))
    })?;
    println!(
        "{}: {} added, {} updated, {} unchanged, {} skipped (no per-token prices); prices effective {effective}",
        a.into.display(),
        report.added,
        report.updated,
        report.unchanged,
        report.skipped
    );
    Ok(())
}
