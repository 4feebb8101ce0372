//! SQL over the history: DataFusion over the Hive-partitioned Parquet tables (`events`,
//! `windows`, `alerts`, `quarantine`), read-only by construction, with two functions that
//! re-merge the window sketches:
//!
//! - `hist_merge(<m>_hist)` — aggregate: the exact merge of HDR histograms (any grouping,
//!   any time range), as a histogram again;
//! - `hist_quantile(hist, q)` — scalar: the value at quantile `q` of a histogram, in the
//!   histogram's units (latency and TTFT in µs, cost in µUSD, tokens as is), with the same
//!   definition as the `<m>_p99` columns.
//!
//! So "P99 by model per day over a month" is one query over `windows`, without raw events:
//! `SELECT request_model, date, hist_quantile(hist_merge(latency_ms_hist), 0.99) / 1000 ...`.
//!
//! Read-only: statements are planned with DataFusion's [`SQLOptions`] refusing DDL
//! (`CREATE [EXTERNAL] TABLE`, `DROP`, ...), DML (`INSERT`, `COPY ... TO`) and statements
//! (`SET`, transactions); only the four tables are registered, URL tables
//! (`SELECT * FROM '/etc/passwd'`) are off, and no file-reading table function exists.

//! Files: [`engine`] (the session, tables, limits, read-only planning), [`udf`] (the
//! histogram functions), [`output`] (result formats), [`store`] (the read-only object
//! store DataFusion reads files through).

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod engine;
pub mod output;
pub mod store;
pub mod udf;

pub use engine::{Limits, QueryEngine, QueryError, QueryOutput, TABLES};
pub use output::{encode_output, Format};
pub use udf::{hist_merge, hist_quantile};

/// Limits of `POST /api/v1/query` and `driftwatch query`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Serve `POST /api/v1/query`. Default `true`.
    pub enabled: bool,
    /// Most rows a result may have. Default `100000`.
    pub max_rows: usize,
    /// Most bytes (in memory, Arrow) a result may have. Default `67108864` (64 MiB).
    pub max_bytes: usize,
    /// Longest a query may run. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_rows: 100_000,
            max_bytes: 64 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

impl QueryConfig {
    pub fn limits(&self) -> crate::query::Limits {
        crate::query::Limits {
            max_rows: self.max_rows,
            max_bytes: self.max_bytes,
            timeout: self.timeout,
        }
    }
}
