//! A real OCI registry for the tests: CNCF Distribution's `registry`, built from the Go module
//! proxy by `tests/e2e/build.sh` (cached in `~/.cache/starmap-e2e/store/registry@<version>`),
//! serving plain HTTP on 127.0.0.1 with its filesystem storage in a directory of the test's, so
//! that a stopped registry keeps what it had when it is started again.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `registry` binary: on PATH (as `.ci/run` sets it), else in the e2e build cache.
pub fn binary() -> Option<PathBuf> {
    tool("registry")
}

/// A binary of the e2e build: on PATH, else in the build cache's store (`<name>@<version>/`).
pub fn tool(name: &str) -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let cache = std::env::var_os("STARMAP_E2E_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/starmap-e2e")))?;
    let store = std::fs::read_dir(cache.join("store")).ok()?;
    store
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{name}@")))
        .map(|e| e.path().join(name))
        .find(|p| p.is_file())
}

/// The registry, or `None` with the reason printed ("skipped: ..."), or a panic when
/// `STARMAP_REQUIRE_TOOLS` asks for every tool.
pub fn available() -> Option<PathBuf> {
    match binary() {
        Some(b) => Some(b),
        None => {
            assert!(
                std::env::var_os("STARMAP_REQUIRE_TOOLS").is_none(),
                "the registry binary is required (STARMAP_REQUIRE_TOOLS is set): run tests/e2e/build.sh"
            );
            eprintln!("skipped: no `registry` binary (CNCF Distribution); run tests/e2e/build.sh to build it");
            None
        }
    }
}

/// A running registry.
pub struct Registry {
    binary: PathBuf,
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// go-containerregistry's `crane registry serve` (in memory) instead of Distribution.
    crane: bool,
}

impl Registry {
    /// Start a registry storing into `dir` on a free port.
    pub fn start(binary: &Path, dir: &Path) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Registry::start_on(binary, dir, port)
    }

    /// Start a registry storing into `dir` on `port`.
    pub fn start_on(binary: &Path, dir: &Path, port: u16) -> Registry {
        let mut r = Registry {
            binary: binary.to_path_buf(),
            port,
            dir: dir.to_path_buf(),
            child: None,
            crane: false,
        };
        r.resume();
        r
    }

    /// `crane registry serve` (go-containerregistry, manifests in memory) on a free port. It
    /// answers a finished blob upload without the `Location` header the spec asks for.
    pub fn start_crane(crane: &Path, dir: &Path) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = Registry {
            binary: crane.to_path_buf(),
            port,
            dir: dir.to_path_buf(),
            child: None,
            crane: true,
        };
        r.resume();
        r
    }

    /// The registry's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stop it (SIGKILL): connections are refused until [`Registry::resume`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port and storage.
    pub fn resume(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let config = self.dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n",
                self.dir.join("data").display(),
                self.port
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("registry.log"))
            .unwrap();
        let mut cmd = Command::new(&self.binary);
        if self.crane {
            cmd.args(["registry", "serve", "--address", &self.host()]);
        } else {
            cmd.arg("serve").arg(&config);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.get("/v2/").is_ok_and(|(code, _)| code == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the registry did not answer on {}; log:\n{}",
            self.host(),
            std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
        );
    }

    /// A GET with `Accept` for OCI manifests: (status, body).
    pub fn get(&self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n",
            self.host()
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut body = raw[(split + 4).min(raw.len())..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = unchunk(&body);
        }
        Ok((code, body))
    }

    /// The manifest `repo:tag` points to, and its digest; `None` when there is none.
    pub fn manifest(&self, repo: &str, tag: &str) -> Option<(Value, String)> {
        let (code, body) = self.get(&format!("/v2/{repo}/manifests/{tag}")).ok()?;
        if code != 200 {
            return None;
        }
        let digest = format!("sha256:{}", sha256_hex(&body));
        Some((serde_json::from_slice(&body).ok()?, digest))
    }

    /// A blob's bytes.
    pub fn blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let (code, body) = self.get(&format!("/v2/{repo}/blobs/{digest}")).unwrap();
        if code == 307 || code == 302 {
            panic!("the registry redirected a blob read");
        }
        assert_eq!(code, 200, "blob {repo}@{digest}");
        body
    }

    /// Every repository the registry holds.
    pub fn catalog(&self) -> Vec<String> {
        let (_, body) = self.get("/v2/_catalog?n=1000").unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The files of a `tar+gzip` layer: (path, content), directories left out.
pub fn layer_files(layer: &[u8]) -> std::collections::BTreeMap<String, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let path = entry.path().unwrap().display().to_string();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        files.insert(path, text);
    }
    files
}
