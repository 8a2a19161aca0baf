//! Credentials never reach git, output or logs (api.md section 7): a token typed into every
//! URL flag and config key, and handed through the environment, is searched for in every byte
//! starmap writes (the deploy repo's git objects, stdout, stderr with logs at `-vv`, the
//! controller's HTTP answers and `/metrics`, the registry's storage, the cache of clones on
//! disk): zero hits. Real git over smart HTTP (`git http-backend`), a real registry (CNCF
//! Distribution) when the e2e build cache has it.

mod common;
mod controller_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::registry::{self, Registry};
use common::{copy_dir, every_git_object, fixtures, git, git_init_commit};

/// In the URLs' userinfo.
const TOKEN: &str = "tok3n-in-the-url-Zq81";
/// In GIT_TOKEN.
const GIT_ENV_TOKEN: &str = "tok3n-in-git-env-Xw44";
/// In STARMAP_OCI_PASSWORD.
const OCI_ENV_TOKEN: &str = "tok3n-in-oci-env-Pm07";
/// The webhook secret.
const WEBHOOK: &str = "tok3n-webhook-Ab12";

/// `git http-backend` behind the harness's small server, pushes allowed.
struct GitServer(Child, u16);

impl GitServer {
    fn start(root: &Path) -> GitServer {
        let port = controller_support::free_port();
        let child = Command::new("python3")
            .arg(common::root().join("tests/e2e/git-http.py"))
            .arg(root)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the git server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the git server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        GitServer(child, port)
    }

    fn url(&self, repo: &str) -> String {
        format!("http://ci-bot:{TOKEN}@127.0.0.1:{}/git/{repo}", self.1)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every place a credential could have gone.
struct Written {
    texts: Vec<(String, Vec<u8>)>,
}

impl Written {
    fn add(&mut self, what: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.texts.push((what.into(), bytes.into()));
    }

    fn output(&mut self, what: &str, out: &std::process::Output) {
        self.add(format!("{what}: stdout"), out.stdout.clone());
        self.add(format!("{what}: stderr"), out.stderr.clone());
    }

    /// Every file below `dir`.
    fn files(&mut self, what: &str, dir: &Path) {
        for entry in walkdir::WalkDir::new(dir).into_iter().filter_map(|e| e.ok()) {
            if entry.file_type().is_file() {
                let bytes = std::fs::read(entry.path()).unwrap_or_default();
                self.add(format!("{what}: {}", entry.path().display()), bytes);
            }
        }
    }

    /// Every object of a git repository, decompressed.
    fn git_objects(&mut self, what: &str, repo: &Path) {
        let objects = every_git_object(repo);
        assert!(objects.len() > 10_000, "{what}: the objects are there");
        self.add(format!("{what}: every git object"), objects);
    }

    fn assert_clean(&self) {
        let mut hits = Vec::new();
        for secret in [TOKEN, GIT_ENV_TOKEN, OCI_ENV_TOKEN, WEBHOOK] {
            for (what, bytes) in &self.texts {
                if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                    hits.push(format!("{secret} in {what}"));
                }
            }
        }
        assert!(hits.is_empty(), "credentials leaked:\n  {}", hits.join("\n  "));
        assert!(self.texts.len() > 20, "searched {} places", self.texts.len());
    }
}

fn starmap(cache: &Path, args: &[&str]) -> std::process::Output {
    common::starmap()
        .env("STARMAP_CACHE_DIR", cache)
        .env("GIT_TOKEN", GIT_ENV_TOKEN)
        .env("STARMAP_OCI_USERNAME", "ci-bot")
        .env("STARMAP_OCI_PASSWORD", OCI_ENV_TOKEN)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_token_in_every_url_and_variable_is_in_none_of_what_starmap_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("git");
    std::fs::create_dir_all(&root).unwrap();
    let cache = tmp.path().join("cache");
    let server = GitServer::start(&root);
    let reg_bin = registry::available();
    let registry = reg_bin
        .as_ref()
        .map(|b| Registry::start(b, &tmp.path().join("registry")));

    // The source: the fixtures with credentials in deploy.url and oci.repository.
    let work = tmp.path().join("source-work");
    copy_dir(&fixtures(), &work);
    let mut config = format!(
        "ignore: [drafts/**, .github/**]\ndeploy:\n  url: https://ci-bot:{TOKEN}@git.example.com/retail/fleet-deploy.git\n  branch: main\n"
    );
    if let Some(r) = &registry {
        config.push_str(&format!(
            "oci:\n  repository: oci://ci-bot:{TOKEN}@{}/fleet\n  insecure: true\n",
            r.host()
        ));
    }
    std::fs::write(work.join("starmap.yaml"), config).unwrap();
    git_init_commit(&work);
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            root.join("source.git").to_str().unwrap(),
        ],
    );
    git(&root, &["init", "-q", "--bare", "-b", "main", "deploy.git"]);
    git(&root.join("deploy.git"), &["config", "http.receivepack", "true"]);
    let source = format!("{}@main", server.url("source.git"));
    let deploy = server.url("deploy.git");

    let mut written = Written { texts: Vec::new() };
    let render = starmap(
        &cache,
        &["render", "-vv", "--source", &source, "--deploy", &deploy, "--push"],
    );
    assert!(render.status.success(), "{}", String::from_utf8_lossy(&render.stderr));
    let stdout = String::from_utf8_lossy(&render.stdout);
    assert!(
        stdout.contains("http://127.0.0.1:"),
        "the deploy repo is named, without credentials: {stdout}"
    );
    written.output("render -vv --push", &render);
    for args in [
        vec!["plan", "-vv", "--diff", "--source", &source, "--deploy", &deploy],
        vec!["plan", "-o", "json", "--source", &source, "--deploy", &deploy],
        vec!["explain", "-vv", "--source", &source, "--cluster", "store-0042"],
        vec!["validate", "-vv", "--source", &source],
        vec!["status", "show", "-vv", "--deploy", &deploy],
        vec![
            "render", "-vv", "-o", "json", "--source", &source, "--deploy", &deploy, "--push",
        ],
    ] {
        let out = starmap(&cache, &args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        written.output(&args.join(" "), &out);
    }
    // Errors that quote the URLs: an unreachable deploy repo, a source at a missing ref, a
    // status round without clusters.
    let dead = format!("http://ci-bot:{TOKEN}@127.0.0.1:9/git/deploy.git");
    for args in [
        vec!["render", "-vv", "--source", &source, "--deploy", &dead, "--push"],
        vec![
            "validate",
            "-vv",
            "--source",
            &format!("{}@no-such-ref", server.url("source.git")),
        ],
        vec![
            "status",
            "collect",
            "-vv",
            "--source",
            &source,
            "--deploy",
            &deploy,
            "--kubeconfig",
            "/nonexistent",
        ],
    ] {
        let out = starmap(&cache, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error: "), "{stderr}");
        written.output(&args.join(" "), &out);
    }

    // The controller: its logs, /metrics and its health answers.
    let port = controller_support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut c = controller_support::start(
        &[
            "--source",
            &source,
            "--deploy",
            &deploy,
            "--push",
            "--listen",
            &listen,
            "--interval",
            "1h",
            "--status-interval",
            "1h",
            "-vv",
        ],
        port,
        &[
            ("STARMAP_CACHE_DIR", cache.to_str().unwrap()),
            ("GIT_TOKEN", GIT_ENV_TOKEN),
            ("STARMAP_OCI_USERNAME", "ci-bot"),
            ("STARMAP_OCI_PASSWORD", OCI_ENV_TOKEN),
            ("STARMAP_WEBHOOK_SECRET", WEBHOOK),
        ],
    );
    c.wait_ready(Duration::from_secs(60));
    for path in ["/metrics", "/readyz", "/healthz"] {
        let (code, body) = c.get(path).expect("the controller answers");
        assert_eq!(code, 200, "{path}: {body}");
        written.add(format!("controller {path}"), body);
    }
    c.signal(libc::SIGTERM);
    assert!(c.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()));
    written.add("controller logs", c.logs());

    // What is on disk: the deploy repo (every object), the cache of clones, the registry.
    written.git_objects("the deploy repo", &root.join("deploy.git"));
    written.files("starmap's cache of clones", &cache);
    if let Some(r) = &registry {
        written.files("the registry's storage", &tmp.path().join("registry"));
        assert!(r.catalog().len() >= 14, "the artifacts were pushed");
    }
    written.assert_clean();
    // The generated objects name the deploy repo as the edges reach it, without credentials.
    let files = common::tree_files(&root.join("deploy.git"), "main");
    assert!(
        files["flux/store-0042/gotk-sync.yaml"].contains("git.example.com/retail/fleet-deploy.git")
            || files["flux/store-0042/gotk-sync.yaml"].contains("oci://"),
        "{}",
        files["flux/store-0042/gotk-sync.yaml"]
    );
    drop(server);
}
