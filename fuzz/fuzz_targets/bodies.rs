#![no_main]
//! The body of every accepted (API, version) pair: the first two bytes pick the pair, the rest
//! is the body. Never a panic, never an allocation sized by an unchecked count.

use libfuzzer_sys::fuzz_target;
use tusk_protocol::fuzzing::{decode_any, framed};
use tusk_protocol::header::{parse_request, Incoming};
use tusk_protocol::versions::SUPPORTED;

fuzz_target!(|data: &[u8]| {
    let [a, v, body @ ..] = data else { return };
    let (api, lo, hi) = SUPPORTED[*a as usize % SUPPORTED.len()];
    let version = lo + (*v as i16 % (hi - lo + 1));
    if let Ok(Incoming::Request(r)) = parse_request(framed(api, version, body)) {
        decode_any(&r);
    }
});
