//! A connection's socket, and how a Fetch frame in parts is written to it: encoded bytes
//! with `write`, batches in log files with `sendfile(2)` on plain TCP (the page cache hands
//! them to the socket; nothing is copied through the broker), copied on TLS.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tusk_protocol::fetch_frame::FramePart;

use crate::handlers::FetchFrame;
use crate::partition::RecordPiece;

/// What a connection runs on.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send {
    /// Writes one batch from its log file.
    fn send_file(
        &mut self,
        range: &walrus::FileRange,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send;
}

impl Socket for TcpStream {
    async fn send_file(&mut self, range: &walrus::FileRange) -> io::Result<()> {
        use std::os::fd::AsFd;
        let mut done = 0usize;
        while done < range.len() {
            self.writable().await?;
            // sendfile waits for the disk when pages are not cached: off the async workers.
            let sent = crate::blocking(|| {
                self.try_io(tokio::io::Interest::WRITABLE, || {
                    range.send_to(self.as_fd(), done)
                })
            });
            match sent {
                // The file ends before the range does: the log lost bytes it had.
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("log file shorter than its batch {range:?}"),
                    ))
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Socket for tokio_rustls::server::TlsStream<TcpStream> {
    /// TLS encrypts the bytes, so they are read (on a blocking thread) and written.
    /// Fetches on TLS connections read batches into memory (`ConnCtx::sendfile` is false),
    /// so this is only a fallback.
    async fn send_file(&mut self, range: &walrus::FileRange) -> io::Result<()> {
        let bytes = crate::blocking(|| range.read())?;
        self.write_all(&bytes).await
    }
}

/// Writes a Fetch frame: its parts in order, each record set at its place.
pub async fn write_fetch_frame<S: Socket>(sock: &mut S, frame: &FetchFrame) -> io::Result<()> {
    for part in &frame.parts {
        match part {
            FramePart::Bytes(b) => sock.write_all(b).await?,
            FramePart::Records(i) => {
                let set = frame.sets.get(*i).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "frame names a missing set")
                })?;
                for piece in set.pieces() {
                    match piece {
                        RecordPiece::Mem(b) => sock.write_all(b).await?,
                        RecordPiece::File(r) => sock.send_file(r).await?,
                    }
                }
            }
        }
    }
    Ok(())
}
