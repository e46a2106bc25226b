//! Request headers in, response frames out, by Kafka's header-version rules (kafka-notes §1.3):
//! request header v1/v2 chosen by the API and version; response header v0/v1 likewise, except
//! that ApiVersions is always answered with header v0.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::versions;

/// A request whose header was parsed and whose API and version are accepted.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    /// The body, still encoded; a zero-copy slice of the frame.
    pub body: Bytes,
}

#[derive(Debug)]
pub enum Incoming {
    Request(Request),
    /// ApiVersions at a version Tusk does not know: KIP-511 says answer with a v0 body carrying
    /// UNSUPPORTED_VERSION and the supported list, and keep the connection.
    UnsupportedApiVersions {
        correlation_id: i32,
        version: i16,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("request frame of {0} bytes is too short for a header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion { api_key: ApiKey, version: i16 },
    #[error("malformed request header: {0}")]
    Malformed(String),
}

impl HeaderError {
    /// The correlation id, when the frame was long enough to carry one.
    pub fn correlation_id(frame: &[u8]) -> Option<i32> {
        (frame.len() >= 8).then(|| i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]))
    }
}

/// Parses the header of one request frame.
pub fn parse_request(mut frame: Bytes) -> Result<Incoming, HeaderError> {
    if frame.len() < 8 {
        return Err(HeaderError::TooShort(frame.len()));
    }
    let key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(key_raw).map_err(|_| HeaderError::UnknownApiKey(key_raw))?;
    if !versions::accepted(api_key, version) {
        if api_key == ApiKey::ApiVersions && version >= 0 {
            return Ok(Incoming::UnsupportedApiVersions {
                correlation_id,
                version,
            });
        }
        return Err(HeaderError::UnsupportedVersion { api_key, version });
    }
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| HeaderError::Malformed(e.to_string()))?;
    Ok(Incoming::Request(Request {
        api_key,
        version,
        header,
        body: frame,
    }))
}

/// Response header version for `api_key` at `version`.
pub fn response_header_version(api_key: ApiKey, version: i16) -> i16 {
    if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    }
}

/// Encodes a whole response frame: size prefix, header, body.
pub fn encode_response<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<BytesMut, CodecError> {
    let hv = response_header_version(api_key, version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header
        .compute_size(hv)
        .and_then(|h| body.compute_size(version).map(|b| h + b))
        .map_err(|e| CodecError(e.to_string()))?;
    // A size prefix is an i32: an answer that large cannot be framed (the broker's fetch.max.bytes
    // keeps answers far below this; checked here so no caller can wrap it negative).
    let Ok(prefix) = i32::try_from(size) else {
        return Err(CodecError(format!(
            "a {size}-byte response exceeds the largest frame ({} bytes)",
            i32::MAX
        )));
    };
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(prefix);
    header
        .encode(&mut out, hv)
        .map_err(|e| CodecError(e.to_string()))?;
    body.encode(&mut out, version)
        .map_err(|e| CodecError(e.to_string()))?;
    Ok(out)
}

/// Decodes a request body of type `T`.
pub fn decode_body<T: Decodable>(req: &Request) -> Result<T, CodecError> {
    let mut body = req.body.clone();
    T::decode(&mut body, req.version).map_err(|e| CodecError(e.to_string()))
}

/// A body that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    fn frame<T: Encodable>(key: ApiKey, version: i16, corr: i32, body: &T) -> Bytes {
        let mut b = BytesMut::new();
        let hv = key.request_header_version(version);
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(corr)
            .encode(&mut b, hv)
            .unwrap();
        body.encode(&mut b, version).unwrap();
        b.freeze()
    }

    #[test]
    fn parses_and_round_trips_a_body() {
        let f = frame(ApiKey::Metadata, 12, 7, &MetadataRequest::default());
        let Incoming::Request(r) = parse_request(f).unwrap() else {
            panic!("expected a request")
        };
        assert_eq!(
            (r.api_key, r.version, r.header.correlation_id),
            (ApiKey::Metadata, 12, 7)
        );
        let _: MetadataRequest = decode_body(&r).unwrap();
    }

    #[test]
    fn unknown_api_versions_version_is_kip_511() {
        let mut f =
            BytesMut::from(&frame(ApiKey::ApiVersions, 3, 9, &ApiVersionsRequest::default())[..]);
        f[2..4].copy_from_slice(&77i16.to_be_bytes());
        assert!(matches!(
            parse_request(f.freeze()).unwrap(),
            Incoming::UnsupportedApiVersions {
                correlation_id: 9,
                version: 77
            }
        ));
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..64usize {
            let f: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let _ = parse_request(Bytes::from(f));
        }
        assert!(matches!(
            parse_request(Bytes::from_static(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1])),
            Err(HeaderError::UnknownApiKey(_))
        ));
    }
}
