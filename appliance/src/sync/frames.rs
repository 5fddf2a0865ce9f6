//! Length-prefixed frames on a QUIC stream: a 4-byte big-endian length, then
//! that many bytes of JSON. A frame above the bound ends the connection: a peer
//! that sends one is broken or hostile, and reading it would cost memory.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted. An events frame holds at most `EVENTS_PER_FRAME`
/// events of a few KiB each; blobs do not travel in frames.
pub const FRAME_BYTES_MAX: usize = 8 * 1024 * 1024;

/// A frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed or ended mid-frame.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame above the bound.
    #[error("frame of {0} bytes is above the {FRAME_BYTES_MAX}-byte limit")]
    TooLarge(usize),
    /// The frame is not a message of this protocol.
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Writes one frame; returns the bytes written.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, message: &T) -> Result<usize, FrameError> {
    let body = serde_json::to_vec(message)?;
    if body.len() > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge(body.len()));
    }
    w.write_all(&(body.len() as u32).to_be_bytes()).await?;
    w.write_all(&body).await?;
    Ok(4 + body.len())
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
) -> Result<Option<(T, usize)>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some((serde_json::from_slice(&body)?, 4 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::messages::Message;

    #[tokio::test]
    async fn round_trip_and_clean_end() {
        let mut buf = Vec::new();
        let hello = Message::Hello {
            version: 1,
            vv: Default::default(),
            addrs: vec!["127.0.0.1:1".into()],
            refused_snapshot: None,
        };
        write_frame(&mut buf, &hello).await.unwrap();
        let mut r = buf.as_slice();
        let (back, n): (Message, usize) = read_frame(&mut r).await.unwrap().unwrap();
        assert_eq!(back, hello);
        assert_eq!(n, buf.len());
        assert!(read_frame::<_, Message>(&mut r).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_truncated_and_garbage_frames_are_errors() {
        let mut r: &[u8] = &(u32::MAX).to_be_bytes();
        assert!(matches!(read_frame::<_, Message>(&mut r).await, Err(FrameError::TooLarge(_))));
        let mut r: &[u8] = &[0, 0, 0, 10, b'{'];
        assert!(matches!(read_frame::<_, Message>(&mut r).await, Err(FrameError::Io(_))));
        let mut framed = 5u32.to_be_bytes().to_vec();
        framed.extend_from_slice(b"hello");
        let mut r = framed.as_slice();
        assert!(matches!(read_frame::<_, Message>(&mut r).await, Err(FrameError::Malformed(_))));
    }
}
