//! A real `tusk` process per test: its own port and data directory, killed when dropped.

#![allow(dead_code)]

pub mod diff;
pub mod wire;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    /// Run under `prlimit --nofile=N:N` (a file-descriptor limit).
    nofile: Option<u32>,
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    pub fn start(args: &[&str]) -> Broker {
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            args: args.iter().map(|s| s.to_string()).collect(),
            nofile: None,
        };
        b.spawn();
        b
    }

    /// Like `start`, with at most `nofile` open file descriptors (prlimit execs the broker,
    /// so the child's pid is the broker's).
    pub fn start_with_nofile(args: &[&str], nofile: u32) -> Broker {
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            args: args.iter().map(|s| s.to_string()).collect(),
            nofile: Some(nofile),
        };
        b.spawn();
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("tusk.log")
    }

    /// The broker process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn spawn(&mut self) {
        let log_start = std::fs::metadata(self.log_path())
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        // Tests want groups to form at once unless they ask for the delay.
        let mut defaults = vec!["--group-initial-rebalance-delay-ms", "0"];
        if self.args.iter().any(|a| a == defaults[0]) {
            defaults.clear();
        }
        let mut cmd = match self.nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}"))
                    .arg(env!("CARGO_BIN_EXE_tusk"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_tusk")),
        };
        cmd.arg("--listen").arg(self.addr());
        if !self.args.iter().any(|a| a == "--data-dir") {
            cmd.arg("--data-dir").arg(self.dir.path().join("data"));
        }
        let child = cmd
            .args(defaults)
            .args(&self.args)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        // The listener is bound before the data dir is opened: up means "tusk started" logged
        // by this run, not a successful connect.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let log = self.log();
            if log
                .get(log_start..)
                .is_some_and(|l| l.contains("tusk started"))
            {
                return;
            }
            if !self.is_running() {
                panic!("tusk exited at start:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tusk did not start:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGTERM (a clean shutdown) and wait for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Start again after `stop` (same port and data).
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Starts a broker whose data dir is `data` (e.g. on a small filesystem).
    pub fn start_in(args: &[&str], data: &std::path::Path) -> Broker {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.push("--data-dir".into());
        all.push(data.display().to_string());
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            args: all,
            nofile: None,
        };
        b.spawn();
        b
    }

    /// SIGKILL, then start again on the same port and data.
    pub fn kill9_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        self.spawn();
    }

    pub fn assert_clean_log(&self) {
        let log = self.log();
        assert!(!log.contains("panicked"), "broker panicked:\n{log}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
