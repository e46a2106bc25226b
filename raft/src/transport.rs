//! Many Raft groups over TCP: one outgoing connection per peer carries every group's requests
//! to it (and brings their answers back), and messages queued while a write is in flight go
//! out together in one frame — heartbeats of a thousand groups to one peer cost a few writes,
//! not a thousand.
//!
//! Wire: frames of `len u32 (little-endian) | bincode(Vec<Message>)`, at most
//! [`MAX_FRAME`] bytes. A message names its group and a request id; answers carry the id.

use crate::{GroupId, NodeId, Raft, TypeConfig};
use bincode::Options;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Largest frame accepted (a peer announcing more is cut off).
pub const MAX_FRAME: usize = 64 << 20;
/// Messages gathered into one frame at most.
const MAX_BATCH: usize = 4096;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub group: GroupId,
    pub id: u64,
    pub body: Body,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub enum Body {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    AppendAnswer(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    VoteAnswer(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    SnapshotAnswer(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The group is not hosted by the receiver (yet).
    NoGroup,
}

/// What the transport has sent.
#[derive(Default, Debug)]
pub struct NetStats {
    /// AppendEntries without entries (heartbeats) and with entries.
    pub heartbeats: AtomicU64,
    pub appends: AtomicU64,
    pub votes: AtomicU64,
    pub snapshots: AtomicU64,
    /// Frames (socket writes) and bytes sent, requests and answers together.
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Body>>>>;

/// The outgoing link to one peer.
struct Peer {
    queue: mpsc::UnboundedSender<Message>,
    pending: Pending,
}

/// A node's transport: its groups (for incoming requests) and its links to peers.
pub struct Transport {
    node: NodeId,
    groups: RwLock<HashMap<GroupId, Raft>>,
    peers: Mutex<HashMap<NodeId, Arc<Peer>>>,
    addrs: HashMap<NodeId, SocketAddr>,
    next_id: AtomicU64,
    pub stats: Arc<NetStats>,
}

impl Transport {
    pub fn new(node: NodeId, addrs: HashMap<NodeId, SocketAddr>) -> Arc<Transport> {
        Arc::new(Transport {
            node,
            groups: RwLock::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            addrs,
            next_id: AtomicU64::new(1),
            stats: Arc::default(),
        })
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Makes a group reachable by peers.
    pub fn add_group(&self, group: GroupId, raft: Raft) {
        self.groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group, raft);
    }

    fn group(&self, group: GroupId) -> Option<Raft> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group)
            .cloned()
    }

    /// The network factory for one group.
    pub fn network(self: &Arc<Self>, group: GroupId) -> GroupNetwork {
        GroupNetwork {
            transport: self.clone(),
            group,
        }
    }

    /// Accepts peers' connections and serves their requests until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> io::Result<()> {
        loop {
            let (sock, _) = listener.accept().await?;
            let _ = sock.set_nodelay(true);
            let t = self.clone();
            tokio::spawn(async move {
                let _ = t.serve_connection(sock).await;
            });
        }
    }

    async fn serve_connection(self: Arc<Self>, sock: TcpStream) -> io::Result<()> {
        let (mut rd, wr) = sock.into_split();
        let (tx, rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(write_loop(wr, rx, self.stats.clone()));
        loop {
            for msg in read_frame(&mut rd).await? {
                let Some(raft) = self.group(msg.group) else {
                    let _ = tx.send(Message {
                        group: msg.group,
                        id: msg.id,
                        body: Body::NoGroup,
                    });
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let body = match msg.body {
                        Body::Append(r) => Body::AppendAnswer(raft.append_entries(r).await),
                        Body::Vote(r) => Body::VoteAnswer(raft.vote(r).await),
                        Body::Snapshot(r) => Body::SnapshotAnswer(raft.install_snapshot(r).await),
                        _ => return,
                    };
                    let _ = tx.send(Message {
                        group: msg.group,
                        id: msg.id,
                        body,
                    });
                });
            }
        }
    }

    /// The link to `peer`, made (and its connection started) on first use.
    fn peer(self: &Arc<Self>, peer: NodeId) -> Option<Arc<Peer>> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = peers.get(&peer) {
            if !p.queue.is_closed() {
                return Some(p.clone());
            }
        }
        let addr = *self.addrs.get(&peer)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let link = Arc::new(Peer {
            queue: tx,
            pending: Arc::default(),
        });
        tokio::spawn(connect_loop(
            addr,
            rx,
            link.pending.clone(),
            self.stats.clone(),
        ));
        peers.insert(peer, link.clone());
        Some(link)
    }

    /// Sends one request and waits for its answer (at most `ttl`).
    async fn call(
        self: &Arc<Self>,
        peer: NodeId,
        group: GroupId,
        body: Body,
        ttl: Duration,
    ) -> Result<Body, Unreachable> {
        let unreachable = |why: &str| Unreachable::new(&io::Error::other(why.to_string()));
        let link = self.peer(peer).ok_or_else(|| unreachable("unknown peer"))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        link.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        if link.queue.send(Message { group, id, body }).is_err() {
            return Err(unreachable("link closed"));
        }
        let res = tokio::time::timeout(ttl, rx).await;
        link.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        match res {
            Ok(Ok(Body::NoGroup)) => Err(unreachable("group not hosted by the peer")),
            Ok(Ok(b)) => Ok(b),
            Ok(Err(_)) => Err(unreachable("connection lost")),
            Err(_) => Err(unreachable("timed out")),
        }
    }
}

/// Keeps one connection to a peer: connects, writes queued requests in frames, reads answers.
/// A failed connection fails the requests waiting on it; the next request reconnects.
async fn connect_loop(
    addr: SocketAddr,
    mut rx: mpsc::UnboundedReceiver<Message>,
    pending: Pending,
    stats: Arc<NetStats>,
) {
    while let Some(first) = rx.recv().await {
        let sock =
            match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                _ => {
                    // Unreachable: what is queued fails now (openraft backs off and retries).
                    let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
                    p.remove(&first.id);
                    while let Ok(m) = rx.try_recv() {
                        p.remove(&m.id);
                    }
                    continue;
                }
            };
        let _ = sock.set_nodelay(true);
        let (mut rd, mut wr) = sock.into_split();
        let pend = pending.clone();
        let reader = tokio::spawn(async move {
            while let Ok(msgs) = read_frame(&mut rd).await {
                let mut p = pend.lock().unwrap_or_else(|p| p.into_inner());
                for m in msgs {
                    if let Some(tx) = p.remove(&m.id) {
                        let _ = tx.send(m.body);
                    }
                }
            }
        });
        let mut batch = vec![first];
        loop {
            linger().await;
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            count_requests(&stats, &batch);
            if write_frame(&mut wr, &batch, &stats).await.is_err() || reader.is_finished() {
                break;
            }
            batch.clear();
            match rx.recv().await {
                Some(m) => batch.push(m),
                None => break,
            }
        }
        reader.abort();
        // Everything in flight on this connection fails; callers retry on a new one.
        pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// `TUSK_RAFT_LINGER_MS`: wait this long after a first message before writing, so that more
/// messages join its frame (measured in docs/cluster.md; 0, the default, writes at once).
async fn linger() {
    static LINGER: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let ms = *LINGER.get_or_init(|| {
        std::env::var("TUSK_RAFT_LINGER_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    });
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

fn count_requests(stats: &NetStats, batch: &[Message]) {
    for m in batch {
        let c = match &m.body {
            Body::Append(r) if r.entries.is_empty() => &stats.heartbeats,
            Body::Append(_) => &stats.appends,
            Body::Vote(_) => &stats.votes,
            Body::Snapshot(_) => &stats.snapshots,
            _ => continue,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes answers queued for one incoming connection, batched like requests.
async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Message>,
    stats: Arc<NetStats>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        linger().await;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if write_frame(&mut wr, &batch, &stats).await.is_err() {
            return;
        }
    }
}

/// bincode's fixed-int encoding, with no value decoded larger than a frame: a length inside a
/// frame cannot make the reader allocate more than the frame could hold.
fn wire() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(MAX_FRAME as u64)
}

async fn write_frame(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    batch: &[Message],
    stats: &NetStats,
) -> io::Result<()> {
    let body = wire().serialize(batch).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::other("frame too large"));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    wr.write_all(&buf).await?;
    stats.frames.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
    Ok(())
}

async fn read_frame(rd: &mut tokio::net::tcp::OwnedReadHalf) -> io::Result<Vec<Message>> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut buf = vec![0u8; len];
    rd.read_exact(&mut buf).await?;
    wire()
        .deserialize(&buf)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// One group's view of the transport (openraft's network factory).
pub struct GroupNetwork {
    transport: Arc<Transport>,
    group: GroupId,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = GroupClient;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> GroupClient {
        GroupClient {
            transport: self.transport.clone(),
            group: self.group,
            target,
        }
    }
}

/// One group's client to one peer.
pub struct GroupClient {
    transport: Arc<Transport>,
    group: GroupId,
    target: NodeId,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

fn unexpected<E: std::error::Error>() -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&io::Error::other("unexpected answer")))
}

impl RaftNetwork<TypeConfig> for GroupClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let b = self
            .transport
            .call(
                self.target,
                self.group,
                Body::Append(rpc),
                option.hard_ttl(),
            )
            .await?;
        match b {
            Body::AppendAnswer(Ok(r)) => Ok(r),
            Body::AppendAnswer(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let b = self
            .transport
            .call(self.target, self.group, Body::Vote(rpc), option.hard_ttl())
            .await?;
        match b {
            Body::VoteAnswer(Ok(r)) => Ok(r),
            Body::VoteAnswer(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let b = self
            .transport
            .call(
                self.target,
                self.group,
                Body::Snapshot(rpc),
                option.hard_ttl(),
            )
            .await?;
        match b {
            Body::SnapshotAnswer(Ok(r)) => Ok(r),
            Body::SnapshotAnswer(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(unexpected()),
        }
    }
}
