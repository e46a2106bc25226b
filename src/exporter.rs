//! The Prometheus text exporter (`--metrics-listen`): the counters of `metrics.rs` plus the
//! broker's gauges (partitions, groups, transactions), served over plain HTTP.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use kafka_protocol::messages::ApiKey;

use crate::broker::Broker;
use crate::metrics::{ApiStats, TopicStats};

/// Renders every metric; `broker` supplies partition and group gauges.
pub fn render(b: &Broker) -> String {
    let m = &b.metrics;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP tusk_connections Open client connections.\n# TYPE tusk_connections gauge"
    );
    let _ = writeln!(
        out,
        "tusk_connections {}",
        m.connections.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# TYPE tusk_connections_total counter");
    let _ = writeln!(
        out,
        "tusk_connections_total {}",
        m.connections_total.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP tusk_requests_total Requests by API.\n# TYPE tusk_requests_total counter"
    );
    let mut apis: Vec<(i16, Arc<ApiStats>)> = m
        .apis
        .iter()
        .map(|e| (*e.key(), e.value().clone()))
        .collect();
    apis.sort_by_key(|a| a.0);
    let name = |k: i16| {
        ApiKey::try_from(k)
            .map(|a| format!("{a:?}"))
            .unwrap_or_else(|_| k.to_string())
    };
    for (k, s) in &apis {
        let _ = writeln!(
            out,
            "tusk_requests_total{{api=\"{}\"}} {}",
            name(*k),
            s.requests.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# TYPE tusk_request_errors_total counter");
    for (k, s) in &apis {
        let _ = writeln!(
            out,
            "tusk_request_errors_total{{api=\"{}\"}} {}",
            name(*k),
            s.errors.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# HELP tusk_request_latency_seconds_sum Time spent answering, by API.\n# TYPE tusk_request_latency_seconds_sum counter");
    for (k, s) in &apis {
        let _ = writeln!(
            out,
            "tusk_request_latency_seconds_sum{{api=\"{}\"}} {:.6}",
            name(*k),
            s.latency_us_sum.load(Ordering::Relaxed) as f64 / 1e6
        );
    }
    let mut topics: Vec<(String, Arc<TopicStats>)> = m
        .topics
        .iter()
        .map(|e| (e.key().clone(), e.value().clone()))
        .collect();
    topics.sort_by(|a, b| a.0.cmp(&b.0));
    let _ = writeln!(out, "# TYPE tusk_topic_bytes_in_total counter");
    for (t, s) in &topics {
        let _ = writeln!(
            out,
            "tusk_topic_bytes_in_total{{topic=\"{t}\"}} {}",
            s.bytes_in.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# TYPE tusk_topic_records_in_total counter");
    for (t, s) in &topics {
        let _ = writeln!(
            out,
            "tusk_topic_records_in_total{{topic=\"{t}\"}} {}",
            s.records_in.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# TYPE tusk_topic_bytes_out_total counter");
    for (t, s) in &topics {
        let _ = writeln!(
            out,
            "tusk_topic_bytes_out_total{{topic=\"{t}\"}} {}",
            s.bytes_out.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# HELP tusk_partition_log_end_offset Next offset of each partition.\n# TYPE tusk_partition_log_end_offset gauge");
    let mut sizes = String::new();
    for t in b.catalog.all() {
        for p in t.all_partitions() {
            let _ = writeln!(
                out,
                "tusk_partition_log_end_offset{{topic=\"{}\",partition=\"{}\"}} {}",
                t.name,
                p.index,
                p.offsets().log_end
            );
            let _ = writeln!(
                sizes,
                "tusk_partition_size_bytes{{topic=\"{}\",partition=\"{}\"}} {}",
                t.name,
                p.index,
                p.size().bytes
            );
        }
    }
    let _ = writeln!(out, "# TYPE tusk_partition_size_bytes gauge");
    out.push_str(&sizes);
    b.groups.render_metrics(
        |topic, p| b.partition(topic, p).ok().map(|p| p.offsets().log_end),
        &mut out,
    );
    b.txns.render_metrics(&mut out);
    render_storage(b, &mut out);
    let _ = writeln!(
        out,
        "# HELP tusk_authentications_total Client authentications (SASL logins; TLS handshakes and timeouts that failed).\n# TYPE tusk_authentications_total counter\ntusk_authentications_total{{result=\"success\"}} {}\ntusk_authentications_total{{result=\"failure\"}} {}",
        b.metrics.auth_successes.load(Ordering::Relaxed),
        b.metrics.auth_failures.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP tusk_fetch_sendfile_bytes_total Record bytes of Fetch answers sent from the log files with sendfile (not copied through the broker).\n# TYPE tusk_fetch_sendfile_bytes_total counter\ntusk_fetch_sendfile_bytes_total {}",
        b.metrics.fetch_sendfile_bytes.load(Ordering::Relaxed)
    );
    let quotas = [
        "producer_byte_rate",
        "consumer_byte_rate",
        "request_percentage",
    ];
    for (metric, help, pick) in [
        (
            "tusk_quota_throttles_total",
            "Answers throttled by a client quota (KIP-13/124), by quota.",
            0,
        ),
        (
            "tusk_quota_throttle_ms_total",
            "Milliseconds of throttling imposed by client quotas.",
            1,
        ),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for (i, name) in quotas.iter().enumerate() {
            let (count, ms) = &b.metrics.throttles[i];
            let v = if pick == 0 { count } else { ms };
            let _ = writeln!(
                out,
                "{metric}{{quota=\"{name}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
    out
}

/// The write path: which one is in use, writes by path, entries per append, write and fsync
/// latency, and how the produce write stage groups batches.
fn render_storage(b: &Broker, out: &mut String) {
    let io = b.store.io_stats();
    let path = b.store.write_path();
    let _ = writeln!(out, "# HELP tusk_storage_write_path The path storage writes take (1 for the one in use).\n# TYPE tusk_storage_write_path gauge");
    for p in [
        walrus::WritePath::UringDirect,
        walrus::WritePath::UringBuffered,
        walrus::WritePath::Pwrite,
    ] {
        let _ = writeln!(
            out,
            "tusk_storage_write_path{{path=\"{}\"}} {}",
            p.as_str(),
            u8::from(p == path)
        );
    }
    let _ = writeln!(out, "# HELP tusk_storage_writes_total Storage write calls (one run of bytes into one file), by path.\n# TYPE tusk_storage_writes_total counter");
    for (p, n) in [
        ("uring_direct", &io.writes_uring_direct),
        ("uring_buffered", &io.writes_uring_buffered),
        ("pwrite", &io.writes_pwrite),
    ] {
        let _ = writeln!(
            out,
            "tusk_storage_writes_total{{path=\"{p}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# TYPE tusk_storage_fsyncs_total counter\ntusk_storage_fsyncs_total {}",
        io.fsyncs.load(Ordering::Relaxed)
    );
    histogram(
        out,
        "tusk_storage_append_entries",
        "Entries per storage append (a produce group is one append).",
        io.entries_per_append.cumulative(),
        1.0,
    );
    histogram(
        out,
        "tusk_storage_write_seconds",
        "Time to write one append's bytes, without fsync.",
        io.write_latency_us.cumulative(),
        1e-6,
    );
    histogram(
        out,
        "tusk_storage_fsync_seconds",
        "Time of one flush's fsyncs.",
        io.fsync_latency_us.cumulative(),
        1e-6,
    );
    let _ = writeln!(
        out,
        "# HELP tusk_batch_cache_bytes Bytes of newest batches held in memory for fetches.\n# TYPE tusk_batch_cache_bytes gauge\ntusk_batch_cache_bytes {}",
        b.catalog.batch_cache.used()
    );
    let st = &b.appender.stats;
    let _ = writeln!(
        out,
        "# HELP tusk_produce_appends_total Storage appends made by the produce write stage, and the client batches they carried.\n# TYPE tusk_produce_appends_total counter\ntusk_produce_appends_total {}\n# TYPE tusk_produce_batches_total counter\ntusk_produce_batches_total {}",
        st.appends.load(Ordering::Relaxed),
        st.batches.load(Ordering::Relaxed)
    );
}

/// A Prometheus histogram from (upper bound, cumulative count) buckets (the last one +Inf)
/// and a sum, both in `scale` units.
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    (buckets, sum): (Vec<(u64, u64)>, u64),
    scale: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut count = 0;
    for (bound, n) in buckets {
        count = n;
        if bound == u64::MAX {
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        } else {
            let le = format!("{:.6}", bound as f64 * scale);
            let le = le.trim_end_matches('0').trim_end_matches('.');
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
    }
    let _ = writeln!(
        out,
        "{name}_sum {}\n{name}_count {count}",
        sum as f64 * scale
    );
}

/// Serves `GET /metrics` (any path) over plain HTTP/1.1.
pub async fn serve(addr: std::net::SocketAddr, broker: Arc<Broker>) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics endpoint listening");
    loop {
        let mut sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                // EMFILE and friends are passing conditions: the endpoint must outlive them.
                tracing::warn!("metrics accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let b = broker.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let body = render(&b);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                body.len(),
                body
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}
