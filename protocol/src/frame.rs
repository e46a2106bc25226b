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
        // Reserve only up to the frame: the size was checked against the limit above.
        buf.reserve(4 + size - buf.len());
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
}
