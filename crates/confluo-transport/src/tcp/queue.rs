//! A peer's outbound queue, sans-IO: encoded frames back to back in reusable chunks.

use std::collections::VecDeque;

use crate::codec::FRAME_HEADER_LEN;

/// Emptied chunk buffers kept per peer.
const CHUNK_POOL: usize = 4;

/// Encoded frames back to back, in chunks of about `chunk_size` bytes: the writer takes one
/// chunk per system call, and emptied chunks are reused, so steady traffic allocates nothing.
#[derive(Debug)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Emptied chunk buffers, for reuse.
    pool: Vec<Vec<u8>>,
    frames: usize,
    bytes: usize,
    capacity: usize,
    bytes_capacity: usize,
    chunk_size: usize,
}

/// Frames taken together by the writer.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub(crate) buf: Vec<u8>,
    pub(crate) frames: usize,
}

/// The queue is full (in messages or bytes); nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

impl OutQueue {
    pub(crate) fn new(capacity: usize, bytes_capacity: usize, chunk_size: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            pool: Vec::new(),
            frames: 0,
            bytes: 0,
            capacity: capacity.max(1),
            bytes_capacity: bytes_capacity.max(1),
            chunk_size: chunk_size.max(FRAME_HEADER_LEN),
        }
    }

    /// Appends one frame. Returns whether the queue was empty before (the writer must be woken).
    pub(crate) fn push(
        &mut self,
        header: &[u8; FRAME_HEADER_LEN],
        payload: &[u8],
    ) -> Result<bool, Full> {
        let len = FRAME_HEADER_LEN + payload.len();
        // A frame larger than the byte capacity is accepted into an empty queue only.
        if self.frames >= self.capacity
            || (self.frames > 0 && self.bytes.saturating_add(len) > self.bytes_capacity)
        {
            return Err(Full);
        }
        let fits = self
            .chunks
            .back()
            .is_some_and(|c| c.buf.len().saturating_add(len) <= self.chunk_size);
        if !fits {
            let buf = self.pool.pop().unwrap_or_default();
            self.chunks.push_back(Chunk { buf, frames: 0 });
        }
        if let Some(chunk) = self.chunks.back_mut() {
            chunk.buf.reserve(len);
            chunk.buf.extend_from_slice(header);
            chunk.buf.extend_from_slice(payload);
            chunk.frames += 1;
        }
        self.frames += 1;
        self.bytes += len;
        Ok(self.frames == 1)
    }

    /// Takes the oldest chunk of queued frames, if any.
    pub(crate) fn take(&mut self) -> Option<Chunk> {
        let chunk = self.chunks.pop_front()?;
        self.frames = self.frames.saturating_sub(chunk.frames);
        self.bytes = self.bytes.saturating_sub(chunk.buf.len());
        Some(chunk)
    }

    /// Returns a written chunk's buffer for reuse.
    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > self.chunk_size.saturating_mul(2) {
            return; // grown by one large frame: let it go
        }
        buf.clear();
        if self.pool.len() < CHUNK_POOL {
            self.pool.push(buf);
        }
    }

    /// Messages and bytes queued.
    pub(crate) fn depth(&self) -> (usize, usize) {
        (self.frames, self.bytes)
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn bytes_capacity(&self) -> usize {
        self.bytes_capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: [u8; FRAME_HEADER_LEN] = [0; FRAME_HEADER_LEN];

    #[test]
    fn frames_share_chunks_up_to_the_chunk_size() {
        let mut q = OutQueue::new(100, 10_000, 30);
        assert_eq!(q.push(&H, &[1; 5]), Ok(true));
        assert_eq!(q.push(&H, &[2; 5]), Ok(false));
        assert_eq!(
            q.push(&H, &[3; 5]),
            Ok(false),
            "third frame starts a second chunk"
        );
        assert_eq!(q.depth(), (3, 42));
        let first = q.take().unwrap();
        assert_eq!((first.frames, first.buf.len()), (2, 28));
        assert_eq!(q.depth(), (1, 14));
        q.recycle(first.buf);
        assert_eq!(q.take().unwrap().frames, 1);
        assert!(q.take().is_none());
        assert_eq!(q.push(&H, &[4; 5]), Ok(true), "empty again");
    }

    #[test]
    fn bounded_in_messages_and_bytes_but_one_big_frame_fits_an_empty_queue() {
        let mut q = OutQueue::new(2, 100, 64);
        q.push(&H, &[0; 10]).unwrap();
        q.push(&H, &[0; 10]).unwrap();
        assert_eq!(q.push(&H, &[0; 1]), Err(Full));
        let mut q = OutQueue::new(10, 100, 64);
        assert!(q.push(&H, &[0; 500]).is_ok(), "alone in the queue");
        assert_eq!(q.push(&H, &[0; 1]), Err(Full));
    }
}
