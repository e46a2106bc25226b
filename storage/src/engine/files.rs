//! Log files and blocks: handing out blocks in order, making the next file ahead, giving
//! space back when a file's blocks are all dead, and creating a (sparse) file durably.

use super::*;

impl Shared {
    /// Hands out `span` consecutive blocks, creating a new preallocated file when needed.
    pub(super) fn allocate(&self, span: u32) -> io::Result<(Arc<WalFile>, u32)> {
        let mut a = lock(&self.alloc);
        if let Some(id) = a.current {
            if let Some(m) = a.files.get_mut(&id) {
                if m.allocated + span <= self.blocks_per_file {
                    let idx = m.allocated;
                    m.allocated += span;
                    m.live += span;
                    let file = m.file.clone();
                    let left = self.blocks_per_file - m.allocated;
                    if left <= (self.blocks_per_file / 10).max(1) {
                        self.start_spare(&mut a);
                    }
                    return Ok((file, idx));
                }
            }
        }
        // Retire the current file (delete it if nothing in it is alive any more).
        if let Some(id) = a.current.take() {
            if a.files.get(&id).is_some_and(|m| m.live == 0) {
                if let Some(m) = a.files.remove(&id) {
                    let _ = self.vfs.remove_file(&m.file.path);
                }
            }
        }
        // The spare made in the background, if it worked (else make one here, and the error of
        // this attempt is the caller's).
        let spare = a.spare.take().and_then(|h| match h.join() {
            Ok(Ok(f)) => Some(f),
            Ok(Err(e)) => {
                if !crate::quiet() {
                    eprintln!("walrus: creating the next log file ahead failed: {e}");
                }
                None
            }
            Err(_) => None,
        });
        let file = match spare {
            Some(f) => f,
            None => {
                let id = self.next_file_id(&mut a);
                create_file(
                    &*self.vfs,
                    &self.root,
                    id,
                    self.block_size * self.blocks_per_file as u64,
                )?
            }
        };
        let id = file.id;
        let file = Arc::new(file);
        a.files.insert(
            id,
            FileMeta {
                file: file.clone(),
                allocated: span,
                live: span,
            },
        );
        a.current = Some(id);
        Ok((file, 0))
    }

    /// A new file id, larger than every one handed out (time-based, so ids order files by age).
    pub(super) fn next_file_id(&self, a: &mut Allocator) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let id = now.max(a.last_id + 1);
        a.last_id = id;
        id
    }

    /// Starts creating the next file on a thread of its own, unless one is under way.
    pub(super) fn start_spare(&self, a: &mut Allocator) {
        if !self.preallocate_ahead || a.spare.is_some() || self.check_poisoned().is_err() {
            return;
        }
        let id = self.next_file_id(a);
        let (vfs, root) = (self.vfs.clone(), self.root.clone());
        let len = self.block_size * self.blocks_per_file as u64;
        let spawned = std::thread::Builder::new()
            .name("walrus-prealloc".into())
            .spawn(move || create_file(&*vfs, &root, id, len));
        // No thread: the file is made inline when it is needed.
        a.spare = spawned.ok();
    }

    /// Marks blocks dead and deletes files that hold nothing alive.
    pub(super) fn release_blocks(&self, blocks: &[Block]) -> io::Result<()> {
        let mut a = lock(&self.alloc);
        let mut gone = Vec::new();
        for b in blocks {
            if let Some(m) = a.files.get_mut(&b.file.id) {
                m.live = m.live.saturating_sub(b.span);
                if m.live == 0 && a.current != Some(b.file.id) {
                    gone.push(b.file.id);
                }
            }
        }
        for id in gone {
            if let Some(m) = a.files.remove(&id) {
                lock(&self.dirty_files).remove(&id);
                self.vfs.remove_file(&m.file.path)?;
            }
        }
        Ok(())
    }
}

pub(super) fn create_file(vfs: &dyn Vfs, root: &Path, id: u64, len: u64) -> io::Result<WalFile> {
    let tmp = root.join(format!("{id}.tmp"));
    let path = root.join(id.to_string());
    let file = vfs.open(&tmp, OpenMode::CreateTruncate)?;
    // The file is sparse: blocks reserve their space as they fill (`Block::reserved`). A size
    // limit (EFBIG) shows up here; a full disk when a block reserves space, before its write.
    if let Err(e) = file.set_len(len).and_then(|_| file.sync_data()) {
        drop(file);
        let _ = vfs.remove_file(&tmp);
        return Err(e);
    }
    vfs.rename(&tmp, &path)?;
    vfs.sync_dir(root)?;
    Ok(WalFile::new(id, path, file))
}

// ----- recovery -----------------------------------------------------------------------------
