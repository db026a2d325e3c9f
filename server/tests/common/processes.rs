//! The real binaries as child processes, for the end-to-end tests: `palisade serve` over
//! a test's database, and where `palisade-agent` is.

use super::TestApp;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `palisade-agent`, built beside `palisade` by the README's test command.
pub fn agent_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_palisade")).with_file_name("palisade-agent");
    assert!(path.exists(), "{} is missing: build the workspace (cargo build -p agent)", path.display());
    path
}

pub fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -{name}");
}

pub struct ControlPlane {
    pub child: Child,
    pub base: String,
}

impl ControlPlane {
    /// `palisade serve` on `listen` over the test's database and master key.
    pub fn start(app: &TestApp, data_dir: &Path, listen: SocketAddr) -> ControlPlane {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["serve", "--listen", &listen.to_string()])
            .env("PALISADE_DATABASE_URL", app.database_url())
            .env("PALISADE_MASTER_KEY", app.master_key_hex())
            .env("PALISADE_DATA_DIR", data_dir)
            .env("PALISADE_ADMIN_PASSWORD", "an admin password for the end-to-end tests")
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let reader = std::io::BufReader::new(child.stdout.take().unwrap());
        for line in reader.lines() {
            if let Some(base) = line.unwrap().strip_prefix("Palisade is listening on ") {
                return ControlPlane { child, base: base.to_owned() };
            }
        }
        panic!("palisade did not start");
    }

    pub fn kill(mut self) {
        signal(&self.child, "KILL");
        self.child.wait().unwrap();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
    }
}

