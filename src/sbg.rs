//! The shifted-beta-geometric (sBG) retention model (spec 4.11; Fader and
//! Hardie 2007): each customer's churn probability per period is drawn
//! from Beta(alpha, beta). Fitted by maximum likelihood over cohorts with
//! right-censoring; projections r(t), S(t) and the discounted expected
//! residual lifetime (DERL, Fader and Hardie 2010).
//!
//! Everything is a ratio of Beta functions whose arguments differ by
//! integers, so the recursions
//!   S(t) = S(t-1) * (beta + t - 1) / (alpha + beta + t - 1),
//!   P(T = t) = S(t-1) * alpha / (alpha + beta + t - 1)
//! give the likelihood and its derivatives exactly, without log-gamma.

/// One cohort's survival: `alive[0]` customers at the start, `alive[t]`
/// still active after period t (t = 1..n); those of `alive[n]` are
/// right-censored.
#[derive(Debug, Clone, PartialEq)]
pub struct Cohort {
    pub alive: Vec<u64>,
}

impl Cohort {
    fn periods(&self) -> usize {
        self.alive.len().saturating_sub(1)
    }
}

/// Fitted parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub alpha: f64,
    pub beta: f64,
    pub log_likelihood: f64,
    pub iterations: usize,
}

/// Why there is no fit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("no customer was observed for a whole period")]
    NoData,
    /// The likelihood keeps rising towards a bound: alpha or beta beyond
    /// 1e6 (spec 4.11), or below 1e-6 (cskpi: the same flat likelihood
    /// seen from the other side, e.g. when nobody churned).
    #[error("no interior maximum (alpha or beta would leave [1e-6, 1e6])")]
    NoInteriorMaximum,
    #[error("did not converge in {MAX_ITERATIONS} iterations")]
    NotConverged,
}

/// The parameters' bound: beyond it there is no interior maximum.
const LIMIT: f64 = 1e6;
pub const MAX_ITERATIONS: usize = 500;
/// The gradient's norm with respect to (ln alpha, ln beta) at convergence.
const GRADIENT_TOLERANCE: f64 = 1e-6;

/// Log-likelihood, its gradient and Hessian in (ln alpha, ln beta).
struct Local {
    ll: f64,
    gradient: [f64; 2],
    hessian: [[f64; 2]; 2],
}

/// The summed log-likelihood of the cohorts and its derivatives at
/// (alpha, beta): LL = sum_t n_t ln P(T = t) + s_n ln S(n).
fn local(cohorts: &[Cohort], alpha: f64, beta: f64) -> Local {
    // Derivatives in (alpha, beta) first; ln S and ln P are sums of logs of
    // (beta + i - 1) and (alpha + beta + i - 1), whose derivatives are
    // simple reciprocals.
    let (mut ll, mut ga, mut gb) = (0.0, 0.0, 0.0);
    let (mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0);
    for cohort in cohorts {
        // ln S(t-1) and its derivatives, carried along t.
        let (mut ls, mut lsa, mut lsb) = (0.0f64, 0.0f64, 0.0f64);
        let (mut lsaa, mut lsab, mut lsbb) = (0.0f64, 0.0f64, 0.0f64);
        for t in 1..=cohort.periods() {
            let lost = cohort.alive[t - 1].saturating_sub(cohort.alive[t]) as f64;
            let total = alpha + beta + (t - 1) as f64;
            let b = beta + (t - 1) as f64;
            if lost > 0.0 {
                // ln P(T = t) = ln S(t-1) + ln alpha - ln total
                ll += lost * (ls + alpha.ln() - total.ln());
                ga += lost * (lsa + 1.0 / alpha - 1.0 / total);
                gb += lost * (lsb - 1.0 / total);
                haa += lost * (lsaa - 1.0 / (alpha * alpha) + 1.0 / (total * total));
                hab += lost * (lsab + 1.0 / (total * total));
                hbb += lost * (lsbb + 1.0 / (total * total));
            }
            // ln S(t) = ln S(t-1) + ln b - ln total
            ls += b.ln() - total.ln();
            lsa += -1.0 / total;
            lsb += 1.0 / b - 1.0 / total;
            lsaa += 1.0 / (total * total);
            lsab += 1.0 / (total * total);
            lsbb += -1.0 / (b * b) + 1.0 / (total * total);
        }
        let censored = cohort.alive.last().copied().unwrap_or(0) as f64;
        if censored > 0.0 && cohort.periods() > 0 {
            ll += censored * ls;
            ga += censored * lsa;
            gb += censored * lsb;
            haa += censored * lsaa;
            hab += censored * lsab;
            hbb += censored * lsbb;
        }
    }
    // Chain rule to u = ln alpha, v = ln beta.
    Local {
        ll,
        gradient: [alpha * ga, beta * gb],
        hessian: [
            [alpha * alpha * haa + alpha * ga, alpha * beta * hab],
            [alpha * beta * hab, beta * beta * hbb + beta * gb],
        ],
    }
}

/// The log-likelihood at (alpha, beta).
pub fn log_likelihood(cohorts: &[Cohort], alpha: f64, beta: f64) -> f64 {
    local(cohorts, alpha, beta).ll
}

/// Maximises the log-likelihood over (ln alpha, ln beta) by Newton steps
/// (a gradient step where the Hessian is not negative definite), each
/// halved until it improves the likelihood, from alpha = beta = 1.
pub fn fit(cohorts: &[Cohort]) -> Result<Fit, FitError> {
    let observed = cohorts.iter().any(|c| c.periods() > 0 && c.alive[0] > 0);
    if !observed {
        return Err(FitError::NoData);
    }
    let (mut u, mut v) = (0.0f64, 0.0f64);
    let mut at = local(cohorts, 1.0, 1.0);
    for iteration in 0..MAX_ITERATIONS {
        let [gu, gv] = at.gradient;
        if gu.hypot(gv) < GRADIENT_TOLERANCE {
            return Ok(Fit {
                alpha: u.exp(),
                beta: v.exp(),
                log_likelihood: at.ll,
                iterations: iteration,
            });
        }
        let [[huu, huv], [_, hvv]] = at.hessian;
        let det = huu * hvv - huv * huv;
        let (mut du, mut dv) = if huu < 0.0 && det > 0.0 {
            // Newton: solve H d = -g.
            ((-gu * hvv + gv * huv) / det, (-gv * huu + gu * huv) / det)
        } else {
            (gu, gv)
        };
        // At most one unit of ln per step: a far step overshoots.
        let length = du.hypot(dv);
        if length > 1.0 {
            du /= length;
            dv /= length;
        }
        let mut step = 1.0;
        loop {
            let (nu, nv) = (u + step * du, v + step * dv);
            if nu.abs() > LIMIT.ln() || nv.abs() > LIMIT.ln() {
                if step < 1e-12 {
                    return Err(FitError::NoInteriorMaximum);
                }
                step /= 2.0;
                continue;
            }
            let next = local(cohorts, nu.exp(), nv.exp());
            if next.ll >= at.ll || step < 1e-12 {
                u = nu;
                v = nv;
                at = next;
                break;
            }
            step /= 2.0;
        }
        if u.abs() >= (LIMIT / 2.0).ln() || v.abs() >= (LIMIT / 2.0).ln() {
            return Err(FitError::NoInteriorMaximum);
        }
    }
    Err(FitError::NotConverged)
}

/// r(t) = (beta + t - 1) / (alpha + beta + t - 1), t >= 1.
pub fn retention_rate(alpha: f64, beta: f64, t: u32) -> f64 {
    let t = f64::from(t);
    (beta + t - 1.0) / (alpha + beta + t - 1.0)
}

/// S(t) for t = 1..=periods, in order.
pub fn survival(alpha: f64, beta: f64, periods: u32) -> Vec<f64> {
    let mut s = 1.0;
    (1..=periods)
        .map(|t| {
            s *= retention_rate(alpha, beta, t);
            s
        })
        .collect()
}

/// DERL(d | alpha, beta, m) = sum_{t > m} S(t) / S(m) / (1 + d)^(t - m - 1):
/// the expected discounted periods of life left for a customer alive after
/// m periods, the coming period undiscounted. `None` when the sum is
/// infinite (d = 0 with alpha <= 1) or does not converge in 10^7 terms.
pub fn derl(discount: f64, alpha: f64, beta: f64, renewals: u32) -> Option<f64> {
    derl_by_tenure(discount, alpha, beta, renewals).and_then(|all| all.last().copied())
}

/// DERL(d | alpha, beta, m) for every m = 0..=max_renewals (index m), from
/// one series: the series at max_renewals, then backwards by
/// DERL(m) = r(m + 1) * (1 + DERL(m + 1) / (1 + d)), each step a product of
/// positive terms (no cancellation), so a run prices every tenure of a
/// segment at the cost of one.
pub fn derl_by_tenure(discount: f64, alpha: f64, beta: f64, max_renewals: u32) -> Option<Vec<f64>> {
    if discount == 0.0 {
        // Gauss's theorem sums the series: (beta + m) / (alpha - 1), finite
        // only for alpha > 1 (the expected lifetime of a Beta-geometric).
        return (alpha > 1.0).then(|| {
            (0..=max_renewals)
                .map(|m| (beta + f64::from(m)) / (alpha - 1.0))
                .collect()
        });
    }
    let mut derls = vec![0.0; max_renewals as usize + 1];
    derls[max_renewals as usize] = derl_series(discount, alpha, beta, max_renewals)?;
    for m in (0..max_renewals).rev() {
        let next = derls[m as usize + 1];
        derls[m as usize] = retention_rate(alpha, beta, m + 1) * (1.0 + next / (1.0 + discount));
    }
    Some(derls)
}

/// DERL by its series: the terms shrink by r(t) / (1 + d) < 1 each and are
/// summed until one no longer changes the sum.
fn derl_series(discount: f64, alpha: f64, beta: f64, renewals: u32) -> Option<f64> {
    let mut sum = 0.0;
    let mut term = 1.0;
    for t in (renewals + 1..).take(10_000_000) {
        term *= retention_rate(alpha, beta, t);
        sum += term;
        if term < sum * 1e-17 {
            return Some(sum);
        }
        term /= 1.0 + discount;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up cohort: the likelihood's derivatives match finite
    /// differences, so Newton's steps are the likelihood's.
    #[test]
    fn derivatives_match_finite_differences() {
        let cohorts = [
            Cohort {
                alive: vec![100, 70, 55, 47],
            },
            Cohort {
                alive: vec![40, 30],
            },
        ];
        let (u, v) = (0.3f64, -0.2f64);
        let at = |u: f64, v: f64| local(&cohorts, u.exp(), v.exp());
        let h = 1e-5;
        let here = at(u, v);
        let du = (at(u + h, v).ll - at(u - h, v).ll) / (2.0 * h);
        let dv = (at(u, v + h).ll - at(u, v - h).ll) / (2.0 * h);
        assert!(
            (here.gradient[0] - du).abs() < 1e-6,
            "{} {du}",
            here.gradient[0]
        );
        assert!(
            (here.gradient[1] - dv).abs() < 1e-6,
            "{} {dv}",
            here.gradient[1]
        );
        let duu = (at(u + h, v).gradient[0] - at(u - h, v).gradient[0]) / (2.0 * h);
        let duv = (at(u, v + h).gradient[0] - at(u, v - h).gradient[0]) / (2.0 * h);
        let dvv = (at(u, v + h).gradient[1] - at(u, v - h).gradient[1]) / (2.0 * h);
        assert!((here.hessian[0][0] - duu).abs() < 1e-5);
        assert!((here.hessian[0][1] - duv).abs() < 1e-5);
        assert!((here.hessian[1][1] - dvv).abs() < 1e-5);
    }

    /// Everyone survives: the likelihood rises towards alpha / beta = 0
    /// without a maximum, so there is no fit (whichever way the search
    /// gives up).
    #[test]
    fn no_churn_has_no_fit() {
        let cohorts = [Cohort {
            alive: vec![50, 50, 50],
        }];
        let result = fit(&cohorts);
        assert!(
            matches!(
                result,
                Err(FitError::NoInteriorMaximum | FitError::NotConverged)
            ),
            "{result:?}"
        );
        assert_eq!(fit(&[Cohort { alive: vec![10] }]), Err(FitError::NoData));
    }

    #[test]
    fn survival_is_the_product_of_retention_rates() {
        // alpha = 1, beta = 1: r(t) = t / (t + 1), S(t) = 1 / (t + 1).
        let s = survival(1.0, 1.0, 4);
        for (t, s) in s.iter().enumerate() {
            assert!((s - 1.0 / (t as f64 + 2.0)).abs() < 1e-15);
        }
        // DERL(d | 1, 1, 0) = sum_t 1/(t+1) x^(t-1) with x = 1/(1+d):
        // = (-ln(1 - x) - x) / x^2.
        let d: f64 = 0.1;
        let x = 1.0 / (1.0 + d);
        let closed = (-(1.0f64 - x).ln() - x) / (x * x);
        assert!((derl(d, 1.0, 1.0, 0).unwrap() - closed).abs() < 1e-12);
    }

    /// The backward recursion gives each tenure the value of its own series.
    #[test]
    fn derl_by_tenure_matches_each_series() {
        let (alpha, beta) = (0.7, 2.3);
        for d in [0.01, 0.1] {
            let all = derl_by_tenure(d, alpha, beta, 40).unwrap();
            for (m, got) in all.iter().enumerate() {
                let series = derl_series(d, alpha, beta, m as u32).unwrap();
                assert!((got - series).abs() < 1e-10 * series, "{m}: {got} {series}");
            }
        }
    }

    /// No discount: the undiscounted expected remaining lifetime,
    /// (beta + m) / (alpha - 1), checked against a long partial sum of
    /// S(t) / S(m); infinite (None) for alpha <= 1.
    #[test]
    fn undiscounted_derl_is_the_expected_remaining_lifetime() {
        let (alpha, beta) = (3.0, 2.0);
        for m in [0u32, 3] {
            let mut sum = 0.0;
            let mut term = 1.0;
            for t in m + 1..m + 2_000_000 {
                term *= retention_rate(alpha, beta, t);
                sum += term;
            }
            let got = derl(0.0, alpha, beta, m).unwrap();
            assert!((got - sum).abs() < 1e-9, "{m}: {got} {sum}");
            assert!((got - (beta + f64::from(m)) / (alpha - 1.0)).abs() < 1e-15);
        }
        assert_eq!(derl(0.0, 0.9, 2.0, 0), None);
    }
}
