//! Renders a report in headless Chromium with networking disabled: the page must paint (screenshot),
//! log no console error, and its DOM must contain every plot.
//!
//! Chromium is required: the test fails with a clear message when it is missing, unless
//! `ICDTUNE_SKIP_BROWSER=1` is set.

use std::path::{Path, PathBuf};
use std::process::Command;

use metrics::MetricsConfig;
use report::{assemble, load_run, render_html, write_report, PLOT_IDS};

use crate::fixture::fixture_run;

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

fn run_chromium(exe: &Path, profile: &Path, extra: &[String], page: &Path) -> std::process::Output {
    Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            // Every host name fails to resolve: the page must render without any network.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("start chromium")
}

#[test]
fn report_renders_in_headless_chromium_without_console_errors() {
    let Some(exe) = chromium() else {
        if std::env::var("ICDTUNE_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("skipped: chromium not found and ICDTUNE_SKIP_BROWSER=1");
            return;
        }
        panic!(
            "chromium not found on PATH; this test renders report.html in a headless browser.\n\
             hint: apt-get install -y chromium, or set ICDTUNE_SKIP_BROWSER=1 to skip"
        );
    };
    let run = fixture_run();
    let cfg = MetricsConfig {
        bootstrap_samples: 200,
        ..MetricsConfig::default()
    };
    let results = assemble(
        vec![load_run(run.path()).unwrap()],
        &cfg,
        "icdtune test",
        None,
    )
    .unwrap();
    let html = render_html(&results).unwrap();
    write_report(run.path(), &results, &html).unwrap();
    let page = run.path().join("report.html");

    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let out = run_chromium(
        &exe,
        profile.path(),
        &[format!("--screenshot={}", shot.display())],
        &page,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "screenshot is a PNG");
    assert!(
        png.len() > 20_000,
        "screenshot is suspiciously small: {} bytes",
        png.len()
    );
    for bad in ["Uncaught", "ERROR:CONSOLE", "CONSOLE(", "net::ERR_"] {
        assert!(!stderr.contains(bad), "browser reported {bad:?}:\n{stderr}");
    }
    println!("report screenshot: {}", shot.display());

    let profile = tempfile::tempdir().unwrap();
    let out = run_chromium(&exe, profile.path(), &["--dump-dom".to_string()], &page);
    let dom = String::from_utf8_lossy(&out.stdout);
    for id in PLOT_IDS {
        assert!(dom.contains(&format!("id=\"{id}\"")), "DOM lacks plot {id}");
    }
    assert!(dom.contains("comparison-table"));
}
