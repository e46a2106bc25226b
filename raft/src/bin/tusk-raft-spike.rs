//! The openraft spike: one node hosting many Raft groups, each group's log a topic of the
//! node's one Walrus instance, peers reached through `tusk_raft::transport`.
//!
//! Driven by `scripts/raft-spike.py` through stdin/stdout, one line each way:
//! - out, every `--report-ms`: `{"report": {...}}` (leaders, groups with a leader, messages
//!   sent, fsyncs);
//! - in `load GROUPS SECONDS CONCURRENCY SIZE FILE [BASE]`: for each of groups `0..GROUPS`,
//!   CONCURRENCY writers propose SIZE-byte entries (record ids from BASE) while this node leads
//!   the group, until SECONDS pass; each acknowledgement is written to FILE as
//!   `group index record latency_us`; out `{"load": {...}}`;
//! - in `dump GROUPS FILE`: every applied normal entry of groups `0..GROUPS` as
//!   `group index seq`; out `{"dumped": N}`;
//! - in `report` (one report now), `quiesce on|off` (heartbeats and elections of every group),
//!   `quit`.

use clap::Parser;
use openraft::{BasicNode, Config, EntryPayload, RaftLogReader, ServerState, SnapshotPolicy};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tusk_raft::log_store::{LogStore, Syncer};
use tusk_raft::state_machine::StateMachine;
use tusk_raft::transport::Transport;
use tusk_raft::{Group, GroupError, Raft, RaftGroup};

#[derive(Parser, Debug)]
struct Args {
    /// This node's id.
    #[arg(long)]
    id: u64,
    /// Every node, `ID=HOST:PORT`, comma-separated (this one included).
    #[arg(long)]
    peers: String,
    #[arg(long, default_value_t = 1000)]
    groups: u64,
    #[arg(long)]
    data: std::path::PathBuf,
    /// This node initializes every group's membership (one node of the cluster does).
    #[arg(long)]
    init: bool,
    #[arg(long, default_value_t = 50)]
    heartbeat_ms: u64,
    #[arg(long, default_value_t = 150)]
    election_min_ms: u64,
    #[arg(long, default_value_t = 300)]
    election_max_ms: u64,
    #[arg(long, default_value_t = 1000)]
    report_ms: u64,
    /// Heartbeats of every group this node leads sent at one tick (one frame per peer per
    /// tick) instead of each group's own timer: the "merge heartbeats per node pair" remedy.
    #[arg(long)]
    sync_heartbeats: bool,
    /// Walrus's O_DIRECT io_uring write path (false: buffered writes, made durable by the
    /// syncer's fsync all the same).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    direct_io: bool,
}

fn parse_peers(s: &str) -> Result<BTreeMap<u64, SocketAddr>, String> {
    s.split(',')
        .map(|p| {
            let (id, addr) = p.split_once('=').ok_or(format!("bad peer {p}"))?;
            Ok((
                id.parse().map_err(|e| format!("{p}: {e}"))?,
                addr.parse().map_err(|e| format!("{p}: {e}"))?,
            ))
        })
        .collect()
}

struct Node {
    id: u64,
    groups: Vec<(Raft, LogStore, StateMachine)>,
    transport: Arc<Transport>,
    syncer: Syncer,
}

fn out(line: serde_json::Value) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let peers = parse_peers(&args.peers)?;
    let me = *peers.get(&args.id).ok_or("--id not among --peers")?;
    std::fs::create_dir_all(&args.data)?;
    let wal = Arc::new(
        walrus::Walrus::builder()
            .data_dir(&args.data)
            // Durability comes from the syncer's flushes (group commit), not a schedule.
            .fsync(walrus::FsyncSchedule::NoFsync)
            .direct_io(args.direct_io)
            .open()?,
    );
    let syncer = Syncer::start(wal.clone())?;
    let transport = Transport::new(args.id, peers.iter().map(|(k, v)| (*k, *v)).collect());
    let config = Arc::new(
        Config {
            cluster_name: "tusk-spike".into(),
            heartbeat_interval: args.heartbeat_ms,
            election_timeout_min: args.election_min_ms,
            election_timeout_max: args.election_max_ms,
            // The spike's state machine lives in memory: logs are kept whole, so a restarted
            // node rebuilds it by re-applying its log.
            snapshot_policy: SnapshotPolicy::Never,
            ..Default::default()
        }
        .validate()?,
    );
    let listener = tokio::net::TcpListener::bind(me).await?;
    tokio::spawn(transport.clone().serve(listener));
    let started = Instant::now();
    let mut groups = Vec::with_capacity(args.groups as usize);
    for g in 0..args.groups {
        let store = LogStore::new(wal.clone(), &format!("g{g}"), syncer.clone());
        let sm = StateMachine::default();
        let raft = Raft::new(
            args.id,
            config.clone(),
            transport.network(g),
            store.clone(),
            sm.clone(),
        )
        .await?;
        transport.add_group(g, raft.clone());
        groups.push((raft, store, sm));
    }
    if args.init {
        let members: BTreeMap<u64, BasicNode> = peers
            .iter()
            .map(|(id, a)| (*id, BasicNode::new(a.to_string())))
            .collect();
        for (raft, _, _) in &groups {
            if !raft.is_initialized().await? {
                raft.initialize(members.clone()).await?;
            }
        }
    }
    out(
        serde_json::json!({"started": {"groups": args.groups, "ms": started.elapsed().as_millis() as u64}}),
    );
    let node = Arc::new(Node {
        id: args.id,
        groups,
        transport,
        syncer,
    });
    if args.sync_heartbeats {
        for (raft, _, _) in &node.groups {
            raft.runtime_config().heartbeat(false);
        }
        let n = node.clone();
        let every = Duration::from_millis(args.heartbeat_ms.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                for (raft, _, _) in &n.groups {
                    if raft.metrics().borrow().state == ServerState::Leader {
                        let _ = raft.trigger().heartbeat().await;
                    }
                }
            }
        });
    }
    let n = node.clone();
    let period = Duration::from_millis(args.report_ms.max(10));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            out(serde_json::json!({"report": n.report()}));
        }
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["load", groups, secs, conc, size, file, rest @ ..] => {
                // Record ids: from BASE (unique per load command across restarts) or id << 48.
                let base = match rest.first() {
                    Some(b) => b.parse()?,
                    None => node.id << 48,
                };
                let r = node
                    .load(
                        groups.parse()?,
                        Duration::from_secs_f64(secs.parse()?),
                        conc.parse()?,
                        size.parse()?,
                        file,
                        base,
                    )
                    .await?;
                out(serde_json::json!({ "load": r }));
            }
            ["dump", groups, file] => {
                let n = node.dump(groups.parse()?, file).await?;
                out(serde_json::json!({ "dumped": n }));
            }
            ["report"] => out(serde_json::json!({"report": node.report()})),
            // What quiescing idle groups would save: heartbeats, elections and the core's
            // timer off (on) in
            // every group (a real design turns them back on at the first proposal or timeout).
            ["quiesce", on] => {
                let on = *on == "on";
                for (raft, _, _) in &node.groups {
                    raft.runtime_config().heartbeat(!on);
                    raft.runtime_config().elect(!on);
                    raft.runtime_config().tick(!on);
                }
                out(serde_json::json!({"quiesced": on}));
            }
            ["quit"] => break,
            _ => out(serde_json::json!({"error": format!("unknown command {line}")})),
        }
    }
    for (raft, _, _) in &node.groups {
        let _ = raft.shutdown().await;
    }
    Ok(())
}

impl Node {
    fn report(&self) -> serde_json::Value {
        let (mut leading, mut with_leader) = (0u64, 0u64);
        for (raft, _, _) in &self.groups {
            let m = raft.metrics().borrow().clone();
            if m.state == ServerState::Leader {
                leading += 1;
            }
            if m.current_leader.is_some() {
                with_leader += 1;
            }
        }
        let s = &self.transport.stats;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "node": self.id,
            "leading": leading,
            "with_leader": with_leader,
            "heartbeats": ld(&s.heartbeats),
            "appends": ld(&s.appends),
            "votes": ld(&s.votes),
            "frames": ld(&s.frames),
            "bytes": ld(&s.bytes),
            "fsyncs": ld(&self.syncer.stats().flushes),
            "truncations": ld(&tusk_raft::log_store::TRUNCATIONS),
        })
    }

    /// Proposes entries to groups `0..groups`: CONCURRENCY writers per group propose while
    /// this node leads it (and wait while it does not: leadership moves under faults). Every
    /// acknowledgement is logged as it arrives (flushed at least every 50 ms), so those of a
    /// node killed mid-run are checked too.
    async fn load(
        &self,
        groups: u64,
        dur: Duration,
        conc: usize,
        size: usize,
        file: &str,
        base: u64,
    ) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        let deadline = Instant::now() + dur;
        let seq = Arc::new(AtomicU64::new(base));
        let log = Arc::new(std::sync::Mutex::new((
            std::io::BufWriter::new(std::fs::File::create(file)?),
            Instant::now(),
        )));
        let mut tasks = Vec::new();
        let led = self
            .groups
            .iter()
            .take(groups as usize)
            .filter(|(r, _, _)| r.metrics().borrow().state == ServerState::Leader)
            .count();
        for (g, (raft, _, _)) in self.groups.iter().enumerate().take(groups as usize) {
            for _ in 0..conc {
                let raft = raft.clone();
                let group = RaftGroup(raft.clone());
                let (seq, log) = (seq.clone(), log.clone());
                tasks.push(tokio::spawn(async move {
                    let mut lat: Vec<u64> = Vec::new();
                    let mut errors = 0u64;
                    while Instant::now() < deadline {
                        if raft.metrics().borrow().state != ServerState::Leader {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        let s = seq.fetch_add(1, Ordering::Relaxed);
                        let mut data = vec![0u8; size.max(16)];
                        data[..8].copy_from_slice(&(g as u64).to_le_bytes());
                        data[8..16].copy_from_slice(&s.to_le_bytes());
                        let t = Instant::now();
                        // A proposal without an answer in 5 s is indeterminate (Jepsen's
                        // :info): not acknowledged, maybe committed (a leader cut off from the
                        // others keeps its writers waiting).
                        let Ok(res) =
                            tokio::time::timeout(Duration::from_secs(5), group.propose(data)).await
                        else {
                            errors += 1;
                            continue;
                        };
                        match res {
                            Ok(index) => {
                                let us = t.elapsed().as_micros() as u64;
                                lat.push(us);
                                let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                                let _ = writeln!(l.0, "{g} {index} {s} {us}");
                                if l.1.elapsed() >= Duration::from_millis(50) {
                                    let _ = l.0.flush();
                                    l.1 = Instant::now();
                                }
                            }
                            Err(GroupError::NotLeader(_)) | Err(GroupError::Unavailable(_)) => {
                                errors += 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                    (lat, errors)
                }));
            }
        }
        let started = Instant::now();
        let mut lat = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await?;
            lat.extend(l);
            errors += e;
        }
        log.lock().unwrap_or_else(|p| p.into_inner()).0.flush()?;
        let secs = started.elapsed().as_secs_f64().max(dur.as_secs_f64());
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        Ok(serde_json::json!({
            "node": self.id,
            "groups_led": led,
            "acks": lat.len(),
            "errors": errors,
            "per_sec": lat.len() as f64 / secs,
            "p50_us": pct(0.5),
            "p99_us": pct(0.99),
            "p999_us": pct(0.999),
        }))
    }

    /// Writes every applied normal entry of groups `0..groups`.
    async fn dump(&self, groups: u64, file: &str) -> Result<u64, Box<dyn std::error::Error>> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(file)?);
        let mut n = 0;
        for (g, (raft, store, _)) in self.groups.iter().enumerate().take(groups as usize) {
            let Some(applied) = raft.metrics().borrow().last_applied.map(|l| l.index) else {
                continue;
            };
            let mut reader = store.clone();
            let entries = reader.try_get_log_entries(0..=applied).await?;
            for e in entries {
                if let EntryPayload::Normal(r) = &e.payload {
                    let seq = r.0.get(8..16).map(|b| {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(b);
                        u64::from_le_bytes(a)
                    });
                    writeln!(f, "{g} {} {}", e.log_id.index, seq.unwrap_or(u64::MAX))?;
                    n += 1;
                }
            }
        }
        f.flush()?;
        Ok(n)
    }
}
