//! Decompression on a thread of its own, so that it runs beside the writing
//! of the members it yields, on another core, as `tar -xJ` runs `xz -d`
//! beside itself. The decompressed stream crosses in chunks of [`CHUNK`]
//! bytes through a bounded channel; a reader failure crosses as an error in
//! the stream's place.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Bytes per chunk: large enough that the channel costs nothing beside the
/// work, small enough that the chunks in flight stay a few MiB.
const CHUNK: usize = 1 << 20;
/// Chunks decompressed ahead of the writer.
const AHEAD: usize = 4;

/// Runs `consume` on what `source` yields, with `source` read on a thread
/// of its own. If `consume` stops early, the thread ends at its next chunk.
pub fn decompressed<R, T>(source: R, consume: impl FnOnce(&mut dyn Read) -> T) -> T
where
    R: Read + Send,
{
    let (chunks, received) = sync_channel(AHEAD);
    std::thread::scope(|scope| {
        scope.spawn(move || produce(source, chunks));
        let mut reader = Chunks {
            received,
            chunk: Vec::new(),
            at: 0,
        };
        consume(&mut reader)
        // `reader` drops here, before the scope joins the producer: a send
        // then fails, and the producer stops.
    })
}

fn produce(mut source: impl Read, chunks: SyncSender<io::Result<Vec<u8>>>) {
    loop {
        let mut chunk = vec![0; CHUNK];
        let mut filled = 0;
        let read = loop {
            match source.read(&mut chunk[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == CHUNK {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        chunk.truncate(filled);
        let last = filled < CHUNK;
        let sent = match read {
            // An empty chunk marks the end.
            Ok(()) => chunks.send(Ok(chunk)),
            Err(e) => {
                if filled > 0 && chunks.send(Ok(chunk)).is_err() {
                    return;
                }
                let _ = chunks.send(Err(e));
                return;
            }
        };
        if sent.is_err() || last {
            return;
        }
    }
}

struct Chunks {
    received: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.chunk.len() {
            match self.received.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The producer is done: it sent its last (short) chunk.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_crosses_whole_and_in_order_whatever_its_length() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            decompressed(&data[..], |r| r.read_to_end(&mut out)).unwrap();
            assert_eq!(out, data, "{len}");
        }
    }

    /// A reader that fails after some bytes.
    struct Failing(usize);

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("corrupt input"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_failure_arrives_after_the_bytes_before_it_and_an_early_stop_ends_the_thread() {
        let mut out = Vec::new();
        let e = decompressed(Failing(CHUNK + 5), |r| r.read_to_end(&mut out)).unwrap_err();
        assert_eq!(e.to_string(), "corrupt input");
        assert_eq!(out.len(), CHUNK + 5);
        // The consumer reads one byte of an endless stream and stops; the
        // scope returns, so the producer ended.
        let endless = io::repeat(1);
        let first = decompressed(endless, |r| {
            let mut one = [0u8; 1];
            r.read_exact(&mut one).map(|()| one[0])
        });
        assert_eq!(first.unwrap(), 1);
    }
}
