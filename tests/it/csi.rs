//! Spec 4.7 through a run: the pivot, the groups, the scores and the
//! errors, on a hand-worked fixture with configured weights, and PLS on the
//! plspm reference data fed through the surveys input.

use std::collections::HashMap;

use super::fixture::{Fixture, close, floats, strs, timestamps};

/// (response_id, customer_id, responded_at, item, score)
type Answer = (String, &'static str, &'static str, String, f64);

fn write_answers(f: &Fixture, answers: &[Answer]) {
    f.write(
        "surveys",
        vec![
            (
                "response_id",
                strs(answers.iter().map(|a| Some(a.0.as_str()))),
            ),
            ("customer_id", strs(answers.iter().map(|a| Some(a.1)))),
            (
                "responded_at",
                timestamps(answers.iter().map(|a| Some(a.2))),
            ),
            ("survey", strs(answers.iter().map(|_| Some("csi")))),
            ("item", strs(answers.iter().map(|a| Some(a.3.as_str())))),
            ("score", floats(answers.iter().map(|a| Some(a.4)))),
        ],
    );
}

fn respondent(
    id: &str,
    customer: &'static str,
    at: &'static str,
    scores: &[(&str, f64)],
) -> Vec<Answer> {
    scores
        .iter()
        .map(|(item, s)| (id.to_string(), customer, at, item.to_string(), *s))
        .collect()
}

/// Factors satisfaction = [s1, s2] and value = [v1], value -> satisfaction,
/// configured weights s1 = 2, s2 = 1, v1 = 1, scale 1-10.
/// Complete respondents of S1 (segment a), in March 2025:
///   R1 s1 10, s2 7, v1 8;  R2 s1 4, s2 1, v1 3;  R3 s1 7, s2 4, v1 5.
/// R4 (S2, segment b) has no s2: incomplete. R0 (S1) answered in Dec 2024,
/// before run.from = 2025-01: not counted. R9 answers after as_of: invisible.
/// Means: s1 7, s2 4, v1 16/3.
///   satisfaction = ((2 * 7 + 4) / 3 - 1) / 9 * 100 = 500 / 9 = 55.5556
///   value = (16/3 - 1) / 9 * 100 = 1300 / 27 = 48.1481; csi = 55.5556.
/// Composites, centred: satisfaction 2 s1 + s2 = 27, 9, 18 -> 9, -9, 0;
/// value 8/3, -7/3, -1/3. The path value -> satisfaction is their
/// correlation: 45 / sqrt(162 * 114/9) = 45 / sqrt(2052) = 0.993399;
/// R² = 2025 / 2052 = 0.986842.
fn fixture() -> Fixture {
    let mut f = Fixture::new();
    f.customers(&[
        ("S1", "2024-01-01", None, Some("a")),
        ("S2", "2024-01-01", None, Some("b")),
    ]);
    f.orders(&[]);
    f.no_tickets();
    let mut answers = Vec::new();
    let at = "2025-03-10 10:00";
    answers.extend(respondent(
        "R0",
        "S1",
        "2024-12-10 10:00",
        &[("s1", 1.0), ("s2", 1.0), ("v1", 1.0)],
    ));
    answers.extend(respondent(
        "R1",
        "S1",
        at,
        &[("s1", 10.0), ("s2", 7.0), ("v1", 8.0)],
    ));
    answers.extend(respondent(
        "R2",
        "S1",
        at,
        &[("s1", 4.0), ("s2", 1.0), ("v1", 3.0)],
    ));
    answers.extend(respondent(
        "R3",
        "S1",
        at,
        &[("s1", 7.0), ("s2", 4.0), ("v1", 5.0)],
    ));
    answers.extend(respondent("R4", "S2", at, &[("s1", 9.0), ("v1", 9.0)]));
    answers.extend(respondent(
        "R9",
        "S2",
        "2025-04-02 10:00",
        &[("s1", 1.0), ("s2", 1.0), ("v1", 1.0)],
    ));
    write_answers(&f, &answers);
    f.job_extra = CONFIGURED.into();
    f
}

const CONFIGURED: &str = "[run]\nfrom = '2025-01'\n\
    [csi]\nscale = [1, 10]\nmin_respondents = 3\n\
    [csi.weights]\ns1 = 2.0\ns2 = 1.0\nv1 = 1.0\n\
    [csi.factors]\nsatisfaction = ['s1', 's2']\nvalue = ['v1']\n\
    [csi.paths]\nsatisfaction = ['value']\n";

#[tokio::test]
async fn configured_weights_scores_paths_by_hand() {
    let f = fixture();
    f.run("2025-03-31").await.unwrap();
    let index = f
        .rows("SELECT period, segment, respondents, csi, incomplete_respondents, weights FROM csi_index ORDER BY segment")
        .await;
    assert_eq!(index.len(), 2, "{index:?}");
    for (row, segment, incomplete) in [(&index[0], "a", "0"), (&index[1], "all", "1")] {
        assert_eq!(row[0], "2025-03-01");
        assert_eq!(row[1], segment);
        assert_eq!(row[2], "3");
        assert!(close(&row[3], 500.0 / 9.0), "{row:?}");
        assert_eq!(row[4], incomplete);
        assert_eq!(row[5], "configured");
    }
    let factors = f
        .rows(
            "SELECT factor, respondents, score, r_squared \
             FROM csi_factors WHERE segment = 'all' ORDER BY factor",
        )
        .await;
    assert_eq!(factors[0][0], "satisfaction");
    assert!(close(&factors[0][2], 500.0 / 9.0));
    assert!(close(&factors[0][3], 2025.0 / 2052.0), "{factors:?}");
    let weights = f
        .rows(
            "SELECT w['item'], w['weight'] FROM (SELECT unnest(item_weights) AS w FROM csi_factors \
             WHERE segment = 'all' AND factor = 'satisfaction') ORDER BY 1",
        )
        .await;
    assert_eq!(
        weights,
        [["s1", "2.0"], ["s2", "1.0"]].map(|r| r.map(String::from).to_vec())
    );
    assert_eq!(factors[1][0], "value");
    assert!(close(&factors[1][2], 1300.0 / 27.0));
    assert_eq!(factors[1][3], "NULL");
    let paths = f
        .rows(
            "SELECT from_factor, to_factor, path_coefficient FROM csi_paths WHERE segment = 'all'",
        )
        .await;
    assert_eq!(paths.len(), 1);
    assert_eq!(
        (paths[0][0].as_str(), paths[0][1].as_str()),
        ("value", "satisfaction")
    );
    assert!(close(&paths[0][2], 45.0 / 2052f64.sqrt()), "{paths:?}");
}

/// The message of a run of the fixture with `job_extra`, which must fail
/// as a configuration error.
async fn configuration_error(job_extra: String) -> String {
    let mut f = fixture();
    f.job_extra = job_extra;
    let err = f.run("2025-03-31").await.unwrap_err();
    assert_eq!(err.exit_code(), cskpi::error::exit_code::CONFIG);
    err.to_string()
}

#[tokio::test]
async fn a_configured_item_nobody_answered_fails_the_run() {
    let message = configuration_error(
        CONFIGURED
            .replace("value = ['v1']", "value = ['v1', 'v2']")
            .replace("v1 = 1.0\n", "v1 = 1.0\nv2 = 1.0\n"),
    )
    .await;
    assert!(
        message.contains("v2") && message.contains("s1, s2, v1"),
        "{message}"
    );

    // No configured item answered at all: no respondent, and the same error.
    let message = configuration_error(
        CONFIGURED
            .replace("['s1', 's2']", "['t1', 't2']")
            .replace("['v1']", "['w1']")
            .replace(
                "s1 = 2.0\ns2 = 1.0\nv1 = 1.0",
                "t1 = 2.0\nt2 = 1.0\nw1 = 1.0",
            ),
    )
    .await;
    assert!(
        message.contains("t1, t2, w1") && message.contains("s1, s2, v1"),
        "{message}"
    );
}

/// Views for ad hoc SQL (the shell's) estimate at the first read of a csi
/// table: opening them succeeds even when the estimation would fail, the
/// failure comes with the query that needs it, and a valid model gives the
/// run's numbers (csi 500 / 9, worked out above).
#[tokio::test]
async fn views_estimate_when_a_csi_table_is_first_read() {
    let scalar = |ctx: datafusion::prelude::SessionContext, sql: &'static str| async move {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok::<_, datafusion::error::DataFusionError>(
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string(),
        )
    };
    let as_of = chrono::NaiveDate::from_ymd_opt(2025, 3, 31).unwrap();
    let mut f = fixture();
    f.job_extra = CONFIGURED
        .replace("value = ['v1']", "value = ['v1', 'v2']")
        .replace("v1 = 1.0\n", "v1 = 1.0\nv2 = 1.0\n");
    let (ctx, _) = cskpi::views::open_views(&f.job(), as_of).await.unwrap();
    let customers = scalar(ctx.clone(), "SELECT count(*) AS n FROM customers").await;
    assert!(customers.is_ok(), "{customers:?}");
    let err = scalar(ctx, "SELECT csi FROM csi_index").await.unwrap_err();
    assert!(err.to_string().contains("v2"), "{err}");

    f.job_extra = CONFIGURED.into();
    let (ctx, _) = cskpi::views::open_views(&f.job(), as_of).await.unwrap();
    let index = scalar(
        ctx,
        "SELECT segment, respondents, csi FROM csi_index WHERE segment = 'all'",
    )
    .await
    .unwrap();
    let row = index.lines().nth(3).unwrap();
    let csi: f64 = row.split('|').nth(3).unwrap().trim().parse().unwrap();
    assert!((csi - 500.0 / 9.0).abs() < 1e-9, "{index}");
    assert!(row.contains("| 3 "), "{index}");
}

/// A segment PLS cannot estimate (here every segment: one iteration cannot
/// meet the tolerance) is left out of the csi tables, as a segment with too
/// few respondents is; the run still publishes every table (spec 2: every
/// KPI whose inputs are present).
#[tokio::test]
async fn a_segment_pls_cannot_estimate_is_left_out_and_the_run_publishes() {
    let mut f = fixture();
    f.job_extra = "[run]\nfrom = '2025-01'\n\
        [csi]\nmin_respondents = 3\nmax_iterations = 1\ntolerance = 1e-300\n\
        [csi.factors]\nsatisfaction = ['s1', 's2']\nvalue = ['v1']\n\
        [csi.paths]\nsatisfaction = ['value']\n"
        .into();
    let report = f.run("2025-03-31").await.unwrap();
    let rows_of = |table: &str| {
        report
            .outputs
            .iter()
            .find(|(name, _)| name == table)
            .map(|(_, rows)| *rows)
    };
    assert_eq!(rows_of("csi_index"), Some(0), "{:?}", report.outputs);
    assert_eq!(rows_of("csi_factors"), Some(0), "{:?}", report.outputs);
    assert_eq!(rows_of("csi_paths"), Some(0), "{:?}", report.outputs);
    // Jan-Mar 2025, segments all, a and b
    assert_eq!(
        rows_of("retention_monthly"),
        Some(9),
        "{:?}",
        report.outputs
    );
}

/// An item everybody answered alike (s3 = 5 for R1-R3) has no variance: PLS
/// (mode A, path scheme) gives it weight cov(s3, inner) = 0, and every
/// measure built on its correlations is undefined, so null (plspm: NA), not
/// NaN. By hand, centred: s1 = s2 = 3, -3, 0, so satisfaction = w (s1 + s2)
/// with unit variance: var(s1 + s2) = (36 + 36) / 3 = 24, w = 1 / sqrt(24);
/// score = ((7 w + 4 w) / 2 w - 1) / 9 * 100 = 50; loadings of s1 and s2
/// corr(s1, s1 + s2) = 1; the path value -> satisfaction is corr(s1 + s2,
/// v1) = 30 / sqrt(72 * 114 / 9) = 30 / sqrt(912), R² = 900 / 912. value's
/// single item: ave, alpha, rho and eig_1st 1, eig_2nd null. GoF needs
/// every loading of the multi-item blocks: null.
#[tokio::test]
async fn an_item_without_variance_gives_null_diagnostics_not_nan() {
    let mut f = fixture();
    let at = "2025-03-10 10:00";
    let mut answers = Vec::new();
    for (id, s1, s2, v1) in [
        ("R1", 10.0, 7.0, 8.0),
        ("R2", 4.0, 1.0, 3.0),
        ("R3", 7.0, 4.0, 5.0),
    ] {
        answers.extend(respondent(
            id,
            "S1",
            at,
            &[("s1", s1), ("s2", s2), ("s3", 5.0), ("v1", v1)],
        ));
    }
    write_answers(&f, &answers);
    f.job_extra = "[run]\nfrom = '2025-01'\n\
        [csi]\nscale = [1, 10]\nmin_respondents = 3\n\
        [csi.factors]\nsatisfaction = ['s1', 's2', 's3']\nvalue = ['v1']\n\
        [csi.paths]\nsatisfaction = ['value']\n"
        .into();
    f.run("2025-03-31").await.unwrap();
    let factors = f
        .rows(
            "SELECT factor, score, r_squared, ave, cronbach_alpha, dg_rho, eig_1st, eig_2nd \
             FROM csi_factors WHERE segment = 'all' ORDER BY factor",
        )
        .await;
    assert_eq!(factors.len(), 2, "{factors:?}");
    let satisfaction = &factors[0];
    assert_eq!(satisfaction[0], "satisfaction");
    assert!(close(&satisfaction[1], 50.0), "{satisfaction:?}");
    assert!(close(&satisfaction[2], 900.0 / 912.0), "{satisfaction:?}");
    assert_eq!(satisfaction[3..], ["NULL"; 5], "{satisfaction:?}");
    let value = &factors[1];
    assert_eq!(value[0], "value");
    for measure in &value[3..7] {
        assert!(close(measure, 1.0), "{value:?}");
    }
    assert_eq!(value[7], "NULL");
    let items = f
        .rows(
            "SELECT w['item'], w['weight'], l['loading'] FROM \
             (SELECT unnest(item_weights) AS w, unnest(item_loadings) AS l \
              FROM csi_factors WHERE segment = 'all' AND factor = 'satisfaction') ORDER BY 1",
        )
        .await;
    let names: Vec<&str> = items.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["s1", "s2", "s3"], "{items:?}");
    for row in &items[..2] {
        assert!(close(&row[1], 1.0 / 24f64.sqrt()), "{items:?}");
        assert!(close(&row[2], 1.0), "{items:?}");
    }
    assert!(close(&items[2][1], 0.0), "{items:?}");
    assert_eq!(items[2][2], "NULL", "{items:?}");
    let index = f
        .rows("SELECT csi, gof FROM csi_index WHERE segment = 'all'")
        .await;
    assert!(close(&index[0][0], 50.0), "{index:?}");
    assert_eq!(index[0][1], "NULL", "{index:?}");
    let paths = f
        .rows("SELECT path_coefficient FROM csi_paths WHERE segment = 'all'")
        .await;
    assert!(close(&paths[0][0], 30.0 / 912f64.sqrt()), "{paths:?}");
}

#[tokio::test]
async fn model_errors_stop_the_job_before_reading_data() {
    let mut f = fixture();
    f.job_extra = "[csi.factors]\nsatisfaction = ['s1']\nvalue = ['v1']\n\
        [csi.paths]\nsatisfaction = ['value']\nvalue = ['satisfaction']\n"
        .into();
    let text = f.job_text();
    let err = cskpi::config::JobConfig::parse(&text).unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
}

/// The plspm reference data as csi answers of 250 customers: the run's
/// item weights equal plspm's (path scheme), and the CSI is the spec's
/// formula over plspm's SAT weights and the item means.
#[tokio::test]
async fn pls_through_a_run_reproduces_plspm_weights() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/plspm-satisfaction");
    let text = std::fs::read_to_string(dir.join("satisfaction.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(|h| h.trim_matches('"').to_string())
        .collect();
    let items = &header[1..28];
    let rows: Vec<Vec<f64>> = lines
        .map(|l| {
            l.split(',')
                .skip(1)
                .take(27)
                .map(|v| v.parse().unwrap())
                .collect()
        })
        .collect();

    let mut f = Fixture::new();
    let ids: Vec<String> = (0..rows.len()).map(|i| format!("C{i:03}")).collect();
    let id_refs: Vec<&'static str> = ids.iter().map(|s| &*s.clone().leak()).collect();
    let customers: Vec<(&str, &str, Option<&str>, Option<&str>)> = id_refs
        .iter()
        .map(|id| (*id, "2024-01-01", None, Some("x")))
        .collect();
    f.customers(&customers);
    f.orders(&[]);
    f.no_tickets();
    let mut answers = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        for (c, item) in items.iter().enumerate() {
            answers.push((
                format!("R{r:03}"),
                id_refs[r],
                "2025-03-10 10:00",
                item.clone(),
                row[c],
            ));
        }
    }
    write_answers(&f, &answers);
    f.job_extra = "[run]\nfrom = '2025-01'\n\
        [csi]\nindex_factor = 'SAT'\nscale = [0, 10]\nmin_respondents = 30\n\
        [csi.factors]\n\
        IMAG = ['imag1', 'imag2', 'imag3', 'imag4', 'imag5']\n\
        EXPE = ['expe1', 'expe2', 'expe3', 'expe4', 'expe5']\n\
        QUAL = ['qual1', 'qual2', 'qual3', 'qual4', 'qual5']\n\
        VAL = ['val1', 'val2', 'val3', 'val4']\n\
        SAT = ['sat1', 'sat2', 'sat3', 'sat4']\n\
        LOY = ['loy1', 'loy2', 'loy3', 'loy4']\n\
        [csi.paths]\nEXPE = ['IMAG']\nQUAL = ['EXPE']\nVAL = ['EXPE', 'QUAL']\n\
        SAT = ['IMAG', 'EXPE', 'QUAL', 'VAL']\nLOY = ['IMAG', 'SAT']\n"
        .into();
    f.run("2025-03-31").await.unwrap();

    let got = f
        .rows(
            "SELECT w.item, w.weight FROM (SELECT unnest(item_weights) AS w FROM csi_factors \
             WHERE segment = 'all') ORDER BY 1",
        )
        .await;
    let got: HashMap<String, f64> = got
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect();
    let reference = std::fs::read_to_string(dir.join("satisfaction.outer-model-path.csv")).unwrap();
    let mut expected = HashMap::new();
    for line in reference.lines().skip(1) {
        let f: Vec<&str> = line.split(',').map(|x| x.trim_matches('"')).collect();
        expected.insert(f[0].to_string(), f[2].parse::<f64>().unwrap());
    }
    assert_eq!(got.len(), 27);
    for (item, weight) in &expected {
        assert!(
            (got[item] - weight).abs() < 1e-6,
            "{item}: {} vs {weight}",
            got[item]
        );
    }
    // CSI by the spec's formula from plspm's SAT weights and the item means.
    let (mut weighted, mut total) = (0.0, 0.0);
    for item in ["sat1", "sat2", "sat3", "sat4"] {
        let c = items.iter().position(|i| i == item).unwrap();
        let mean = rows.iter().map(|r| r[c]).sum::<f64>() / rows.len() as f64;
        weighted += expected[item] * mean;
        total += expected[item];
    }
    // The data has answers of 0, so the scale is 0-10.
    let csi = (weighted / total - 0.0) / 10.0 * 100.0;
    let index = f
        .rows("SELECT segment, respondents, csi FROM csi_index ORDER BY segment")
        .await;
    assert_eq!(index[0][0], "all");
    assert_eq!(index[0][1], "250");
    assert!(
        (index[0][2].parse::<f64>().unwrap() - csi).abs() < 1e-6,
        "{index:?} vs {csi}"
    );

    // The published diagnostics (v2): the items' own statistics are
    // satisfaction.unidim.csv's whatever the scheme; every path's total
    // effect is its coefficient plus its indirect effect.
    let unidim = std::fs::read_to_string(dir.join("satisfaction.unidim.csv")).unwrap();
    let quality = f
        .rows(
            "SELECT factor, cronbach_alpha, dg_rho, eig_1st, eig_2nd FROM csi_factors \
             WHERE segment = 'all'",
        )
        .await;
    for line in unidim.lines().skip(1) {
        let want: Vec<&str> = line.split(',').collect();
        let got = quality.iter().find(|r| r[0] == want[0]).unwrap();
        for (g, w) in got[1..].iter().zip(&want[2..]) {
            let (g, w): (f64, f64) = (g.parse().unwrap(), w.parse().unwrap());
            assert!((g - w).abs() < 1e-6, "{got:?} vs {line}");
        }
    }
    let off = f
        .rows(
            "SELECT count(*) FROM csi_paths \
             WHERE abs(total_effect - path_coefficient - indirect_effect) > 1e-12",
        )
        .await;
    assert_eq!(off[0][0], "0");
    // GoF from the published loadings (every block has several items) and
    // R² (of the five factors with drivers)
    let parts = f
        .rows(
            "SELECT (SELECT avg(l.loading * l.loading) FROM (SELECT unnest(item_loadings) AS l \
                     FROM csi_factors WHERE segment = 'all')), \
                    (SELECT avg(r_squared) FROM csi_factors WHERE segment = 'all'), \
                    (SELECT gof FROM csi_index WHERE segment = 'all')",
        )
        .await;
    let [communality, r2, gof]: [f64; 3] = std::array::from_fn(|i| parts[0][i].parse().unwrap());
    assert!(((communality * r2).sqrt() - gof).abs() < 1e-12, "{parts:?}");
}

/// Draw `d` of a group exactly as README "Bootstrap" documents it: ChaCha8
/// keyed by the seed and d (little-endian, the rest of the key zero), on
/// stream FNV-1a-64(group), n picks of `random_range(0..n)`. Written here
/// from the documentation, not with the engine's code.
fn documented_draw(seed: u64, group: &str, d: u64, n: u32) -> Vec<u32> {
    use rand::{Rng, SeedableRng};
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&d.to_le_bytes());
    let mut rng = rand_chacha::ChaCha8Rng::from_seed(key);
    rng.set_stream(group.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    }));
    let mut counts = vec![0; n as usize];
    for _ in 0..n {
        counts[rng.random_range(0..n) as usize] += 1;
    }
    counts
}

/// (standard deviation, 2.5% and 97.5% percentiles by R's type 7).
fn spread_of(mut values: Vec<f64>) -> (f64, f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    values.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let h = (n - 1.0) * p;
        let (lo, frac) = (h.floor() as usize, h - h.floor());
        values[lo] + frac * (values[(lo + 1).min(values.len() - 1)] - values[lo])
    };
    (sd, q(0.025), q(0.975))
}

/// The bootstrap of the hand fixture, worked out from the documented
/// generator: respondents R1, R2, R3 (response_id order), satisfaction
/// composite 2 s1 + s2 = 27, 9, 18 and value 8, 3, 5. A resample's csi is
/// ((2 mean s1 + mean s2) / 3 - 1) / 9 * 100 and its path the correlation
/// of the two composites over the drawn rows; a draw of one respondent three
/// times has constant blocks, fails, and the next draw is taken.
fn expected_bootstrap(seed: u64, group: &str, resamples: usize) -> [(f64, f64, f64); 2] {
    let (s1, s2, v1) = ([10.0, 4.0, 7.0], [7.0, 1.0, 4.0], [8.0, 3.0, 5.0]);
    let (mut csi, mut path, mut failures) = (vec![], vec![], 0);
    let mut d = 0;
    while csi.len() < resamples {
        let counts = documented_draw(seed, group, d, 3);
        d += 1;
        if counts.contains(&3) {
            failures += 1;
            continue;
        }
        let w: Vec<f64> = counts.iter().map(|&c| f64::from(c)).collect();
        let mean = |x: [f64; 3]| (0..3).map(|i| w[i] * x[i]).sum::<f64>() / 3.0;
        csi.push(((2.0 * mean(s1) + mean(s2)) / 3.0 - 1.0) / 9.0 * 100.0);
        let sat = [0, 1, 2].map(|i| 2.0 * s1[i] + s2[i]);
        let (ms, mv) = (mean(sat), mean(v1));
        let cov = (0..3)
            .map(|i| w[i] * (sat[i] - ms) * (v1[i] - mv))
            .sum::<f64>();
        let var = |x: [f64; 3], m: f64| (0..3).map(|i| w[i] * (x[i] - m).powi(2)).sum::<f64>();
        path.push(cov / (var(sat, ms) * var(v1, mv)).sqrt());
    }
    assert!(
        failures > 0,
        "{group}: the fixture should draw a failing resample"
    );
    [spread_of(csi), spread_of(path)]
}

/// Spec v2 4.7's bootstrap through runs: the default (200 resamples, seed
/// 1), another seed and count, and `bootstrap = 0` (every bootstrap column
/// null), each against the numbers worked out above.
#[tokio::test]
async fn bootstrap_intervals_follow_the_documented_draws() {
    let near = |got: &str, want: f64, what: &str| {
        let got: f64 = got.parse().unwrap_or_else(|_| panic!("{what}: {got:?}"));
        assert!((got - want).abs() < 1e-9, "{what}: {got} against {want}");
    };
    for (settings, seed, resamples) in [("", 1, 200), ("seed = 7\nbootstrap = 50\n", 7, 50)] {
        let mut f = fixture();
        f.job_extra = CONFIGURED.replace("[csi]\n", &format!("[csi]\n{settings}"));
        f.run("2025-03-31").await.unwrap();
        let index = f
            .rows(
                "SELECT i.segment, csi_std_error, csi_ci_low, csi_ci_high, bootstrap_resamples, \
                 bootstrap_failures, std_error, ci_low, ci_high \
                 FROM csi_index i JOIN csi_paths p USING (segment) ORDER BY i.segment",
            )
            .await;
        assert_eq!(index.len(), 2, "{index:?}");
        for row in &index {
            let [csi, path] = expected_bootstrap(seed, &row[0], resamples);
            let what = |c: &str| format!("seed {seed}, {}: {c}", row[0]);
            near(&row[1], csi.0, &what("csi_std_error"));
            near(&row[2], csi.1, &what("csi_ci_low"));
            near(&row[3], csi.2, &what("csi_ci_high"));
            assert_eq!(row[4], resamples.to_string());
            assert_ne!(row[5], "0");
            near(&row[6], path.0, &what("path std_error"));
            near(&row[7], path.1, &what("path ci_low"));
            near(&row[8], path.2, &what("path ci_high"));
        }
        // the two groups hold the same respondents but draw on their own streams
        assert_ne!(index[0][1..4], index[1][1..4]);
    }

    let mut f = fixture();
    f.job_extra = CONFIGURED.replace("[csi]\n", "[csi]\nbootstrap = 0\n");
    f.run("2025-03-31").await.unwrap();
    let nulls = f
        .rows(
            "SELECT csi_std_error, csi_ci_low, csi_ci_high, bootstrap_resamples, bootstrap_failures, \
             std_error, ci_low, ci_high FROM csi_index i JOIN csi_paths p USING (segment)",
        )
        .await;
    assert_eq!(nulls.len(), 2);
    for row in nulls {
        assert!(row.iter().all(|v| v == "NULL"), "{row:?}");
    }
}
