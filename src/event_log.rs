//! Replaying a Walrus topic of JSON events (credentials, ACLs, client quotas): every entry in
//! order, each decoded as `T`; an entry that does not decode stops the load with its position.

use serde::de::DeserializeOwned;
use walrus::Walrus;

pub fn replay<T: DeserializeOwned>(
    store: &Walrus,
    topic: &str,
    mut apply: impl FnMut(T),
) -> std::io::Result<()> {
    let Some(st) = store.topic_stats(topic) else {
        return Ok(());
    };
    let mut pos = st.first_position;
    while pos < st.next_position {
        let got = store.read_at(topic, pos, 1 << 20, 1000)?;
        if got.is_empty() {
            break;
        }
        for e in got {
            pos = e.position + 1;
            let ev = serde_json::from_slice::<T>(&e.data).map_err(|err| {
                std::io::Error::other(format!("{topic} entry {}: {err}", e.position))
            })?;
            apply(ev);
        }
    }
    Ok(())
}
