//! The engine's shared helpers: topic lookup and creation, the failure ("poisoned") state,
//! cursors in memory, the sparse-index stride.

use super::*;

impl Shared {
    pub(super) fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        match self.topics.read() {
            Ok(m) => m.get(name).cloned(),
            Err(p) => p.into_inner().get(name).cloned(),
        }
    }

    pub(super) fn topic_or_create(&self, name: &str) -> io::Result<Arc<Topic>> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if name.len() > MAX_TOPIC_NAME {
            return Err(invalid_input(format!(
                "topic name of {} bytes exceeds {MAX_TOPIC_NAME}",
                name.len()
            )));
        }
        let mut m = self.topics.write().unwrap_or_else(|p| p.into_inner());
        Ok(m.entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Topic {
                    name: name.to_string(),
                    state: Mutex::new(TopicState {
                        incarnation: self.next_incarnation.fetch_add(1, Ordering::Relaxed),
                        first_position: 0,
                        next_position: 0,
                        next_seq: 0,
                        blocks: VecDeque::new(),
                        deleted: false,
                        reads_since_persist: 0,
                    }),
                    batch_in_flight: AtomicBool::new(false),
                })
            })
            .clone())
    }

    pub(super) fn check_poisoned(&self) -> io::Result<()> {
        match &*lock(&self.poisoned) {
            Some(msg) => Err(Error::Poisoned {
                root: self.root.display().to_string(),
                reason: msg.clone(),
            }
            .into()),
            None => Ok(()),
        }
    }

    pub(super) fn poison(&self, what: &str, e: &io::Error) {
        let mut p = lock(&self.poisoned);
        if p.is_none() {
            let reason = format!("{what}: {e}");
            if let Some(hook) = &self.on_failure {
                (hook.0)(&reason);
            }
            *p = Some(reason);
        }
    }

    pub(super) fn set_cursor_mem(&self, topic: &str, name: &[u8], position: u64, metadata: &[u8]) {
        lock(&self.cursors)
            .entry(topic.to_string())
            .or_default()
            .insert(
                name.to_vec(),
                Cursor {
                    position,
                    metadata: metadata.to_vec(),
                },
            );
    }

    pub(super) fn sample_stride(&self) -> u64 {
        (self.block_size / MAX_SAMPLES as u64).max(4096)
    }
}
