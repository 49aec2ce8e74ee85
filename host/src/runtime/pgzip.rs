//! Parallel gzip, as `pigz` writes it: the input is cut into blocks that
//! worker threads deflate independently (each ended with a sync flush, so
//! the pieces join at byte boundaries into one deflate stream), written in
//! order behind one gzip header, with the CRC-32 combined from the blocks'.
//! The output is one ordinary gzip member that any gunzip reads.
//!
//! Memory stays bounded: at most `2 × threads` blocks of [`BLOCK`] bytes are
//! in flight.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Input bytes per block. Twice pigz's 128 KiB: blocks are compressed
/// without the previous block as dictionary, and a block this size loses
/// next to nothing by it, while the blocks in flight (input and output)
/// stay near 2 MiB with two workers (1 MiB blocks held over 8 MiB).
pub const BLOCK: usize = 256 << 10;

type Job = (u64, Vec<u8>);
type Done = (u64, io::Result<(Vec<u8>, crc32fast::Hasher)>);

/// A gzip writer that compresses on several threads.
pub struct ParGz<W: Write> {
    out: Option<W>,
    level: Compression,
    buf: Vec<u8>,
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    next_seq: u64,
    next_write: u64,
    pending: BTreeMap<u64, (Vec<u8>, crc32fast::Hasher)>,
    crc: crc32fast::Hasher,
    size: u64,
}

fn deflate_block(level: Compression, data: &[u8]) -> io::Result<(Vec<u8>, crc32fast::Hasher)> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(data);
    let mut z = Compress::new(level, false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let consumed = z.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let status = z
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        // Done when all input is in and the flush completed: it left room to
        // spare, or it had nothing more to write (`BufError` with room in the
        // output: an earlier call finished the flush, and every further call
        // would answer the same, forever).
        if z.total_in() as usize == data.len()
            && (out.capacity() - out.len() >= 1024 || status == Status::BufError)
        {
            return Ok((out, crc));
        }
    }
}

impl<W: Write> ParGz<W> {
    /// Compress into `out` with `threads` workers (at least 1).
    pub fn new(mut out: W, level: Compression, threads: usize) -> io::Result<ParGz<W>> {
        // Header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
        let threads = threads.max(1);
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(threads * 2);
        let jobs_rx = std::sync::Arc::new(parking_lot::Mutex::new(jobs_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let workers = (0..threads)
            .map(|_| {
                let jobs = jobs_rx.clone();
                let done = done_tx.clone();
                std::thread::spawn(move || loop {
                    let job = jobs.lock().recv();
                    let Ok((seq, data)) = job else { return };
                    if done.send((seq, deflate_block(level, &data))).is_err() {
                        return;
                    }
                })
            })
            .collect();
        Ok(ParGz {
            out: Some(out),
            level,
            buf: Vec::with_capacity(BLOCK),
            jobs: Some(jobs_tx),
            done: done_rx,
            workers,
            next_seq: 0,
            next_write: 0,
            pending: BTreeMap::new(),
            crc: crc32fast::Hasher::new(),
            size: 0,
        })
    }

    fn send_block(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        self.size += data.len() as u64;
        // Bound the blocks in flight: write what is ready first.
        while self.next_seq - self.next_write >= 2 * self.workers.len() as u64 {
            self.receive(true)?;
        }
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("finished"))?;
        jobs.send((self.next_seq, data))
            .map_err(|_| io::Error::other("gzip workers stopped"))?;
        self.next_seq += 1;
        self.receive(false)
    }

    /// Take finished blocks (waiting for one when `block`), writing those next in order.
    fn receive(&mut self, block: bool) -> io::Result<()> {
        let first = if block {
            Some(
                self.done
                    .recv()
                    .map_err(|_| io::Error::other("gzip workers stopped"))?,
            )
        } else {
            self.done.try_recv().ok()
        };
        let mut got = first;
        while let Some((seq, result)) = got {
            self.pending.insert(seq, result?);
            got = self.done.try_recv().ok();
        }
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("finished"))?;
        while let Some((data, crc)) = self.pending.remove(&self.next_write) {
            out.write_all(&data)?;
            self.crc.combine(&crc);
            self.next_write += 1;
        }
        Ok(())
    }

    /// Write the rest, the final block and the trailer; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.send_block()?;
        while self.next_write < self.next_seq {
            self.receive(true)?;
        }
        self.stop_workers();
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("finished"))?;
        // An empty final block ends the deflate stream, then CRC-32 and size.
        let mut z = Compress::new(self.level, false);
        let mut tail = Vec::with_capacity(64);
        z.compress_vec(&[], &mut tail, FlushCompress::Finish)
            .map_err(io::Error::other)?;
        out.write_all(&tail)?;
        let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&(self.size as u32).to_le_bytes())?;
        out.flush()?;
        Ok(out)
    }

    fn stop_workers(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl<W: Write> Drop for ParGz<W> {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

impl<W: Write> Write for ParGz<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BLOCK {
            self.send_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Blocks that compress to about half their size, in fine steps: some
    /// end their flush with less than 1 KiB of room in the output (first
    /// sized for half the input), where a block loop that waits for more
    /// room than the flush leaves would spin forever. Each block runs on a
    /// thread with a deadline, so a hang fails the test.
    #[test]
    fn blocks_whose_output_nearly_fills_the_buffer_end() {
        let random = stevedore_e2e::noise(BLOCK, 0x9e37_79b9_7f4a_7c15);
        // `k` random bytes, then zeros: the output is about `k` bytes.
        for k in (BLOCK / 2 - (8 << 10)..BLOCK / 2 + (2 << 10)).step_by(128) {
            let mut data = random[..k].to_vec();
            data.resize(BLOCK, 0);
            let data = std::sync::Arc::new(data);
            let input = data.clone();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(deflate_block(Compression::default(), &input));
            });
            let (mut out, _) = rx
                .recv_timeout(std::time::Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("the block with {k} random bytes never ended"))
                .unwrap();
            // An empty final block (the block itself ends on a sync flush).
            out.extend_from_slice(&[0x03, 0x00]);
            let mut back = Vec::new();
            flate2::read::DeflateDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(back[..] == data[..], "round trip with {k} random bytes");
        }
    }

    #[test]
    fn output_is_one_gzip_member_any_reader_takes() {
        let mut data = Vec::new();
        for i in 0..(3 * BLOCK + 12345) {
            data.push(((i * 7) % 251) as u8 ^ (i >> 13) as u8);
        }
        for threads in [1, 3] {
            let mut gz = ParGz::new(Vec::new(), Compression::default(), threads).unwrap();
            for chunk in data.chunks(100_000) {
                gz.write_all(chunk).unwrap();
            }
            let out = gz.finish().unwrap();
            // The single-member decoder reads it all: one member, right CRC and size.
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "round trip with {threads} threads");
        }
        let empty = ParGz::new(Vec::new(), Compression::default(), 2)
            .unwrap()
            .finish()
            .unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&empty[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }
}
