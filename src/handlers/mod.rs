//! One module per Kafka API. `dispatch` decodes the body by the version table, calls the
//! handler, and encodes its response (none for acks=0 produce).

use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tusk_protocol::header::{decode_body, encode_response, Request};

use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::authorizer::Requester;

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_client_quotas;
pub mod alter_configs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_producers;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod txn_offset_commit;

/// What a handler may need to know about the connection a request came in on.
pub struct ConnCtx {
    pub peer: std::net::SocketAddr,
    /// (host, port) clients of this listener are told to connect to.
    pub advertised: (String, i32),
    pub client_id: String,
    /// Produce requests whose batches the write stage has not yet answered (see `dispatch`).
    pub unapplied: Vec<tokio::sync::oneshot::Receiver<()>>,
    /// Who the client is, and how far it is in authenticating.
    pub auth: Auth,
    /// The peer's address as ACL hosts name it (`acl::host_string`).
    pub host: String,
    /// A client over its quota: nothing more is read from it until then (KIP-219's muted
    /// channel).
    pub throttled_until: Option<tokio::time::Instant>,
    /// Fetch answers may carry batches as file ranges (a plain TCP connection, `sendfile`).
    pub sendfile: bool,
}

impl ConnCtx {
    pub fn new(peer: std::net::SocketAddr, advertised: (String, i32), auth: Auth) -> ConnCtx {
        ConnCtx {
            peer,
            advertised,
            client_id: String::new(),
            unapplied: Vec::new(),
            auth,
            host: crate::security::acl::host_string(peer.ip()),
            throttled_until: None,
            sendfile: false,
        }
    }

    /// Charges `value` to this client's quota of `kind`; the throttle time in ms (the
    /// connection is muted that long). A request-time throttle lasts at most one quota window,
    /// as in Kafka.
    pub fn charge(&mut self, b: &Broker, kind: crate::quota::Kind, value: f64) -> i32 {
        if !b.quotas.any() {
            return 0;
        }
        let user = crate::quota::user_of(&self.auth.principal);
        let now = crate::clock::now_ms().max(0) as u64;
        let mut ms = b.quotas.record(kind, user, &self.client_id, value, now);
        if kind == crate::quota::Kind::Request {
            ms = ms.min(b.config.quota_window_size_seconds * 1000);
        }
        if ms > 0 {
            tracing::debug!(?kind, user, client_id = %self.client_id, value, throttle_ms = ms, "quota exceeded");
        }
        self.throttle(b, kind, ms);
        ms.min(i32::MAX as u64) as i32
    }

    /// Takes back what `charge` recorded (a throttled fetch returns nothing).
    pub fn refund(&self, b: &Broker, kind: crate::quota::Kind, value: f64) {
        let user = crate::quota::user_of(&self.auth.principal);
        let now = crate::clock::now_ms().max(0) as u64;
        b.quotas.unrecord(kind, user, &self.client_id, value, now);
    }

    fn throttle(&mut self, b: &Broker, kind: crate::quota::Kind, ms: u64) {
        if ms == 0 {
            return;
        }
        b.metrics.throttled(kind, ms);
        let until = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
        self.throttled_until = Some(self.throttled_until.map_or(until, |t| t.max(until)));
    }

    /// Who sent the request, as the authorizer sees them.
    pub fn requester(&self) -> Requester<'_> {
        Requester {
            principal: &self.auth.principal,
            host: &self.host,
        }
    }

    /// Kafka's `AuthHelper.authorize`: whether this connection's principal may do `op` on the
    /// resource `(rt, name)` (always, without an authorizer).
    pub fn allowed(&self, b: &Broker, op: Operation, rt: ResourceType, name: &str) -> bool {
        b.authorizer.allows(self.requester(), op, rt, name)
    }

    /// The operations this principal may do on `(rt, name)`, as "authorized operations"
    /// fields carry them.
    pub fn authorized_operations(&self, b: &Broker, rt: ResourceType, name: &str) -> i32 {
        b.authorizer
            .authorized_operations(self.requester(), rt, name)
    }
}

/// A connection's authentication: its listener's protocol, its principal, its SASL state.
pub struct Auth {
    pub protocol: crate::security::SecurityProtocol,
    /// `User:ANONYMOUS`, a certificate subject, or `User:<SASL name>`.
    pub principal: String,
    /// Requests other than ApiVersions, SaslHandshake and SaslAuthenticate are allowed.
    pub authenticated: bool,
    /// Authentication must be done by then (the connection is closed otherwise).
    pub deadline: tokio::time::Instant,
    pub sasl: crate::security::sasl::State,
    /// The SASL user, once authenticated (a re-authentication must name the same one).
    pub sasl_user: Option<String>,
    /// When the SASL session ends (`connections.max.reauth.ms`), if it does.
    pub session_expires: Option<tokio::time::Instant>,
    /// Set by a failed authentication: the connection closes after this answer.
    pub close_after_reply: Option<String>,
    /// After a SaslHandshake v0: the next frames are bare SASL tokens, not Kafka requests.
    pub raw_tokens: bool,
}

impl Auth {
    pub fn new(protocol: crate::security::SecurityProtocol, timeout_ms: u64) -> Auth {
        Auth {
            protocol,
            principal: crate::security::ANONYMOUS.to_string(),
            // TLS listeners authenticate in the handshake, SASL ones with SASL requests.
            authenticated: !protocol.tls() && !protocol.sasl(),
            deadline: tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms),
            sasl: Default::default(),
            sasl_user: None,
            session_expires: None,
            close_after_reply: None,
            raw_tokens: false,
        }
    }

    /// An unauthenticated-client context (in-process tests).
    pub fn plaintext() -> Auth {
        Auth::new(crate::security::SecurityProtocol::Plaintext, 10_000)
    }
}

/// Why DescribeAcls answers SECURITY_DISABLED (Kafka's words; Create/DeleteAcls say
/// `NO_AUTHORIZER_CONFIGURED`).
pub const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";
pub const NO_AUTHORIZER_CONFIGURED: &str = "No Authorizer is configured.";

/// Kafka's default message for the errors handlers send with one (`Errors.message()`).
pub fn default_message(e: kafka_protocol::error::ResponseError) -> &'static str {
    use kafka_protocol::error::ResponseError::*;
    match e {
        TopicAuthorizationFailed => "Topic authorization failed.",
        GroupAuthorizationFailed => "Group authorization failed.",
        ClusterAuthorizationFailed => "Cluster authorization failed.",
        TransactionalIdAuthorizationFailed => "Transactional Id authorization failed.",
        _ => "",
    }
}

pub fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// PRODUCER_FENCED as a client of this API `v` understands it: APIs gained the error at
/// `since`; before that Kafka answers INVALID_PRODUCER_EPOCH.
pub fn fenced_for(
    e: kafka_protocol::error::ResponseError,
    v: i16,
    since: i16,
) -> kafka_protocol::error::ResponseError {
    use kafka_protocol::error::ResponseError;
    if e == ResponseError::ProducerFenced && v < since {
        ResponseError::InvalidProducerEpoch
    } else {
        e
    }
}

/// A handled request's answer.
pub enum Reply {
    /// The encoded response, now (`None`: no response, as for acks=0).
    Now(Option<BytesMut>),
    /// The response once the request's batches are written and, under `--fsync sync-each`,
    /// durable (produce). The connection keeps reading meanwhile and sends answers in request
    /// order, so pipelined produce requests share writes and fsyncs instead of waiting for one
    /// each.
    Later(tokio::task::JoinHandle<Result<Option<BytesMut>, String>>),
    /// A Fetch answer holding its share of the broker's fetch memory (`--fetch-memory-bytes`)
    /// until it is written to the socket.
    Held(BytesMut, tokio::sync::OwnedSemaphorePermit),
    /// A Fetch answer with batches sent from their log files (`sendfile`).
    Frame(FetchFrame),
}

/// A Fetch response frame in parts: encoded bytes, and at each `FramePart::Records(i)` the
/// record set `sets[i]` (in memory or in log files).
pub struct FetchFrame {
    pub parts: Vec<tusk_protocol::fetch_frame::FramePart>,
    pub sets: Vec<crate::partition::Records>,
    /// The answer's share of the fetch memory, held until it is written.
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Decodes, handles and encodes one request. `Err` closes the connection, as Kafka does for
/// requests it cannot parse.
pub async fn dispatch(b: &Arc<Broker>, req: Request, ctx: &mut ConnCtx) -> Result<Reply, String> {
    let sasl_api = matches!(
        req.api_key,
        ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
    );
    if !sasl_api {
        if !ctx.auth.authenticated {
            // Kafka closes a connection that sends anything else before authenticating.
            return Err(format!(
                "unexpected {:?} request before authentication ({} listener)",
                req.api_key, ctx.auth.protocol
            ));
        }
        if ctx
            .auth
            .session_expires
            .is_some_and(|t| tokio::time::Instant::now() >= t)
        {
            return Err(
                "SASL session expired (connections.max.reauth.ms) without re-authentication".into(),
            );
        }
    }
    if matches!(
        req.api_key,
        ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
    ) {
        let (v, corr) = (req.version, req.header.correlation_id);
        let out = if req.api_key == ApiKey::SaslHandshake {
            let body: SaslHandshakeRequest =
                decode_body(&req).map_err(|e| format!("cannot decode SaslHandshake v{v}: {e}"))?;
            let resp = sasl_handshake::handle(b, body, v, ctx);
            encode_response(req.api_key, v, corr, &resp)
        } else {
            let body: SaslAuthenticateRequest = decode_body(&req)
                .map_err(|e| format!("cannot decode SaslAuthenticate v{v}: {e}"))?;
            let resp = sasl_authenticate::handle(b, body, v, ctx);
            encode_response(req.api_key, v, corr, &resp)
        };
        return out
            .map(|o| Reply::Now(Some(o)))
            .map_err(|e| format!("cannot encode {:?} v{v} response: {e}", req.api_key));
    }
    if req.api_key != ApiKey::Produce {
        // Requests are applied in arrival order: earlier produce requests' batches are written
        // (not necessarily durable) before anything later on the connection is handled.
        for w in ctx.unapplied.drain(..) {
            let _ = w.await;
        }
    }
    // Request-time quotas count the handling from here (not the wait above).
    let started = std::time::Instant::now();
    if req.api_key == ApiKey::Fetch {
        let v = req.version;
        let mut body: FetchRequest =
            decode_body(&req).map_err(|e| format!("cannot decode Fetch v{v}: {e}"))?;
        // Never more at once than the quota lets through in its window (Kafka's
        // getMaxValueInQuotaWindow).
        let user = crate::quota::user_of(&ctx.auth.principal);
        if let Some(max) = b.quotas.max_fetch_bytes(user, &ctx.client_id) {
            body.max_bytes = body.max_bytes.min(max.clamp(1, i32::MAX as u64) as i32);
        }
        let mut answer = fetch::handle(b, body, v, ctx).await;
        let bytes = answer.record_bytes() as f64;
        let bandwidth = ctx.charge(b, crate::quota::Kind::Fetch, bytes);
        if bandwidth > 0 {
            // A throttled fetch returns no data (and so costs none), as in Kafka.
            ctx.refund(b, crate::quota::Kind::Fetch, bytes);
            answer.clear();
        }
        let request = ctx.charge(
            b,
            crate::quota::Kind::Request,
            percent_of_second(answer.busy),
        );
        answer.resp.throttle_time_ms = bandwidth.max(request);
        let corr = req.header.correlation_id;
        if !answer.files.is_empty() {
            let (at, sets): (Vec<_>, Vec<_>) = answer.files.into_iter().unzip();
            let sent: usize = sets.iter().map(|r| r.file_bytes()).sum();
            b.metrics
                .fetch_sendfile_bytes
                .fetch_add(sent as u64, std::sync::atomic::Ordering::Relaxed);
            let (parts, _) =
                tusk_protocol::fetch_frame::encode_fetch_frame(v, corr, &mut answer.resp, &at)
                    .map_err(|e| format!("cannot encode Fetch v{v} response: {e}"))?;
            return Ok(Reply::Frame(FetchFrame {
                parts,
                sets,
                permit: answer.permit,
            }));
        }
        let out = encode_response(ApiKey::Fetch, v, corr, &answer.resp)
            .map_err(|e| format!("cannot encode Fetch v{v} response: {e}"))?;
        return Ok(match answer.permit {
            Some(p) => Reply::Held(out, p),
            None => Reply::Now(Some(out)),
        });
    }
    if req.api_key != ApiKey::Produce {
        let exempt = req.api_key == ApiKey::ApiVersions;
        let out = dispatch_now(b, req, ctx).await.map(Reply::Now);
        if !exempt {
            // Request-time quotas mute the connection; these answers do not carry the time.
            ctx.charge(
                b,
                crate::quota::Kind::Request,
                percent_of_second(started.elapsed()),
            );
        }
        return out;
    }
    let v = req.version;
    let corr = req.header.correlation_id;
    let size = req.body.len() as f64;
    let body: ProduceRequest =
        decode_body(&req).map_err(|e| format!("cannot decode Produce v{v}: {e}"))?;
    let acks = body.acks;
    let submitted = produce::submit(b, body, ctx).await;
    let bandwidth = ctx.charge(b, crate::quota::Kind::Produce, size);
    let request = ctx.charge(
        b,
        crate::quota::Kind::Request,
        percent_of_second(started.elapsed()),
    );
    let throttle_ms = bandwidth.max(request);
    if acks == 0 {
        // Kafka sends nothing for acks=0, but closes the connection on an error so the
        // producer notices.
        let (resp, _) = submitted.written(b).await;
        if let Some(code) = produce::first_error(&resp) {
            return Err(format!("acks=0 produce failed with error {code}"));
        }
        return Ok(Reply::Now(None));
    }
    let encode = move |resp: &ProduceResponse| {
        encode_response(ApiKey::Produce, v, corr, resp)
            .map(Some)
            .map_err(|e| format!("cannot encode Produce v{v} response: {e}"))
    };
    let (applied, applied_rx) = tokio::sync::oneshot::channel();
    ctx.unapplied.push(applied_rx);
    let b = b.clone();
    Ok(Reply::Later(tokio::spawn(async move {
        let (mut resp, wrote) = submitted.written(&b).await;
        let _ = applied.send(());
        if wrote && b.sync_for_ack_needed() {
            produce::await_durable(&b, &mut resp).await;
        }
        resp.throttle_time_ms = throttle_ms;
        encode(&resp)
    })))
}

/// Request-handling time as Kafka's request quotas count it: percent of one second.
fn percent_of_second(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 100.0
}

async fn dispatch_now(
    b: &Arc<Broker>,
    req: Request,
    ctx: &ConnCtx,
) -> Result<Option<BytesMut>, String> {
    let v = req.version;
    let corr = req.header.correlation_id;
    macro_rules! call_ctx {
        ($req_ty:ty, $module:ident) => {{
            let body: $req_ty = decode_body(&req)
                .map_err(|e| format!("cannot decode {:?} v{v}: {e}", req.api_key))?;
            let resp = $module::handle(b, body, v, ctx).await;
            encode_response(req.api_key, v, corr, &resp)
                .map(Some)
                .map_err(|e| format!("cannot encode {:?} v{v} response: {e}", req.api_key))
        }};
    }
    // The same, for handlers whose requests Kafka may refuse to parse (closing the connection).
    macro_rules! call_checked {
        ($req_ty:ty, $module:ident) => {{
            let body: $req_ty = decode_body(&req)
                .map_err(|e| format!("cannot decode {:?} v{v}: {e}", req.api_key))?;
            $module::check(&body)?;
            let resp = $module::handle(b, body, v, ctx).await;
            encode_response(req.api_key, v, corr, &resp)
                .map(Some)
                .map_err(|e| format!("cannot encode {:?} v{v} response: {e}", req.api_key))
        }};
    }
    match req.api_key {
        ApiKey::ListOffsets => call_ctx!(ListOffsetsRequest, list_offsets),
        ApiKey::Metadata => call_ctx!(MetadataRequest, metadata),
        ApiKey::OffsetCommit => call_ctx!(OffsetCommitRequest, offset_commit),
        ApiKey::OffsetFetch => call_ctx!(OffsetFetchRequest, offset_fetch),
        ApiKey::FindCoordinator => call_ctx!(FindCoordinatorRequest, find_coordinator),
        ApiKey::JoinGroup => call_ctx!(JoinGroupRequest, join_group),
        ApiKey::Heartbeat => call_ctx!(HeartbeatRequest, heartbeat),
        ApiKey::LeaveGroup => call_ctx!(LeaveGroupRequest, leave_group),
        ApiKey::SyncGroup => call_ctx!(SyncGroupRequest, sync_group),
        ApiKey::DescribeGroups => call_ctx!(DescribeGroupsRequest, describe_groups),
        ApiKey::ListGroups => call_ctx!(ListGroupsRequest, list_groups),
        ApiKey::ApiVersions => call_ctx!(ApiVersionsRequest, api_versions),
        ApiKey::CreateTopics => call_ctx!(CreateTopicsRequest, create_topics),
        ApiKey::DeleteTopics => call_ctx!(DeleteTopicsRequest, delete_topics),
        ApiKey::DeleteRecords => call_ctx!(DeleteRecordsRequest, delete_records),
        ApiKey::InitProducerId => call_ctx!(InitProducerIdRequest, init_producer_id),
        ApiKey::OffsetForLeaderEpoch => {
            call_ctx!(OffsetForLeaderEpochRequest, offset_for_leader_epoch)
        }
        ApiKey::DescribeConfigs => call_ctx!(DescribeConfigsRequest, describe_configs),
        ApiKey::AlterConfigs => call_ctx!(AlterConfigsRequest, alter_configs),
        ApiKey::CreatePartitions => call_ctx!(CreatePartitionsRequest, create_partitions),
        ApiKey::DeleteGroups => call_ctx!(DeleteGroupsRequest, delete_groups),
        ApiKey::IncrementalAlterConfigs => {
            call_ctx!(IncrementalAlterConfigsRequest, incremental_alter_configs)
        }
        ApiKey::OffsetDelete => call_ctx!(OffsetDeleteRequest, offset_delete),
        ApiKey::DescribeCluster => call_ctx!(DescribeClusterRequest, describe_cluster),
        ApiKey::CreateAcls => call_checked!(CreateAclsRequest, create_acls),
        ApiKey::DescribeAcls => call_checked!(DescribeAclsRequest, describe_acls),
        ApiKey::DeleteAcls => call_checked!(DeleteAclsRequest, delete_acls),
        ApiKey::AddPartitionsToTxn => {
            call_ctx!(AddPartitionsToTxnRequest, add_partitions_to_txn)
        }
        ApiKey::AddOffsetsToTxn => call_ctx!(AddOffsetsToTxnRequest, add_offsets_to_txn),
        ApiKey::EndTxn => call_ctx!(EndTxnRequest, end_txn),
        ApiKey::TxnOffsetCommit => call_ctx!(TxnOffsetCommitRequest, txn_offset_commit),
        ApiKey::DescribeProducers => call_ctx!(DescribeProducersRequest, describe_producers),
        ApiKey::DescribeTransactions => {
            call_ctx!(DescribeTransactionsRequest, describe_transactions)
        }
        ApiKey::ListTransactions => call_ctx!(ListTransactionsRequest, list_transactions),
        ApiKey::AlterUserScramCredentials => call_ctx!(
            AlterUserScramCredentialsRequest,
            alter_user_scram_credentials
        ),
        ApiKey::DescribeUserScramCredentials => call_ctx!(
            DescribeUserScramCredentialsRequest,
            describe_user_scram_credentials
        ),
        ApiKey::DescribeClientQuotas => {
            call_ctx!(DescribeClientQuotasRequest, describe_client_quotas)
        }
        ApiKey::AlterClientQuotas => call_ctx!(AlterClientQuotasRequest, alter_client_quotas),
        other => Err(format!("{other:?} is not supported")),
    }
}
