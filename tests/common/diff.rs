//! The differential harness: Apache Kafka (the fixture of `scripts/kafka-fixture.sh`) and
//! Tusk answer the same requests; answers are flattened to `path -> value` and compared after
//! normalising what legitimately differs. Every difference must be listed in `docs/compat.md`
//! (its key, in backticks, in the table of known differences); a listed one that no longer
//! occurs fails too, so the list stays true.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::wire::call;

/// Apache Kafka for the length of the test: started by the fixture script, stopped on drop.
pub struct Kafka {
    pub addr: String,
    /// The port `Kafka::with` handed to its configs (0 otherwise).
    pub spare_port: u16,
    dir: Option<tempfile::TempDir>,
}

impl Kafka {
    /// `TUSK_KAFKA_ADDR` if set (a broker already running: faster when iterating), else a
    /// fresh fixture broker.
    pub fn get() -> Kafka {
        if let Ok(addr) = std::env::var("TUSK_KAFKA_ADDR") {
            return Kafka {
                addr,
                spare_port: 0,
                dir: None,
            };
        }
        Kafka::with(|_, _, _| Vec::new())
    }

    /// A fresh fixture broker with the configs (`k=v`) `configs(port, controller, spare)`
    /// returns, where `spare` is a free port for a second listener.
    pub fn with(configs: impl Fn(u16, u16, u16) -> Vec<String>) -> Kafka {
        // Free ports (broker, controller, spare), held together while chosen; a port taken by
        // someone else between the choice and Kafka's bind gets another try.
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let ports: Vec<u16> = {
                let held: Vec<std::net::TcpListener> = (0..3)
                    .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
                    .collect();
                held.iter()
                    .map(|l| l.local_addr().unwrap().port())
                    .collect()
            };
            let (port, controller, spare) = (ports[0], ports[1], ports[2]);
            let status = Command::new(script())
                .args(["start", dir.path().to_str().unwrap(), &port.to_string()])
                .args(configs(port, controller, spare))
                .env("KAFKA_CONTROLLER_PORT", controller.to_string())
                .status()
                .expect("cannot run scripts/kafka-fixture.sh");
            if status.success() {
                return Kafka {
                    addr: format!("127.0.0.1:{port}"),
                    spare_port: spare,
                    dir: Some(dir),
                };
            }
            let _ = Command::new(script())
                .args(["stop", dir.path().to_str().unwrap()])
                .status();
        }
        panic!("the Apache Kafka fixture did not start three times (see scripts/kafka-fixture.sh)");
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = Command::new(script())
                .args(["stop", dir.path().to_str().unwrap()])
                .status();
        }
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-fixture.sh")
}

/// One connection to each broker.
pub struct Pair {
    pub kafka: TcpStream,
    pub tusk: TcpStream,
    /// Differences found: key (`case: field`) -> what each broker said.
    pub diffs: BTreeMap<String, (String, String)>,
    pub compared: usize,
    pub report: bool,
    /// The run's suffix in topic names, replaced by `*` in difference keys (stable keys).
    run_suffix: String,
}

pub fn open(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

impl Pair {
    pub fn new(kafka: TcpStream, tusk: TcpStream, run_suffix: &str) -> Pair {
        Pair {
            kafka,
            tusk,
            diffs: BTreeMap::new(),
            compared: 0,
            report: std::env::var_os("TUSK_DIFF_REPORT").is_some(),
            run_suffix: run_suffix.to_string(),
        }
    }

    /// Fails unless every difference found is listed in `docs/compat.md` and every listed one
    /// (among the keys `mine` claims) was found.
    pub fn finish(&self, mine: impl Fn(&str) -> bool) {
        let known: BTreeMap<String, String> = known_differences()
            .into_iter()
            .filter(|(k, _)| mine(k))
            .collect();
        let mut unlisted = Vec::new();
        for (key, (k, t)) in &self.diffs {
            if self.report {
                eprintln!("DIFF {key}: kafka {k} | tusk {t}");
            }
            if !known.keys().any(|pattern| glob(pattern, key)) {
                unlisted.push(format!("  {key}: Apache Kafka {k} | Tusk {t}"));
            }
        }
        let gone: Vec<&String> = known
            .keys()
            .filter(|pattern| !self.diffs.keys().any(|key| glob(pattern, key)))
            .collect();
        eprintln!(
            "differential: {} comparisons, {} differences ({} listed in docs/compat.md)",
            self.compared,
            self.diffs.len(),
            self.diffs.len() - unlisted.len()
        );
        assert!(
            unlisted.is_empty(),
            "differences from Apache Kafka not listed in docs/compat.md (fix them or list them with the reason):\n{}",
            unlisted.join("\n")
        );
        assert!(
            gone.is_empty(),
            "docs/compat.md lists differences that no longer occur (remove them): {gone:?}"
        );
    }

    /// Sends `req` to both, normalises both answers with `norm`, compares them.
    pub fn same<Req: Encodable, Resp: Decodable + std::fmt::Debug + Clone>(
        &mut self,
        case: &str,
        key: ApiKey,
        v: i16,
        req: &Req,
        norm: impl Fn(&mut Resp),
    ) -> (Resp, Resp) {
        let k: Resp = call(&mut self.kafka, key, v, req);
        let t: Resp = call(&mut self.tusk, key, v, req);
        self.normalised_compare(case, &k, &t, norm);
        (k, t)
    }

    /// Sends each broker its own request (ids the broker handed out), normalises both answers
    /// with `norm`, compares them.
    pub fn pair<Req: Encodable, Resp: Decodable + std::fmt::Debug + Clone>(
        &mut self,
        case: &str,
        key: ApiKey,
        v: i16,
        kafka_req: &Req,
        tusk_req: &Req,
        norm: impl Fn(&mut Resp),
    ) -> (Resp, Resp) {
        let k: Resp = call(&mut self.kafka, key, v, kafka_req);
        let t: Resp = call(&mut self.tusk, key, v, tusk_req);
        self.normalised_compare(case, &k, &t, norm);
        (k, t)
    }

    /// Compares chosen values (name, Kafka's, Tusk's) of answers compared no other way.
    pub fn compare_values(&mut self, case: &str, values: &[(&str, String, String)]) {
        let k = values
            .iter()
            .map(|(n, k, _)| (n.to_string(), k.clone()))
            .collect();
        let t = values
            .iter()
            .map(|(n, _, t)| (n.to_string(), t.clone()))
            .collect();
        self.compare(case, &k, &t);
    }

    /// Compares copies of both answers after `norm`; the answers themselves stay as they came
    /// (the ids in them are needed by the next request).
    pub fn normalised_compare<Resp: std::fmt::Debug + Clone>(
        &mut self,
        case: &str,
        k: &Resp,
        t: &Resp,
        norm: impl Fn(&mut Resp),
    ) {
        let (mut k, mut t) = (k.clone(), t.clone());
        norm(&mut k);
        norm(&mut t);
        self.compare(
            case,
            &flatten(&format!("{k:#?}")),
            &flatten(&format!("{t:#?}")),
        );
    }

    pub fn compare(
        &mut self,
        case: &str,
        k: &BTreeMap<String, String>,
        t: &BTreeMap<String, String>,
    ) {
        self.compared += 1;
        let none = "(absent)".to_string();
        for path in k.keys().chain(t.keys()) {
            let (kv, tv) = (k.get(path).unwrap_or(&none), t.get(path).unwrap_or(&none));
            if kv == tv {
                continue;
            }
            // A list element one side lacks altogether is one difference, not one per field.
            let missing_on = if !k.contains_key(path) {
                Some(k)
            } else if !t.contains_key(path) {
                Some(t)
            } else {
                None
            };
            if let Some(side) = missing_on {
                if let Some(top) = absent_ancestor(path, side) {
                    let (kv, tv) = if std::ptr::eq(side, k) {
                        (none.clone(), "(present)".to_string())
                    } else {
                        ("(present)".to_string(), none.clone())
                    };
                    let key = format!("{case}: {top}").replace(&self.run_suffix, "-*");
                    self.diffs.insert(key, (kv, tv));
                    continue;
                }
            }
            let key = format!("{case}: {path}").replace(&self.run_suffix, "-*");
            self.diffs.insert(key, (kv.clone(), tv.clone()));
        }
        if self.report {
            eprintln!("compared {case}: {} fields", k.len().max(t.len()));
        }
    }
}

/// The shortest `[name]` element prefix of `path` that `side` has no field under.
fn absent_ancestor(path: &str, side: &BTreeMap<String, String>) -> Option<String> {
    let mut end = 0;
    while let Some(i) = path[end..].find("].") {
        let prefix = &path[..end + i + 1];
        end += i + 2;
        let dotted = format!("{prefix}.");
        if !side.keys().any(|k| k.starts_with(&dotted)) {
            return Some(prefix.to_string());
        }
    }
    None
}

/// A pretty Debug rendering as path -> value (`topics.0.error_code` -> `37`); list elements
/// with a `name` are keyed by it (`configs.[retention.ms].value`), so order does not matter.
fn flatten(debug: &str) -> BTreeMap<String, String> {
    let raw = flatten_raw(debug);
    // "x.3.name" or "x.3.name.0" (a newtype or Option around the name) -> "x.3" is "x.[name]".
    let mut renames: Vec<(String, String)> = Vec::new();
    for (path, value) in &raw {
        let base = path
            .strip_suffix(".name.0")
            .or_else(|| path.strip_suffix(".name"));
        let Some(base) = base else { continue };
        let Some((parent, idx)) = base.rsplit_once('.') else {
            continue;
        };
        if idx.parse::<usize>().is_ok() && value.starts_with('"') {
            renames.push((
                format!("{base}."),
                format!("{parent}.[{}].", value.trim_matches('"')),
            ));
        }
    }
    // Deepest first, so a renamed parent does not hide a child's prefix.
    renames.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    raw.into_iter()
        .map(|(path, v)| {
            let mut p = format!("{path}.");
            for (from, to) in &renames {
                if let Some(rest) = p.strip_prefix(from.as_str()) {
                    p = format!("{to}{rest}");
                }
            }
            (p.trim_end_matches('.').to_string(), v)
        })
        .collect()
}

fn flatten_raw(debug: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // (name, next child index) per open bracket.
    let mut stack: Vec<(String, usize)> = Vec::new();
    for line in debug.lines() {
        let l = line.trim().trim_end_matches(',');
        if l.is_empty() {
            continue;
        }
        if l.starts_with(['}', ']', ')']) {
            stack.pop();
            continue;
        }
        let (name, value) = match l.split_once(": ") {
            Some((n, v)) if !n.contains(' ') && !n.contains('"') => (n.to_string(), v),
            _ => {
                let i = stack.last_mut().map(|s| {
                    s.1 += 1;
                    s.1 - 1
                });
                (i.map(|i| i.to_string()).unwrap_or_default(), l)
            }
        };
        let path: Vec<&str> = stack
            .iter()
            .map(|s| s.0.as_str())
            .chain(std::iter::once(name.as_str()))
            .filter(|s| !s.is_empty())
            .collect();
        let path = path.join(".");
        if value.ends_with(['{', '[', '(']) {
            stack.push((name, 0));
            continue;
        }
        out.insert(path, value.to_string());
    }
    out
}

/// Asks `ready` up to `tries` times, `pause` apart; whether it ever said yes (a bounded wait
/// for Apache Kafka's own asynchronous work, never for Tusk's).
pub fn poll_until(tries: usize, pause: Duration, mut ready: impl FnMut() -> bool) -> bool {
    (0..tries).any(|i| {
        if i > 0 {
            std::thread::sleep(pause);
        }
        ready()
    })
}

/// Whether `key` matches `pattern`, where `*` stands for any text.
pub fn glob(pattern: &str, key: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == key;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !key.starts_with(first) || !key.ends_with(last) || key.len() < first.len() + last.len() {
        return false;
    }
    let mut at = first.len();
    let end = key.len() - last.len();
    for mid in &parts[1..parts.len() - 1] {
        match key[at..end].find(mid) {
            Some(i) => at += i + mid.len(),
            None => return false,
        }
    }
    true
}

/// The compat list: keys of the known differences, from `docs/compat.md`.
pub fn known_differences() -> BTreeMap<String, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/compat.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            in_table = line.contains("Known differences");
            continue;
        }
        if !in_table || !line.starts_with("| `") {
            continue;
        }
        if let Some(key) = line[3..].split('`').next() {
            out.insert(key.to_string(), line.to_string());
        }
    }
    out
}
