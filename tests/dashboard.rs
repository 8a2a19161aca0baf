//! The dashboard in a real browser: headless Chromium loads the pages `starmap run` serves over
//! a deploy repo with a paused rollout (a failing canary) and a stale cluster, the DOM is
//! checked, a link to a cluster page is followed, screenshots are taken
//! (`target/dashboard-screenshots/`, copied into docs/images/); the exported page
//! (`status show -o html`) opens from a file with no server and shows the same numbers; the
//! JSON API is `status show -o json`.
//!
//! Status is written through starmap's own status store (`common::reported`), as
//! `status collect` writes it, with the health the test chooses for each cluster.
//! Without Chromium the test says it was skipped, unless STARMAP_REQUIRE_TOOLS is set
//! (`.ci/run` installs Debian's `chromium`).

mod common;
mod controller_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::reported::{report_status, report_unreachable};
use common::waves::{WAVES, set_image, source};
use common::{render, starmap};
use controller_support::{free_port, start};
use starmap::health::Health;

const ALL: [&str; 7] = [
    "store-0042",
    "store-0350",
    "store-1001",
    "store-0107",
    "store-0311",
    "store-0213",
    "store-1017",
];

fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| common::on_path(name));
    if found.is_none() {
        assert!(
            std::env::var_os("STARMAP_REQUIRE_TOOLS").is_none(),
            "chromium is required (STARMAP_REQUIRE_TOOLS) but not found"
        );
        println!("skipped: no chromium here (bash .ci/run installs Debian's chromium)");
    }
    found
}

struct Browser {
    program: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(args)
            .output()
            .expect("chromium runs");
        assert!(
            out.status.success(),
            "chromium {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The DOM after the page loaded and its script ran.
    fn dom(&self, url: &str) -> String {
        self.run(&["--virtual-time-budget=3000", "--dump-dom", url])
    }

    fn screenshot(&self, url: &str, file: &Path) {
        let _ = std::fs::remove_file(file);
        self.run(&[
            "--window-size=1400,1000",
            &format!("--screenshot={}", file.display()),
            url,
        ]);
        let png = std::fs::read(file).expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{}", file.display());
    }
}

/// The element of `dom` that opens with `start` (up to its first `>`), and its text up to
/// `end`.
fn element<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let at = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in the page:\n{dom}"));
    let rest = &dom[at..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[test]
fn the_dashboard_in_a_real_browser() {
    let Some(program) = chromium() else { return };
    let browser = Browser {
        program,
        profile: tempfile::tempdir().unwrap(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path(), WAVES);
    let deploy = tmp.path().join("deploy");
    render(&src, &deploy);
    for _ in 0..3 {
        report_status(&deploy, &ALL, &|_| Health::Healthy);
        render(&src, &deploy);
    }
    // A new image: the canary wave gets it, store-0042 fails it, the rollout pauses.
    set_image(&src, "2.0.0");
    render(&src, &deploy);
    report_status(&deploy, &ALL, &|c| {
        if c == "store-0042" {
            Health::Degraded
        } else {
            Health::Healthy
        }
    });
    render(&src, &deploy);
    // store-0213 stops answering: stale.
    report_unreachable(
        &deploy,
        "store-0213",
        "https://10.0.2.13:6443: connection refused (3 attempts)",
    );
    starmap()
        .args(["status", "summarize", "--source"])
        .arg(&src)
        .arg("--deploy")
        .arg(&deploy)
        .assert()
        .success();

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut controller = start(
        &[
            "--source",
            src.to_str().unwrap(),
            "--deploy",
            deploy.to_str().unwrap(),
            "--listen",
            &listen,
            "--interval",
            "1h",
            "--status-interval",
            "0",
        ],
        port,
        &[],
    );
    controller.wait_ready(Duration::from_secs(60));
    let base = format!("http://{listen}");

    let dom = browser.dom(&format!("{base}/"));
    // The rollout: paused, and why.
    let rollout = element(&dom, "<tr data-rollout=\"storefront\"", "</tr>");
    assert!(rollout.contains("Paused"), "{rollout}");
    assert!(rollout.contains("store-0042"), "{rollout}");
    assert!(rollout.contains("1/3"), "{rollout}");
    // The placement's counts: 1 Degraded and 1 stale of its clusters.
    let row = element(&dom, "<tr data-placement=\"storefront\"", "</tr>");
    assert!(row.contains("title=\"1 Degraded\""), "{row}");
    assert!(row.contains("<td class=\"num stale-count\">1</td>"), "{row}");
    // The map: the failing canary and the stale cluster, with a letter as well as a colour.
    let canary = element(&dom, "id=\"cell-store-0042\"", "</a>");
    assert!(canary.contains("Degraded") && canary.ends_with(">D"), "{canary}");
    let stale_cell = element(&dom, "id=\"cell-store-0213\"", "</a>");
    assert!(stale_cell.contains("stale"), "{stale_cell}");

    // Follow the canary's link to its page.
    let href = element(canary, "href=\"", "\" ")
        .trim_start_matches("href=\"")
        .to_string();
    assert_eq!(href, "/clusters/store-0042");
    let page = browser.dom(&format!("{base}{href}"));
    let deployment = element(&page, "<td>Deployment</td>", "</tr>");
    assert!(
        deployment.contains("Degraded") && deployment.contains("ProgressDeadlineExceeded"),
        "{deployment}"
    );
    let stale_page = browser.dom(&format!("{base}/clusters/store-0213"));
    assert!(
        element(&stale_page, "class=\"stale-since\"", "</td>").contains("connection refused"),
        "{stale_page}"
    );
    let placement = browser.dom(&format!("{base}/placements/storefront"));
    assert!(placement.contains("Paused"), "{placement}");
    // Each wave with its clusters and gate: the canary wave is open and holds the failing one.
    let canary_wave = element(&placement, "<tr data-wave=\"canary\"", "</tr>");
    assert!(canary_wave.contains("open"), "{canary_wave}");
    assert!(
        element(canary_wave, "href=\"/clusters/store-0042\"", "</a>").ends_with(">D"),
        "{canary_wave}"
    );
    let main_wave = element(&placement, "<tr data-wave=\"main\"", "</tr>");
    assert!(
        main_wave.contains("waiting") && main_wave.contains("store-0213"),
        "{main_wave}"
    );

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    browser.screenshot(&format!("{base}/"), &shots.join("dashboard-overview.png"));
    browser.screenshot(&format!("{base}{href}"), &shots.join("dashboard-cluster.png"));

    // The JSON API is `status show -o json`.
    let (code, api) = controller.get("/api/v1/status").unwrap();
    assert_eq!(code, 200, "{api}");
    let shown = starmap()
        .args(["status", "show", "-o", "json", "--deploy"])
        .arg(&deploy)
        .output()
        .unwrap();
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(api, shown);
    let (code, cluster) = controller.get("/api/v1/clusters/store-0213").unwrap();
    assert_eq!(code, 200);
    assert!(cluster.contains("\"stale\":true"), "{cluster}");
    assert_eq!(controller.get("/clusters/nowhere").unwrap().0, 404);

    // The export: one file, no server, the same numbers.
    let exported = starmap()
        .args(["status", "show", "-o", "html", "--deploy"])
        .arg(&deploy)
        .output()
        .unwrap();
    assert!(exported.status.success());
    let file = tmp.path().join("fleet.html");
    std::fs::write(&file, &exported.stdout).unwrap();
    let html = String::from_utf8_lossy(&exported.stdout);
    for outside in ["src=\"http", "href=\"http", "<link", "@import", "url(http"] {
        assert!(!html.contains(outside), "nothing loaded from elsewhere: {outside}");
    }
    let offline = browser.dom(&format!("file://{}", file.display()));
    assert_eq!(
        element(&offline, "<tr data-placement=\"storefront\"", "</tr>").replace("#placement-", "/placements/"),
        row,
        "the same row as the served page"
    );
    assert!(element(&offline, "id=\"cell-store-0213\"", "</a>").contains("stale"));
    assert!(
        element(&offline, "id=\"cluster-store-0042\"", "</section>").contains("ProgressDeadlineExceeded"),
        "the canary's section"
    );
    browser.screenshot(
        &format!("file://{}", file.display()),
        &shots.join("dashboard-export.png"),
    );
}
