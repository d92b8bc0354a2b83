//! The binary as operators run it: one-shot commands, and the service
//! started on a free loopback port, signalled with `libc::kill`, its stdout
//! and stderr captured to a file, and killed on drop if a test fails first.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::tempdir::TempDir;

/// The binary with an empty environment.
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_macp-auth-service"));
    command.env_clear();
    command
}

/// Runs `command` with `stdin` on its standard input; collects its output.
pub fn run_with_stdin(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The service binary, serving on a free loopback port.
pub struct Spawned {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl Spawned {
    /// Starts the binary with `env` (plus `PORT` and `HOST`) and waits until
    /// `/healthz` answers; panics with its log if it exits first.
    pub async fn start(env: &[(&str, String)]) -> Self {
        let port = free_port();
        let dir = TempDir::new("service");
        let log = dir.join("service.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut command = binary();
        command
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file));
        for (name, value) in env {
            command.env(name, value);
        }
        let mut spawned = Spawned {
            child: command.spawn().unwrap(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            _dir: dir,
        };
        spawned.wait_until_healthy().await;
        spawned
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `path` on the service.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    async fn wait_until_healthy(&mut self) {
        let start = Instant::now();
        loop {
            if let Ok(response) = reqwest::get(self.url("/healthz")).await
                && response.status() == 200
            {
                return;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "the service exited early:\n{}",
                self.log()
            );
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "never became healthy:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends `signal` (`libc::SIGTERM`, `SIGINT`, `SIGHUP`...).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) only sends a signal, to the child this owns.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill({pid}, {signal}) failed");
    }

    /// The exit status, if the process exits within `limit`.
    pub async fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal`, requires exit 0 within 10 s, and returns everything
    /// the process logged.
    pub async fn stop_with(mut self, signal: libc::c_int) -> String {
        self.signal(signal);
        let status = self.wait_for_exit(Duration::from_secs(10)).await;
        let log = self.log();
        let status = status.unwrap_or_else(|| panic!("did not exit within 10 s:\n{log}"));
        assert!(status.success(), "exit status {status:?}:\n{log}");
        log
    }

    /// [`Spawned::stop_with`] `SIGTERM`.
    pub async fn stop(self) -> String {
        self.stop_with(libc::SIGTERM).await
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
