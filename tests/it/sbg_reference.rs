//! The sBG estimator (spec 4.11) against ../shared/reference/sbg-retention:
//! Fader and Hardie's two cohorts of 1,000 customers over 7 periods, the
//! fitted parameters and log-likelihood of expected.csv (to 1e-6, so the
//! paper's 3-decimal values too), every DERL of derl.csv (to 1e-8) and
//! r(t), S(t) of projection.csv.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cskpi::sbg::{Cohort, derl, fit, retention_rate, survival};

fn reference(file: &str) -> Vec<BTreeMap<String, String>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/sbg-retention")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

fn number(row: &BTreeMap<String, String>, column: &str) -> f64 {
    row[column].parse().unwrap()
}

fn cohort(segment: &str) -> Cohort {
    let alive = reference("survivors.csv")
        .iter()
        .map(|row| row[segment].parse().unwrap())
        .collect();
    Cohort { alive }
}

#[test]
fn fitted_parameters_reproduce_the_paper() {
    for row in reference("expected.csv") {
        let segment = &row["segment"];
        let fitted = fit(&[cohort(segment)]).unwrap();
        let (alpha, beta) = (number(&row, "alpha"), number(&row, "beta"));
        assert!((fitted.alpha - alpha).abs() < 1e-6, "{segment}: {fitted:?}");
        assert!((fitted.beta - beta).abs() < 1e-6, "{segment}: {fitted:?}");
        let ll = number(&row, "log_likelihood");
        assert!(
            (fitted.log_likelihood - ll).abs() < 1e-6,
            "{segment}: {fitted:?}"
        );
    }
    // The paper's published values, to its 3 decimals.
    let regular = fit(&[cohort("regular")]).unwrap();
    assert_eq!(
        (
            format!("{:.3}", regular.alpha),
            format!("{:.3}", regular.beta)
        ),
        ("0.704".into(), "1.182".into())
    );
    let high_end = fit(&[cohort("high_end")]).unwrap();
    assert_eq!(
        (
            format!("{:.3}", high_end.alpha),
            format!("{:.3}", high_end.beta)
        ),
        ("0.668".into(), "3.806".into())
    );
}

/// Two cohorts fitted together add their likelihoods: the joint fit lies
/// between the two and beats either cohort's parameters on the pair.
#[test]
fn cohorts_fitted_together_add_their_likelihoods() {
    let both = [cohort("regular"), cohort("high_end")];
    let joint = fit(&both).unwrap();
    for segment in ["regular", "high_end"] {
        let alone = fit(&[cohort(segment)]).unwrap();
        let ll = cskpi::sbg::log_likelihood(&both, alone.alpha, alone.beta);
        assert!(joint.log_likelihood > ll, "{segment}");
    }
    let separate: f64 = ["regular", "high_end"]
        .iter()
        .map(|s| fit(&[cohort(s)]).unwrap().log_likelihood)
        .sum();
    assert!(joint.log_likelihood < separate);
}

/// (alpha, beta) of expected.csv by segment.
fn expected_parameters() -> BTreeMap<String, (f64, f64)> {
    reference("expected.csv")
        .iter()
        .map(|r| {
            (
                r["segment"].clone(),
                (number(r, "alpha"), number(r, "beta")),
            )
        })
        .collect()
}

#[test]
fn derl_matches_the_closed_form() {
    let fits = expected_parameters();
    for row in reference("derl.csv") {
        let (alpha, beta) = fits[&row["segment"]];
        let renewals: u32 = row["renewals"].parse().unwrap();
        let got = derl(number(&row, "discount"), alpha, beta, renewals).unwrap();
        let expected = number(&row, "derl");
        assert!((got - expected).abs() < 1e-8, "{row:?}: {got}");
    }
}

#[test]
fn projection_matches_r_and_s() {
    let fits = expected_parameters();
    for row in reference("projection.csv") {
        let (alpha, beta) = fits[&row["segment"]];
        let t: u32 = row["period"].parse().unwrap();
        let r = retention_rate(alpha, beta, t);
        let s = survival(alpha, beta, t)[t as usize - 1];
        assert!(
            (r - number(&row, "retention_rate")).abs() < 1e-9,
            "{row:?}: {r}"
        );
        assert!((s - number(&row, "survival")).abs() < 1e-9, "{row:?}: {s}");
    }
}
