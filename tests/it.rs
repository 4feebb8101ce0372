//! The one integration-test binary. Modules live in `tests/it/`.

#[path = "it/support.rs"]
mod support;

#[path = "it/alerts_e2e.rs"]
mod alerts_e2e;
#[path = "it/analyses.rs"]
mod analyses;
#[path = "it/bad_input.rs"]
mod bad_input;
#[path = "it/build_features.rs"]
mod build_features;
#[path = "it/change_scenarios.rs"]
mod change_scenarios;
#[path = "it/cli.rs"]
mod cli;
#[path = "it/compose.rs"]
mod compose;
#[path = "it/delivery_e2e.rs"]
mod delivery_e2e;
#[path = "it/detection.rs"]
mod detection;
#[path = "it/exactly_once.rs"]
mod exactly_once;
#[path = "it/fallback.rs"]
mod fallback;
#[path = "it/gate.rs"]
mod gate;
#[path = "it/late_scores.rs"]
mod late_scores;
#[path = "it/layering.rs"]
mod layering;
#[path = "it/mock_pipeline.rs"]
mod mock_pipeline;
#[path = "it/notify_channels.rs"]
mod notify_channels;
#[path = "it/query.rs"]
mod query;
#[path = "it/registry.rs"]
mod registry;
#[path = "it/registry_scenarios.rs"]
mod registry_scenarios;
#[path = "it/replay.rs"]
mod replay;
#[path = "it/rules_check.rs"]
mod rules_check;
#[path = "it/schema.rs"]
mod schema;
#[path = "it/snapshots.rs"]
mod snapshots;
#[path = "it/tansu.rs"]
mod tansu;
