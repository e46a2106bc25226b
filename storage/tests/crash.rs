//! Crash safety, proved with real crashes: a child process does mixed appends, batch appends,
//! cursor commits and retention on real files and is killed with SIGKILL at a random moment; the
//! parent reopens the log and checks every promise:
//! - every append the child saw complete is present, byte-identical (process crashes lose nothing
//!   that reached the page cache, under any fsync schedule);
//! - no corrupt or partial entry is ever returned (every entry's content is a function of its
//!   topic and position, so any damage shows);
//! - a batch in flight at the kill is there completely or not at all;
//! - cursors and retention marks are at their last completed value or the one in flight.
//!
//! `WALRUS_CRASH_ITERATIONS` sets the number of kill points (default 200). Every other child
//! runs the mmap backend (buffered `pwrite`); the others the fd backend, which on a file system
//! that takes `O_DIRECT` writes asynchronously through io_uring: a killed child's writes may
//! still be in flight when the parent reopens (the directory lock waits them out), and every
//! reopen seals the tails, so later children write fresh blocks.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;
use walrus::{FsyncSchedule, Walrus, WalrusBuilder};

const TOPICS: u32 = 4;

fn builder(dir: &std::path::Path) -> WalrusBuilder {
    Walrus::builder()
        .data_dir(dir)
        .block_size(64 * 1024)
        .blocks_per_file(6)
        .fsync(FsyncSchedule::Milliseconds(5))
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
    x ^ (x >> 33)
}

/// The one valid content of entry `pos` in topic `t` written in `epoch`: the epoch (first 8
/// bytes) changes with every cut and restart, so an entry a cut dropped never passes for the one
/// appended at its position afterwards.
fn content(t: u32, pos: u64, epoch: u64) -> Vec<u8> {
    let h = mix(((t as u64) << 40) ^ pos ^ epoch.rotate_left(20));
    let len = if h.is_multiple_of(97) {
        70_000
    } else {
        (h % 3000) as usize
    };
    let mut v = epoch.to_le_bytes().to_vec();
    v.extend((0..len).map(|i| (h.wrapping_add(i as u64) % 253) as u8));
    v
}

/// The epoch an entry says it was written in.
fn epoch_of(data: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(..8)?.try_into().ok()?))
}

fn topic(t: u32) -> String {
    format!("topic-{t}")
}

/// The child: endless random operations, each reported on stdout before and after.
#[test]
#[ignore = "run by the crash test as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var("WALRUS_CRASH_DIR") else {
        return;
    };
    // Odd seeds use the mmap backend: crashes must be as safe with writes into mapped files.
    let seed_for_backend: u64 = std::env::var("WALRUS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if seed_for_backend % 2 == 1 {
        walrus::disable_fd_backend();
    }
    let seed: u64 = std::env::var("WALRUS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let wal = builder(std::path::Path::new(&dir)).open().unwrap();
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out, "PATH {}", wal.write_path().as_str()).unwrap();
    let mut rng = mix(seed) | 1;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    // Every child writes in epochs of its own, a new one after each cut or restart.
    let mut epochs: HashMap<u32, u64> = (0..TOPICS).map(|t| (t, seed << 16)).collect();
    // One child in four cuts often, so that kills land in and right after cuts.
    let ops = if seed.is_multiple_of(4) { 40 } else { 23 };
    loop {
        let t = next(TOPICS as u64) as u32;
        let name = topic(t);
        let stats = wal.topic_stats(&name);
        let start = stats.as_ref().map(|s| s.next_position).unwrap_or(0);
        let ep = epochs[&t];
        let content = |t: u32, p: u64| content(t, p, epochs[&t]);
        match next(ops) {
            // Two topics' batches in one write submission: each atomic on its own.
            8..=10 => {
                let t2 = (t + 1) % TOPICS;
                let name2 = topic(t2);
                let start2 = wal
                    .topic_stats(&name2)
                    .map(|s| s.next_position)
                    .unwrap_or(0);
                let (n, n2) = (1 + next(30), 1 + next(30));
                let d1: Vec<Vec<u8>> = (start..start + n).map(|p| content(t, p)).collect();
                let d2: Vec<Vec<u8>> = (start2..start2 + n2).map(|p| content(t2, p)).collect();
                let r1: Vec<&[u8]> = d1.iter().map(|d| d.as_slice()).collect();
                let r2: Vec<&[u8]> = d2.iter().map(|d| d.as_slice()).collect();
                writeln!(out, "BEGIN {t} {start} {n} {ep}").unwrap();
                writeln!(out, "BEGIN {t2} {start2} {n2} {}", epochs[&t2]).unwrap();
                out.flush().unwrap();
                let res = wal.batch_append_many(&[(&name, &r1), (&name2, &r2)]);
                assert_eq!(res[0].as_ref().unwrap(), &(start..start + n));
                assert_eq!(res[1].as_ref().unwrap(), &(start2..start2 + n2));
                writeln!(out, "END {t} {}", start + n).unwrap();
                writeln!(out, "END {t2} {}", start2 + n2).unwrap();
            }
            0..=11 => {
                let n = 1 + next(40);
                let data: Vec<Vec<u8>> = (start..start + n).map(|p| content(t, p)).collect();
                let refs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
                writeln!(out, "BEGIN {t} {start} {n} {ep}").unwrap();
                out.flush().unwrap();
                let r = wal.batch_append(&name, &refs).unwrap();
                assert_eq!(r, start..start + n);
                writeln!(out, "END {t} {}", start + n).unwrap();
            }
            12..=15 => {
                writeln!(out, "BEGIN {t} {start} 1 {ep}").unwrap();
                out.flush().unwrap();
                assert_eq!(wal.append(&name, &content(t, start)).unwrap(), start);
                writeln!(out, "END {t} {}", start + 1).unwrap();
            }
            16 | 17 => {
                let pos = next(start + 1);
                writeln!(out, "CSET {t} {pos}").unwrap();
                out.flush().unwrap();
                wal.set_cursor(&name, b"c", pos, format!("m{pos}").as_bytes())
                    .unwrap();
                writeln!(out, "CDONE {t} {pos}").unwrap();
            }
            18 => {
                let first = stats.as_ref().map(|s| s.first_position).unwrap_or(0);
                if start > first + 50 {
                    let pos = first + next(start - first - 20);
                    writeln!(out, "TRIM {t} {pos}").unwrap();
                    out.flush().unwrap();
                    wal.truncate_before(&name, pos).unwrap();
                    writeln!(out, "TDONE {t} {pos}").unwrap();
                }
            }
            19 => {
                wal.flush().unwrap();
            }
            // Restarts (a snapshot install) are rarer than cuts.
            22 | 39 => {
                let pos = start + next(30);
                writeln!(out, "RESTART {t} {pos}").unwrap();
                out.flush().unwrap();
                wal.restart_at(&name, pos).unwrap();
                epochs.insert(t, ep + 1);
                writeln!(out, "RDONE {t} {pos}").unwrap();
            }
            _ => {
                let first = stats.as_ref().map(|s| s.first_position).unwrap_or(0);
                if start > first {
                    let pos = first + next(start - first);
                    writeln!(out, "CUT {t} {pos}").unwrap();
                    out.flush().unwrap();
                    wal.truncate_after(&name, pos).unwrap();
                    epochs.insert(t, ep + 1);
                    writeln!(out, "CUTDONE {t} {pos}").unwrap();
                }
            }
        }
        out.flush().unwrap();
    }
}

#[derive(Default, Clone, Debug)]
struct Expect {
    next: u64,
    /// (start, end, epoch) of the batch in flight at the kill.
    in_flight: Option<(u64, u64, u64)>,
    /// Runs of acknowledged entries: start position → the epoch they were written in (a
    /// position's epoch is that of the greatest start at or below it).
    epochs: std::collections::BTreeMap<u64, u64>,
    /// A cut or restart in flight at the kill: (position, is a restart).
    cut_in_flight: Option<(u64, bool)>,
    cursor: Option<u64>,
    cursor_in_flight: Option<u64>,
    trim: u64,
    trim_in_flight: Option<u64>,
}

/// A completed cut (`truncate_after`) or restart in the model.
fn cut(e: &mut Expect, p: u64, restart: bool) {
    let to = if restart { p } else { p.max(e.trim) };
    if !restart && to >= e.next {
        return;
    }
    e.epochs.split_off(&to);
    e.next = to;
    e.cursor = e.cursor.map(|c| c.min(to));
    if restart {
        e.trim = p;
    }
}

#[test]
fn kill_at_random_points_loses_nothing_acknowledged() {
    let iterations: u64 = std::env::var("WALRUS_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut expect: HashMap<u32, Expect> = HashMap::new();
    let mut total_entries = 0u64;
    // Cuts and restarts completed, and those in flight at a kill.
    let (mut cuts_done, mut cuts_killed) = (0u64, 0u64);
    // Children per write path (each reports the one its instance chose).
    let mut paths: HashMap<String, u64> = HashMap::new();
    let mut direct_here = false;
    for it in 0..iterations {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("WALRUS_CRASH_DIR", dir.path())
            .env("WALRUS_CRASH_SEED", (it + 1).to_string())
            .env("WALRUS_QUIET", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Half the children of each backend are killed from the start (often while they
        // recover); the others only once they have opened and said which write path they use,
        // so those kills land among operations.
        let mut lines = Vec::new();
        if (it / 2) % 2 == 1 {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !lines.iter().any(|l: &String| l.contains("PATH ")) {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5 + mix(it) % 60));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        for line in &lines {
            if let Some(p) = line.split("PATH ").nth(1) {
                *paths.entry(p.trim().to_string()).or_default() += 1;
                continue;
            }
            let known = [
                "BEGIN", "END", "CSET", "CDONE", "TRIM", "TDONE", "CUT", "CUTDONE", "RESTART",
                "RDONE",
            ];
            // The harness prints "test crash_child ... " before the child's first line, on the
            // same line: the report starts at its keyword (a first BEGIN was once missed so).
            let f: Vec<&str> = line
                .split_whitespace()
                .skip_while(|w| !known.contains(w))
                .collect();
            if f.len() < 3 || !known.contains(&f[0]) {
                continue;
            }
            let t: u32 = f[1].parse().unwrap();
            let e = expect.entry(t).or_default();
            let a: u64 = f[2].parse().unwrap();
            match f[0] {
                "BEGIN" => {
                    let n: u64 = f[3].parse().unwrap();
                    e.in_flight = Some((a, a + n, f[4].parse().unwrap()));
                }
                "END" => {
                    if let Some((s, _, ep)) = e.in_flight.take() {
                        e.epochs.insert(s, ep);
                    }
                    e.next = a;
                }
                "CUT" => e.cut_in_flight = Some((a, false)),
                "RESTART" => e.cut_in_flight = Some((a, true)),
                "CUTDONE" | "RDONE" => {
                    cuts_done += 1;
                    e.cut_in_flight = None;
                    cut(e, a, f[0] == "RDONE");
                }
                "CSET" => e.cursor_in_flight = Some(a),
                "CDONE" => {
                    e.cursor = Some(a);
                    e.cursor_in_flight = None;
                }
                "TRIM" => e.trim_in_flight = Some(a),
                "TDONE" => {
                    e.trim = e.trim.max(a);
                    e.trim_in_flight = None;
                }
                _ => {}
            }
        }
        // Reopen and check every promise.
        let wal = builder(dir.path()).open().unwrap();
        direct_here |= wal.write_path() == walrus::WritePath::UringDirect;
        for t in 0..TOPICS {
            let e = expect.entry(t).or_default();
            let name = topic(t);
            let Some(st) = wal.topic_stats(&name) else {
                assert_eq!(e.next, 0, "iteration {it}: topic {t} vanished");
                assert!(e.in_flight.is_none_or(|(s, _, _)| s == 0));
                continue;
            };
            // The operation in flight at the kill happened or did not: which one, the state
            // says; the model follows it, then everything is checked against the model.
            if let Some((p, restart)) = e.cut_in_flight.take() {
                cuts_killed += 1;
                let happened = if restart {
                    st.first_position == p && st.next_position == p
                } else {
                    // The child cuts only below the end.
                    st.next_position == p.max(e.trim) && p < e.next
                };
                if happened {
                    cut(e, p, restart);
                }
            }
            match e.in_flight.take() {
                Some((s, end, ep)) => {
                    assert!(
                        st.next_position == s || st.next_position == end,
                        "iteration {it}: topic {t}: batch {s}..{end} in flight, found next {}",
                        st.next_position
                    );
                    if st.next_position == end {
                        e.epochs.insert(s, ep);
                        e.next = end;
                    }
                }
                None => assert_eq!(
                    st.next_position, e.next,
                    "iteration {it}: topic {t}: acknowledged entries lost (or a cut undone)"
                ),
            }
            let ok_first =
                |f: u64| f == e.trim || e.trim_in_flight == Some(f) || f < e.trim && e.trim == 0;
            assert!(
                st.first_position >= e.trim || ok_first(st.first_position),
                "iteration {it}: topic {t}: retention went back: {} < {}",
                st.first_position,
                e.trim
            );
            if let Some(tf) = e.trim_in_flight {
                assert!(st.first_position <= tf.max(e.trim));
            }
            let mut p = st.first_position;
            while p < st.next_position {
                let got = wal.read_at(&name, p, 256 * 1024, 2000).unwrap();
                assert!(!got.is_empty(), "iteration {it}: topic {t}: hole at {p}");
                for en in got {
                    assert_eq!(en.position, p);
                    let want = e.epochs.range(..=p).next_back().map(|(_, ep)| *ep);
                    let ep = epoch_of(&en.data);
                    assert!(
                        ep.is_some_and(|ep| en.data == content(t, p, ep)),
                        "iteration {it}: topic {t}: entry {p} damaged"
                    );
                    assert_eq!(
                        ep, want,
                        "iteration {it}: topic {t}: entry {p} is from another epoch (a cut entry back?)"
                    );
                    p += 1;
                }
            }
            let c = wal.cursor(&name, b"c").map(|c| c.position);
            if let Some(cp) = c {
                assert!(cp <= st.next_position);
            }
            let allowed = [e.cursor, e.cursor_in_flight.or(e.cursor)];
            assert!(
                allowed.contains(&c)
                    || c.is_some_and(|cp| e
                        .cursor
                        .is_some_and(|ec| cp == ec.min(st.next_position))),
                "iteration {it}: topic {t}: cursor {c:?}, expected {allowed:?}"
            );
            total_entries += st.next_position - st.first_position;
            // The reopened state is the new baseline.
            e.next = st.next_position;
            e.cursor = c;
            e.cursor_in_flight = None;
            e.trim = st.first_position;
            e.trim_in_flight = None;
        }
        drop(wal);
    }
    eprintln!(
        "{iterations} kill points, {total_entries} entries verified in total; children by write path: {paths:?}; {cuts_done} cuts and restarts completed, {cuts_killed} killed in flight"
    );
    if iterations >= 50 {
        assert!(
            cuts_done > 0 && cuts_killed > 0,
            "the children cut too little"
        );
    }
    if direct_here && iterations >= 4 {
        // Where O_DIRECT works, the fd-backend children (every other one; those killed while
        // opening may not have reported) wrote through it.
        assert!(
            paths.get("uring_direct").copied().unwrap_or(0) >= iterations / 8,
            "too few children on the O_DIRECT path: {paths:?}"
        );
    }
}
