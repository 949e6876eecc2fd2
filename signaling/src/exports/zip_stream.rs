//! ZIP archives written as a stream (the `zip` crate's streaming writer: local headers with
//! data descriptors, stored entries — audio and PDFs do not compress), so an export of any
//! size leaves in bounded memory: the archive is written on a blocking thread into a small
//! channel that the HTTP body drains, and writing waits whenever the client does.

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::io::{self, Write};
use tokio::sync::mpsc;
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

/// Bytes of an archive (or of anything streamed out).
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Size of the chunks handed to the body.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting for the client at most.
const QUEUE: usize = 4;

/// A `Write` whose bytes go to the channel in chunks; sending waits while the channel is
/// full (the client reads slowly) and fails once the client is gone.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// The archive being written, handed to the writing closure of [`zip_stream`].
pub struct ZipSink {
    zip: ZipWriter<StreamWriter<ChannelWriter>>,
    rt: tokio::runtime::Handle,
}

fn zip_err(e: zip::result::ZipError) -> io::Error {
    io::Error::other(e)
}

impl ZipSink {
    fn start(&mut self, name: &str) -> io::Result<()> {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .large_file(false);
        self.zip.start_file(name, options).map_err(zip_err)
    }

    /// Adds an entry holding `data`.
    pub fn add_bytes(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.start(name)?;
        self.zip.write_all(data)
    }

    /// Adds an entry holding what `stream` yields (a recording read from the blob store).
    pub fn add_stream(&mut self, name: &str, mut stream: ByteStream) -> io::Result<()> {
        self.start(name)?;
        while let Some(chunk) = self.rt.block_on(stream.next()) {
            self.zip.write_all(&chunk?)?;
        }
        Ok(())
    }

    /// Runs async work (a store query) from the writing thread.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// A ZIP archive whose entries `write` adds, as a stream of bytes. Must be called inside
/// the Tokio runtime. An error of `write` ends the stream with that error (the client sees a
/// cut download, and the log says why).
pub fn zip_stream<F>(what: &'static str, write: F) -> ByteStream
where
    F: FnOnce(&mut ZipSink) -> io::Result<()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    let rt = tokio::runtime::Handle::current();
    let errors = tx.clone();
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let mut sink = ZipSink {
            zip: ZipWriter::new_stream(writer),
            rt,
        };
        let done = write(&mut sink).and_then(|()| {
            let mut out = sink.zip.finish().map_err(zip_err)?.into_inner();
            out.flush()
        });
        if let Err(e) = done {
            if e.kind() == io::ErrorKind::BrokenPipe {
                tracing::info!(export = what, "export cancelled by the client");
            } else {
                tracing::error!(export = what, error = %e, "export failed");
                let _ = errors.blocking_send(Err(e));
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_come_back_from_the_streamed_archive() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let big2 = big.clone();
        let stream = zip_stream("test", move |zip| {
            zip.add_bytes("a.txt", b"hello")?;
            let chunks: Vec<io::Result<Bytes>> = big2
                .chunks(10_000)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            zip.add_stream("b.bin", futures_util::stream::iter(chunks).boxed())
        });
        let parts: Vec<io::Result<Bytes>> = stream.collect().await;
        let mut archive = Vec::new();
        for p in parts {
            archive.extend_from_slice(&p.expect("chunk"));
        }
        let mut z = zip::ZipArchive::new(io::Cursor::new(archive)).expect("a zip");
        assert_eq!(z.len(), 2);
        let mut read = |name: &str| {
            let mut f = z.by_name(name).expect(name);
            assert_eq!(f.compression(), CompressionMethod::Stored);
            let mut v = Vec::new();
            io::Read::read_to_end(&mut f, &mut v).expect("read");
            v
        };
        assert_eq!(read("a.txt"), b"hello");
        assert_eq!(read("b.bin"), big);
    }
}
