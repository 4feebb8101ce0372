//! The query engine's only way to files: DataFusion's local file store wrapped so that it
//! reads inside the data directory and nothing else, and writes nothing at all.
//!
//! The SQL layer already refuses DDL, DML, `COPY`, `SET` and URL tables; this makes the
//! same promise at the storage layer, whatever a future DataFusion feature or a missed
//! statement kind might try: a read outside the data directory and every write, delete,
//! copy or rename fail with `PermissionDenied` and are logged.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Read-only access to the files under `root`.
#[derive(Debug)]
pub struct DataDirStore {
    inner: Arc<dyn ObjectStore>,
    root: Path,
}

impl DataDirStore {
    /// `root` is the data directory as an object-store path (as DataFusion's listing URLs
    /// name it).
    pub fn new(inner: Arc<dyn ObjectStore>, root: Path) -> Self {
        Self { inner, root }
    }

    fn check_read(&self, location: &Path) -> Result<()> {
        if location.prefix_matches(&self.root) {
            Ok(())
        } else {
            Err(self.refuse(location, "outside the data directory"))
        }
    }

    fn refuse(&self, location: &Path, why: &str) -> object_store::Error {
        tracing::warn!(path = %location, why, "query storage access refused");
        object_store::Error::PermissionDenied {
            path: location.to_string(),
            source: format!("queries are read-only and see only {}: {why}", self.root).into(),
        }
    }
}

impl fmt::Display for DataDirStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataDirStore({}, read-only)", self.root)
    }
}

#[async_trait]
impl ObjectStore for DataDirStore {
    async fn put_opts(&self, location: &Path, _: PutPayload, _: PutOptions) -> Result<PutResult> {
        Err(self.refuse(location, "write"))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err(self.refuse(location, "write"))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.check_read(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.check_read(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let root = self.root.to_string();
        locations
            .map(move |l| {
                let path = l.map(|p| p.to_string()).unwrap_or_default();
                tracing::warn!(path, "query storage delete refused");
                Err(object_store::Error::PermissionDenied {
                    path,
                    source: format!("queries are read-only and see only {root}: delete").into(),
                })
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match prefix {
            Some(p) if p.prefix_matches(&self.root) => self.inner.list(Some(p)),
            other => {
                let e = self.refuse(
                    other.unwrap_or(&Path::default()),
                    "outside the data directory",
                );
                futures::stream::once(async move { Err(e) }).boxed()
            }
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        match prefix {
            Some(p) if p.prefix_matches(&self.root) => {
                self.inner.list_with_delimiter(Some(p)).await
            }
            other => Err(self.refuse(
                other.unwrap_or(&Path::default()),
                "outside the data directory",
            )),
        }
    }

    async fn copy_opts(&self, _from: &Path, to: &Path, _: CopyOptions) -> Result<()> {
        Err(self.refuse(to, "copy"))
    }

    async fn rename_opts(&self, _from: &Path, to: &Path, _: RenameOptions) -> Result<()> {
        Err(self.refuse(to, "rename"))
    }
}
