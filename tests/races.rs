//! Races on acknowledged state, against a live broker process: many clients doing the same
//! thing at the same moment must each get an answer that stays true.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use common::wire::*;

/// InitProducerId for one transactional id from 16 clients at once: each success is a distinct
/// epoch of one producer id (fencing works: no two instances both hold the newest epoch).
#[test]
fn concurrent_init_producer_id_never_hands_out_an_epoch_twice() {
    let broker = common::Broker::start(&[]);
    let addr = broker.addr();
    for round in 0..5 {
        let id = format!("txn-{round}");
        let start = Arc::new(Barrier::new(16));
        let clients: Vec<_> = (0..16)
            .map(|_| {
                let (addr, id, start) = (addr.clone(), id.clone(), start.clone());
                std::thread::spawn(move || {
                    let mut s = connect(&addr);
                    let req = InitProducerIdRequest::default()
                        .with_transactional_id(Some(TransactionalId(StrBytes::from_string(id))))
                        .with_transaction_timeout_ms(60_000)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1);
                    start.wait();
                    let r: InitProducerIdResponse = call(&mut s, ApiKey::InitProducerId, 3, &req);
                    (r.error_code, r.producer_id.0, r.producer_epoch)
                })
            })
            .collect();
        let answers: Vec<(i16, i64, i16)> =
            clients.into_iter().map(|c| c.join().unwrap()).collect();
        let ok: Vec<(i64, i16)> = answers
            .iter()
            .filter(|a| a.0 == 0)
            .map(|a| (a.1, a.2))
            .collect();
        assert!(!ok.is_empty(), "round {round}: no success: {answers:?}");
        for a in &answers {
            // CONCURRENT_TRANSACTIONS is the retriable answer Kafka gives in the same spot.
            assert!(a.0 == 0 || a.0 == 51, "round {round}: {answers:?}");
        }
        let distinct: HashSet<(i64, i16)> = ok.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            ok.len(),
            "round {round}: an epoch handed out twice: {ok:?}"
        );
        let pids: HashSet<i64> = ok.iter().map(|x| x.0).collect();
        assert_eq!(
            pids.len(),
            1,
            "round {round}: one transactional id, one producer id: {ok:?}"
        );
    }
    broker.assert_clean_log();
}
