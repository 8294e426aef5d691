//! The run's HTML report: opened in headless Chromium (network blocked) it
//! loads nothing, logs nothing and shows every section; its headline
//! numbers are the published tables'; without surveys and usage it says
//! "no data"; it never fails a run; `cskpi report` draws it again.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::fixture::query_outputs;

fn cskpi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cskpi"))
        .args(args)
        .output()
        .unwrap()
}

/// data-samples' job with absolute input paths and its output in `dir`;
/// `drop` leaves those optional inputs out.
fn sample_job(dir: &Path, drop: &[&str]) -> PathBuf {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples");
    let text = std::fs::read_to_string(samples.join("job.toml")).unwrap();
    let mut job = String::new();
    for line in text.lines() {
        let input = [
            "customers",
            "orders",
            "tickets",
            "surveys",
            "usage",
            "costs",
        ]
        .into_iter()
        .find(|name| line.starts_with(&format!("{name} = \"")));
        match input {
            Some(name) if drop.contains(&name) => continue,
            Some(name) => job.push_str(&format!(
                "{name} = \"{}\"\n",
                samples.join(format!("{name}.parquet")).display()
            )),
            None if line.starts_with("path = ") => {
                job.push_str(&format!("path = \"{}/out/\"\n", dir.display()))
            }
            None => {
                job.push_str(line);
                job.push('\n');
            }
        }
    }
    let path = dir.join("job.toml");
    std::fs::write(&path, job).unwrap();
    path
}

fn run(job: &Path) -> Output {
    let o = cskpi(&["run", "--config", job.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn chromium() -> String {
    for name in ["chromium", "chromium-browser"] {
        let found = Command::new(name).arg("--version").output();
        if found.is_ok_and(|o| o.status.success()) {
            return name.to_string();
        }
    }
    panic!("headless Chromium is needed (scripts/test.sh installs the Debian package `chromium`)")
}

/// What Chromium saw of a page opened from disk with every host
/// unresolvable: the DOM, its console messages and the URLs the page
/// itself asked for (from the net log: requests made for a file:// page;
/// the browser's own background requests are not the page's).
struct Browsed {
    dom: String,
    console: Vec<String>,
    page_requests: Vec<String>,
}

fn browse(page: &Path, work: &Path, screenshot: Option<&Path>) -> Browsed {
    let net_log = work.join(format!(
        "{}.netlog.json",
        page.file_name().unwrap().to_string_lossy()
    ));
    let mut args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--hide-scrollbars".into(),
        "--no-first-run".into(),
        "--host-resolver-rules=MAP * ~NOTFOUND".into(),
        "--enable-logging=stderr".into(),
        "--v=0".into(),
        format!("--log-net-log={}", net_log.display()),
        format!("--user-data-dir={}", work.join("profile").display()),
    ];
    match screenshot {
        Some(png) => {
            args.push("--window-size=1200,2400".into());
            args.push(format!("--screenshot={}", png.display()));
        }
        None => args.push("--dump-dom".into()),
    }
    args.push(format!("file://{}", page.display()));
    let o = Command::new(chromium()).args(&args).output().unwrap();
    assert!(
        o.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    let console = log
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let net: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&net_log).unwrap()).unwrap();
    let page_requests = net["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let params = &e["params"];
            let key = params["network_isolation_key"].as_str()?;
            key.starts_with("file://")
                .then(|| params["url"].as_str().unwrap_or("").to_string())
        })
        .collect();
    Browsed {
        dom: String::from_utf8_lossy(&o.stdout).to_string(),
        console,
        page_requests,
    }
}

/// The `data-value` and the shown text of the tile `data-kpi="key"`.
fn tile(dom: &str, key: &str) -> (String, String) {
    let marker = format!("data-kpi=\"{key}\" data-value=\"");
    let start = dom.find(&marker).unwrap_or_else(|| panic!("no tile {key}")) + marker.len();
    let value_end = start + dom[start..].find('"').unwrap();
    let shown_start = value_end + dom[value_end..].find('>').unwrap() + 1;
    let shown_end = shown_start + dom[shown_start..].find('<').unwrap();
    (
        dom[start..value_end].to_string(),
        dom[shown_start..shown_end].to_string(),
    )
}

/// The pixels of an 8-bit, non-interlaced PNG (what Chromium writes):
/// width, height, channels and the unfiltered rows (PNG spec, sections 4
/// and 9: the IDAT chunks are one zlib stream of filtered scanlines).
fn decode_png(bytes: &[u8]) -> (usize, usize, usize, Vec<u8>) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut width, mut height, mut channels) = (0, 0, 0);
    let mut compressed = Vec::new();
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let length = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = &bytes[at + 8..at + 8 + length];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                height = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                assert_eq!((data[8], data[12]), (8, 0), "8-bit, not interlaced");
                channels = match data[9] {
                    0 => 1,
                    2 => 3,
                    4 => 2,
                    6 => 4,
                    other => panic!("colour type {other}"),
                };
            }
            b"IDAT" => compressed.extend_from_slice(data),
            _ => {}
        }
        at += 12 + length;
    }
    let mut filtered = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::ZlibDecoder::new(&compressed[..]),
        &mut filtered,
    )
    .unwrap();
    let stride = width * channels;
    let mut pixels = vec![0u8; stride * height];
    for y in 0..height {
        let line = &filtered[y * (stride + 1)..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let left = if x >= channels {
                pixels[y * stride + x - channels] as i32
            } else {
                0
            };
            let up = if y > 0 {
                pixels[(y - 1) * stride + x] as i32
            } else {
                0
            };
            let up_left = if y > 0 && x >= channels {
                pixels[(y - 1) * stride + x - channels] as i32
            } else {
                0
            };
            let predicted = match line[0] {
                0 => 0,
                1 => left,
                2 => up,
                3 => (left + up) / 2,
                4 => {
                    let p = left + up - up_left;
                    let (pa, pb, pc) = ((p - left).abs(), (p - up).abs(), (p - up_left).abs());
                    if pa <= pb && pa <= pc {
                        left
                    } else if pb <= pc {
                        up
                    } else {
                        up_left
                    }
                }
                other => panic!("filter {other}"),
            };
            pixels[y * stride + x] = (line[1 + x] as i32 + predicted) as u8;
        }
    }
    (width, height, channels, pixels)
}

/// Mean and standard deviation of a PNG's grey levels.
fn grey_spread(png_file: &Path) -> (f64, f64) {
    let (_, _, channels, pixels) = decode_png(&std::fs::read(png_file).unwrap());
    let greys: Vec<f64> = pixels
        .chunks(channels)
        .map(|p| match channels {
            1 | 2 => p[0] as f64,
            _ => 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64,
        })
        .collect();
    let mean = greys.iter().sum::<f64>() / greys.len() as f64;
    let variance = greys.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / greys.len() as f64;
    (mean, variance.sqrt())
}

#[test]
fn the_sample_report_opens_offline_in_a_browser_with_every_section() {
    let dir = tempfile::tempdir().unwrap();
    run(&sample_job(dir.path(), &[]));
    let page = dir.path().join("out/report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.len() < 2_000_000, "{} bytes", html.len());

    // The checks catch what they look for: a page with a script and a
    // remote image, without the report's content policy.
    let control = dir.path().join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><html><body><img src=\"http://example.com/x.png\"><script>console.error('boom')</script></body></html>",
    )
    .unwrap();
    let seen = browse(&control, dir.path(), None);
    assert!(
        seen.console.iter().any(|l| l.contains("boom")),
        "{:?}",
        seen.console
    );
    assert!(
        seen.page_requests.iter().any(|u| u.contains("example.com")),
        "{:?}",
        seen.page_requests
    );

    let seen = browse(&page, dir.path(), None);
    assert!(seen.console.is_empty(), "console: {:#?}", seen.console);
    assert!(
        seen.page_requests.is_empty(),
        "requests: {:#?}",
        seen.page_requests
    );
    for section in [
        "header",
        "inputs",
        "revenue",
        "retention",
        "voice",
        "csi",
        "health",
        "value",
    ] {
        assert!(
            seen.dom.contains(&format!("id=\"{section}\"")),
            "no section {section}"
        );
    }
    for chart in [
        "mrr-chart",
        "mrr-bridge",
        "nrr-grr-chart",
        "churn-chart",
        "renewal-chart",
        "cohort-logo",
        "cohort-revenue",
        "nps-chart",
        "csat-chart",
        "fcr-chart",
        "resolution-chart",
        "themes-share",
        "csi-index",
        "csi-model",
        "health-bands",
        "health-lowest",
        "health-drops",
        "clv-chart",
        "cps-chart",
        "crc-chart",
    ] {
        let start = seen
            .dom
            .find(&format!("id=\"{chart}\""))
            .unwrap_or_else(|| panic!("no {chart}"));
        let figure = &seen.dom[start..start + seen.dom[start..].find("</figure>").unwrap()];
        assert!(
            figure.contains("<svg") && figure.contains("<details>"),
            "{chart}"
        );
    }

    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-sample.png");
    browse(&page, dir.path(), Some(&screenshot));
    // A blank page, as the control of the measure: one grey level.
    let blank_page = dir.path().join("blank.html");
    std::fs::write(&blank_page, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank = dir.path().join("blank.png");
    browse(&blank_page, dir.path(), Some(&blank));
    assert!(
        grey_spread(&blank).1 < 1.0,
        "a blank page is not blank: {:?}",
        grey_spread(&blank)
    );
    let (mean, spread) = grey_spread(&screenshot);
    // A blank page is one grey level; the report's text and charts spread them.
    assert!(
        spread > 20.0,
        "screenshot {} looks blank: mean {mean}, sd {spread}",
        screenshot.display()
    );
    println!("screenshot kept at {}", screenshot.display());
}

#[tokio::test]
async fn the_page_shows_the_published_numbers() {
    let dir = tempfile::tempdir().unwrap();
    run(&sample_job(dir.path(), &[]));
    let out = dir.path().join("out");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    // as_of 2026-06-30: June 2026 is the last complete month.
    let mut expected = Vec::new();
    for (key, sql) in [
        (
            "mrr",
            "SELECT mrr FROM mrr_monthly WHERE month = DATE '2026-06-01' AND segment = 'all'",
        ),
        (
            "nps",
            "SELECT nps FROM survey_monthly WHERE month = DATE '2026-06-01' AND segment = 'all'",
        ),
        (
            "churn_rate",
            "SELECT churn_rate FROM retention_monthly WHERE month = DATE '2026-06-01' AND segment = 'all'",
        ),
        (
            "red_customers",
            "SELECT CAST(COUNT(*) AS DOUBLE) FROM customer_health WHERE band = 'red'",
        ),
    ] {
        let rows = query_outputs(&out, sql).await;
        expected.push((key, rows[0][0].parse::<f64>().unwrap()));
    }
    for (key, value) in expected {
        let (shown_value, shown) = tile(&html, key);
        let shown_value: f64 = shown_value.parse().unwrap();
        assert!(
            (shown_value - value).abs() <= 1e-9 * value.abs().max(1.0),
            "{key}: page {shown_value}, table {value}"
        );
        // and shown for people
        let expected_text = match key {
            "mrr" => {
                let cents = format!("{value:.2}");
                let (whole, fraction) = cents.split_once('.').unwrap();
                let digits: Vec<char> = whole.chars().collect();
                let mut grouped = String::new();
                for (i, d) in digits.iter().enumerate() {
                    if i > 0 && (digits.len() - i).is_multiple_of(3) {
                        grouped.push(',');
                    }
                    grouped.push(*d);
                }
                format!("{grouped}.{fraction}")
            }
            "nps" => format!("{value:.1}"),
            "churn_rate" => format!("{value:.1}%"),
            _ => format!("{value:.0}"),
        };
        assert_eq!(shown, expected_text, "{key}");
    }
    // The inputs table is the manifest's.
    assert!(
        html.contains("<td>orders</td><td>4,605</td><td>11</td>"),
        "inputs table"
    );
}

#[test]
fn without_surveys_and_usage_the_report_says_no_data() {
    let dir = tempfile::tempdir().unwrap();
    run(&sample_job(dir.path(), &["surveys", "usage"]));
    let html = std::fs::read_to_string(dir.path().join("out/report.html")).unwrap();
    for part in ["surveys", "feedback", "csi", "usage"] {
        assert!(
            html.contains(&format!("data-no-data=\"{part}\"")),
            "no 'no data' for {part}"
        );
    }
    for chart in [
        "nps-chart",
        "csat-chart",
        "themes-share",
        "csi-index",
        "csi-model",
    ] {
        assert!(
            !html.contains(&format!("id=\"{chart}\"")),
            "an empty {chart} drawn"
        );
    }
    // what has data is still drawn
    assert!(html.contains("id=\"mrr-chart\"") && html.contains("id=\"health-bands\""));
}

#[test]
fn a_failed_report_is_a_warning_and_cskpi_report_draws_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let job = sample_job(dir.path(), &[]);
    // report.html cannot be written: a non-empty directory has its name.
    let blocker = dir.path().join("out/report.html");
    std::fs::create_dir_all(blocker.join("x")).unwrap();
    let o = run(&job);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("no report: the tables are published"), "{log}");
    assert!(dir.path().join("out/_manifest.json").is_file());
    assert!(dir.path().join("out/mrr_monthly").is_dir());

    std::fs::remove_dir_all(&blocker).unwrap();
    let o = cskpi(&["report", "--config", job.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let drawn = std::fs::read(&blocker).unwrap();
    // The same published run draws the same page, to any file.
    let copy = dir.path().join("copy.html");
    let o = cskpi(&[
        "report",
        "--config",
        job.to_str().unwrap(),
        "-o",
        copy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&copy).unwrap(), drawn);
    // A report as of another day than the published run's is refused.
    let o = cskpi(&[
        "report",
        "--config",
        job.to_str().unwrap(),
        "--as-of",
        "2026-05-31",
        "-o",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("published run is as of 2026-06-30"));

    // report = false: no page after a run.
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("[output]\n", "[output]\nreport = false\n");
    std::fs::write(&job, text).unwrap();
    std::fs::remove_file(&blocker).unwrap();
    run(&job);
    assert!(!blocker.exists());
}
