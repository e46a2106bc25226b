//! Kafka wire protocol for Tusk, without any I/O.
//!
//! - [`frame`]: length-prefixed framing with a size limit.
//! - [`versions`]: the API-version table, the one source of truth for ApiVersions and decoding.
//! - [`header`]: request header parsing by Kafka's header-version rules and response encoding.
//! - [`batch`]: zero-copy RecordBatch (magic 2) views: validation, CRC32C, base-offset patching.
//!
//! Message bodies are the `kafka-protocol` crate's types, re-exported as [`kafka_protocol`].

pub mod batch;
pub mod fetch_frame;
pub mod frame;
pub mod fuzzing;
pub mod header;
pub mod records;
#[cfg(test)]
mod test_support;
pub mod versions;

pub use kafka_protocol;
