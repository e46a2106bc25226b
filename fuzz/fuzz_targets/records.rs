#![no_main]
//! The record reader behind produce validation and timestamp lookups, on arbitrary batches of
//! every codec (the CRC is not checked here, so the fuzzer reaches the decoders): never a panic,
//! never more than the decompression limit.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tusk_protocol::records::validate_records(data, 1 << 20);
});
