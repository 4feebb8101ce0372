//! File source: JSON lines from files (plain, gzip or zstd, told by their first bytes) or
//! standard input, for backfills from log archives and for CI.
//!
//! Each file is one partition: topic = the file's name, partition 0, offset = line number
//! (from 1). Files are read one after another in the order given; a reader thread reads and
//! decompresses ahead of the pipeline. When a file ends, its owner is told
//! ([`Partitions::finished`]): it closes the file's windows, commits and releases it before
//! the next file is assigned. A file's position is its checkpoint, like a Kafka partition's:
//! a rerun over the same file skips what was committed.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Offsets, PartitionId, Partitions, RawMessage};

/// The longest line kept whole (64 MiB): a longer one is cut after one more byte, so the
/// decoder still refuses it as oversized, without holding all of it.
pub const MAX_LINE: usize = 64 << 20;

/// Lines handed over per chunk (and at most this many bytes of them).
const CHUNK_LINES: usize = 2048;
const CHUNK_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {source}")]
    Read {
        path: PathBuf,
        line: i64,
        source: std::io::Error,
    },
    #[error("{0} and {1} have the same file name, which is the topic their rows carry and their checkpoint's name; rename one or replay them separately")]
    SameName(PathBuf, PathBuf),
    #[error("standard input (-) is given twice")]
    StdinTwice,
    #[error("no input: give one or more files, or - for standard input")]
    NoInput,
    #[error("starting the reader thread: {0}")]
    Thread(std::io::Error),
}

/// One input: a file, or standard input (`path` `None`).
#[derive(Debug, Clone)]
pub struct FileInput {
    pub path: Option<PathBuf>,
    /// The topic its rows carry: the file's name, or `stdin-<start ms>` for standard input.
    pub topic: Arc<str>,
    /// Size in bytes (of the file as stored, compressed or not), when known.
    pub size: Option<u64>,
}

impl FileInput {
    pub fn id(&self) -> PartitionId {
        (self.topic.clone(), 0)
    }

    pub fn name(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "standard input".into(),
        }
    }
}

/// The inputs named on the command line: `-` is standard input, which has no rerun
/// identity (its topic is `stdin-<now_ms>`, new each time). Every file must be readable now.
pub fn inputs(args: &[PathBuf], now_ms: i64) -> Result<Vec<FileInput>, FileSourceError> {
    if args.is_empty() {
        return Err(FileSourceError::NoInput);
    }
    let mut out: Vec<FileInput> = Vec::new();
    let mut names: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for a in args {
        if a.as_os_str() == "-" {
            if out.iter().any(|i| i.path.is_none()) {
                return Err(FileSourceError::StdinTwice);
            }
            out.push(FileInput {
                path: None,
                topic: Arc::from(format!("stdin-{now_ms}")),
                size: None,
            });
            continue;
        }
        let meta = std::fs::metadata(a).map_err(|source| FileSourceError::Open {
            path: a.clone(),
            source,
        })?;
        if meta.is_dir() {
            return Err(FileSourceError::Open {
                path: a.clone(),
                source: std::io::Error::other("is a directory; give the files in it"),
            });
        }
        File::open(a).map_err(|source| FileSourceError::Open {
            path: a.clone(),
            source,
        })?;
        let name = a
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| a.display().to_string());
        if let Some(other) = names.insert(name.clone(), a.clone()) {
            return Err(FileSourceError::SameName(other, a.clone()));
        }
        out.push(FileInput {
            path: Some(a.clone()),
            topic: Arc::from(name),
            size: Some(meta.len()),
        });
    }
    Ok(out)
}

/// Compression of a stream, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Counts the bytes read from the stored (possibly compressed) stream, for progress.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The decompressed lines of `raw`.
fn open_lines<R: Read + Send + 'static>(
    raw: R,
    read: Arc<AtomicU64>,
) -> std::io::Result<Box<dyn BufRead + Send>> {
    let mut buffered = BufReader::with_capacity(1 << 20, Counting { inner: raw, read });
    let kind = Compression::sniff(buffered.fill_buf()?);
    Ok(match kind {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::bufread::MultiGzDecoder::new(buffered),
        )),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            1 << 20,
            zstd::stream::read::Decoder::with_buffer(buffered)?,
        )),
    })
}

/// Lines of one input, handed from the reader thread to the source.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The lines' bytes, back to back, without their line ends.
    bytes: Vec<u8>,
    /// End of each line in `bytes`.
    ends: Vec<usize>,
    /// Line number of the first line.
    first_line: i64,
}

enum Message {
    Start(usize),
    Lines(usize, Chunk),
    End(usize),
    Failed(FileSourceError),
}

/// Splits `r` into lines of at most `max_line` bytes kept (the rest of a longer line is
/// dropped, so the decoder sees it is oversized), in chunks for `send`.
fn read_lines(
    r: &mut dyn BufRead,
    max_line: usize,
    mut send: impl FnMut(Chunk) -> bool,
) -> Result<i64, (i64, std::io::Error)> {
    let mut line: i64 = 0;
    let mut chunk = Chunk {
        first_line: 1,
        ..Chunk::default()
    };
    let mut in_line = false;
    let mut kept = 0usize;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((line + 1, e)),
        };
        if buf.is_empty() {
            if in_line {
                line += 1;
                chunk.ends.push(chunk.bytes.len());
            }
            break;
        }
        let (take, newline) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        let room = (max_line + 1).saturating_sub(kept).min(take);
        chunk.bytes.extend_from_slice(&buf[..room]);
        kept += room;
        in_line = true;
        r.consume(take + usize::from(newline));
        if newline {
            line += 1;
            if chunk.bytes.last() == Some(&b'\r') && kept <= max_line {
                chunk.bytes.pop();
            }
            chunk.ends.push(chunk.bytes.len());
            in_line = false;
            kept = 0;
            if chunk.ends.len() >= CHUNK_LINES || chunk.bytes.len() >= CHUNK_BYTES {
                let next = Chunk {
                    first_line: line + 1,
                    bytes: Vec::with_capacity(chunk.bytes.capacity()),
                    ends: Vec::with_capacity(CHUNK_LINES),
                };
                if !send(std::mem::replace(&mut chunk, next)) {
                    return Ok(line);
                }
            }
        }
    }
    if !chunk.ends.is_empty() {
        send(chunk);
    }
    Ok(line)
}

/// Progress of a replay, shared with whoever draws it.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of the stored inputs read so far.
    pub bytes: Arc<AtomicU64>,
    /// Lines handed to the pipeline so far.
    pub lines: AtomicU64,
}

/// Reads `inputs` one after another, ahead of the pipeline.
pub struct FileSource {
    inputs: Vec<FileInput>,
    owner: Arc<dyn Partitions>,
    rx: tokio::sync::mpsc::Receiver<Message>,
    reader: Option<std::thread::JoinHandle<()>>,
    progress: Arc<Progress>,
    done: bool,
    failed: Option<FileSourceError>,
}

impl FileSource {
    /// Starts reading; `max_line` is the longest line kept whole (`limits.max_message_bytes`).
    pub fn start(
        inputs: Vec<FileInput>,
        owner: Arc<dyn Partitions>,
        max_line: usize,
        progress: Arc<Progress>,
    ) -> Result<Self, FileSourceError> {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let list = inputs.clone();
        let bytes = progress.bytes.clone();
        let reader = std::thread::Builder::new()
            .name("replay-reader".into())
            .spawn(move || read_all(&list, max_line, bytes, tx))
            .map_err(FileSourceError::Thread)?;
        Ok(Self {
            inputs,
            owner,
            rx,
            reader: Some(reader),
            progress,
            done: false,
            failed: None,
        })
    }

    /// Waits for the next chunk of lines and hands them to `accept`; returns true when any
    /// `accept` did (a buffer is full). Starts and ends of files go to the owner on the way.
    /// Once every input is read it never returns.
    pub async fn recv_batch(&mut self, mut accept: impl FnMut(RawMessage<'_>) -> bool) -> bool {
        loop {
            if self.done {
                return std::future::pending().await;
            }
            match self.rx.recv().await {
                None => {
                    self.done = true;
                    if let Some(r) = self.reader.take() {
                        let _ = r.join();
                    }
                }
                Some(Message::Start(i)) => {
                    tracing::info!(input = %self.inputs[i].name(), topic = %self.inputs[i].topic, "replaying");
                    self.owner.assigned(&[self.inputs[i].id()]);
                }
                Some(Message::End(i)) => {
                    let input = &self.inputs[i];
                    tracing::info!(input = %input.name(), "end of input");
                    self.owner.finished(&input.id());
                    return false;
                }
                Some(Message::Failed(e)) => {
                    self.failed = Some(e);
                    self.done = true;
                    return false;
                }
                Some(Message::Lines(i, chunk)) => {
                    let topic = &self.inputs[i].topic;
                    let mut full = false;
                    let mut from = 0;
                    for (k, end) in chunk.ends.iter().enumerate() {
                        full |= accept(RawMessage {
                            topic,
                            partition: 0,
                            offset: chunk.first_line + k as i64,
                            timestamp_ms: None,
                            payload: Some(&chunk.bytes[from..*end]),
                        });
                        from = *end;
                    }
                    self.progress
                        .lines
                        .fetch_add(chunk.ends.len() as u64, Ordering::Relaxed);
                    return full;
                }
            }
        }
    }
}

impl super::Source for FileSource {
    type Error = FileSourceError;

    fn recv_batch(
        &mut self,
        _max: usize,
        accept: impl FnMut(RawMessage<'_>) -> bool,
    ) -> impl std::future::Future<Output = bool> {
        FileSource::recv_batch(self, accept)
    }

    /// Files have no offsets to store: the checkpoint is the position.
    fn store(&self, _offsets: &Offsets) {}

    fn commit_sync(&self, _offsets: &Offsets) -> Result<(), FileSourceError> {
        Ok(())
    }

    /// True once every input has been read and handed on.
    fn caught_up(&self) -> bool {
        self.done
    }

    /// A read failure that ended the input early.
    fn take_failure(&mut self) -> Option<FileSourceError> {
        self.failed.take()
    }
}

fn read_all(
    inputs: &[FileInput],
    max_line: usize,
    bytes: Arc<AtomicU64>,
    tx: tokio::sync::mpsc::Sender<Message>,
) {
    for (i, input) in inputs.iter().enumerate() {
        if tx.blocking_send(Message::Start(i)).is_err() {
            return;
        }
        let path = input.path.clone().unwrap_or_else(|| PathBuf::from("-"));
        let fail = |line: i64, source: std::io::Error| {
            let e = if line == 0 {
                FileSourceError::Open {
                    path: path.clone(),
                    source,
                }
            } else {
                FileSourceError::Read {
                    path: path.clone(),
                    line,
                    source,
                }
            };
            let _ = tx.blocking_send(Message::Failed(e));
        };
        let opened = match &input.path {
            Some(p) => File::open(p).and_then(|f| open_lines(f, bytes.clone())),
            None => open_lines(std::io::stdin(), bytes.clone()),
        };
        let mut lines = match opened {
            Ok(l) => l,
            Err(e) => return fail(0, e),
        };
        let read = read_lines(&mut *lines, max_line, |c| {
            tx.blocking_send(Message::Lines(i, c)).is_ok()
        });
        match read {
            Ok(_) => {
                if tx.blocking_send(Message::End(i)).is_err() {
                    return;
                }
            }
            Err((line, e)) => return fail(line, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(i64, Vec<u8>)> {
        let mut r = std::io::Cursor::new(input.to_vec());
        let mut out = Vec::new();
        read_lines(&mut r, max, |c| {
            let mut from = 0;
            for (k, e) in c.ends.iter().enumerate() {
                out.push((c.first_line + k as i64, c.bytes[from..*e].to_vec()));
                from = *e;
            }
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn lines_are_numbered_from_one_without_their_ends() {
        let got = lines(b"{\"a\":1}\r\n\n{\"b\":2}\nlast", 100);
        assert_eq!(
            got,
            vec![
                (1, b"{\"a\":1}".to_vec()),
                (2, b"".to_vec()),
                (3, b"{\"b\":2}".to_vec()),
                (4, b"last".to_vec()),
            ]
        );
        assert_eq!(lines(b"x\n", 100), vec![(1, b"x".to_vec())]);
        assert!(lines(b"", 100).is_empty());
    }

    #[test]
    fn a_long_line_is_cut_past_the_limit_and_the_next_line_is_whole() {
        let mut input = vec![b'a'; 50];
        input.push(b'\n');
        input.extend_from_slice(b"ok\n");
        let got = lines(&input, 10);
        assert_eq!(got[0].1.len(), 11, "one byte past the limit: oversized");
        assert_eq!(got[1], (2, b"ok".to_vec()));
    }

    #[test]
    fn chunks_keep_the_line_numbers_running() {
        let input: Vec<u8> = (0..5000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let got = lines(&input, 100);
        assert_eq!(got.len(), 5000);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, (n, l))| *n == i as i64 + 1 && l == i.to_string().as_bytes()));
    }

    #[test]
    fn compression_is_told_by_the_first_bytes() {
        use std::io::Write;
        let text = b"{\"x\":1}\n{\"x\":2}\n".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&text[..], 3).unwrap();
        for (bytes, kind) in [
            (&text[..], Compression::None),
            (&gz[..], Compression::Gzip),
            (&zst[..], Compression::Zstd),
        ] {
            assert_eq!(Compression::sniff(bytes), kind);
            let read = Arc::new(AtomicU64::new(0));
            let mut r = open_lines(std::io::Cursor::new(bytes.to_vec()), read.clone()).unwrap();
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, text, "{kind:?}");
            assert_eq!(read.load(Ordering::Relaxed), bytes.len() as u64);
        }
    }
}
