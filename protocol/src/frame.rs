//! Framing: every request is a 4-byte big-endian size followed by that many bytes.

use bytes::{Buf, BytesMut};

/// Kafka's `socket.request.max.bytes` default.
pub const DEFAULT_MAX_FRAME: usize = 100 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: i64, max: usize },
    #[error("negative frame size {0}")]
    Negative(i32),
}

/// Most a partial frame's buffer grows ahead of the bytes that arrived.
pub const GROW_STEP: usize = 256 * 1024;

/// The declared size of the frame at the front of `buf`, once its 4-byte prefix is there.
pub fn declared_size(buf: &[u8]) -> Option<i32> {
    (buf.len() >= 4).then(|| i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]))
}

/// Takes one complete frame (without its size prefix) off the front of `buf`, if there is one.
/// Never allocates for a frame before its size is checked.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    let size = size as usize;
    if size > max {
        return Err(FrameError::TooLarge {
            size: size as i64,
            max,
        });
    }
    if buf.len() < 4 + size {
        // Grow with the bytes that arrive, a step at a time: a header promising 100 MB that
        // never sends them must not make anyone reserve 100 MB.
        let missing = 4 + size - buf.len();
        buf.reserve(missing.min(GROW_STEP));
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_limits() {
        let mut b = BytesMut::from(&[0u8, 0, 0, 3, 1, 2, 3, 0, 0][..]);
        assert_eq!(
            split_frame(&mut b, 10).unwrap().unwrap().as_ref(),
            &[1, 2, 3]
        );
        assert_eq!(split_frame(&mut b, 10).unwrap(), None);
        let mut b = BytesMut::from(&[0u8, 0, 1, 0][..]);
        assert!(matches!(
            split_frame(&mut b, 10),
            Err(FrameError::TooLarge { .. })
        ));
        let mut b = BytesMut::from(&[0xffu8, 0, 0, 0][..]);
        assert!(matches!(
            split_frame(&mut b, 10),
            Err(FrameError::Negative(_))
        ));
    }

    #[test]
    fn a_promised_frame_reserves_only_a_step() {
        let mut b = BytesMut::from(&[0x05u8, 0, 0, 0, 1][..]); // 80 MiB promised, 1 byte sent
        assert_eq!(split_frame(&mut b, 100 << 20).unwrap(), None);
        assert!(b.capacity() <= 5 + GROW_STEP, "{}", b.capacity());
    }
}
