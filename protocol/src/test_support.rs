//! Batches for the crate's unit tests, encoded with the `kafka-protocol` crate (an independent
//! encoder, so the views here are checked against it).

use bytes::BytesMut;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// `n` records with offsets and sequences 0.., timestamps 1000.., `value_len`-byte values;
/// `key(i)` gives record i's key.
pub fn encode(
    n: usize,
    value_len: usize,
    key: impl Fn(usize) -> Option<Vec<u8>>,
    compression: Compression,
) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1000 + i as i64,
            key: key(i).map(Into::into),
            value: Some(vec![b'x'; value_len].into()),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.to_vec()
}
