#!/usr/bin/env python3
"""The benchmark peer: cskpi's KPIs computed by DuckDB.

    python3 benches/peer_duckdb.py --job DIR/job.toml --out OUTDIR [--threads N] [--memory-limit 2GB]

Without --threads / --memory-limit DuckDB's defaults apply (every core, a
memory limit of 80% of RAM).

The yardstick cskpi's speed is compared against, so it does the same work as
`cskpi run` and is written the way an analytics engineer would write a DuckDB
job: one connection, set-based SQL (benches/peer_duckdb.sql), window
functions, GROUPING SETS, ASOF/UNPIVOT/PIVOT where they fit, and Python only
for orchestration and the PLS estimation of the CSI weights (numpy, on the
pivoted respondent matrix, a few tens of thousands of rows).

Work done, as in ../shared/kpi-spec.md: the inputs read from Parquet and cast
to the contract's types, validation at as_of (visibility, the reject rules in
the spec's order, duplicate keys with every copy rejected, unknown customers,
value rules, max_reject_ratio), every output table of spec section 5 written
as zstd Parquet under OUTDIR/<table>/ (the big ones hive-partitioned with
DuckDB's own partitioned COPY, the column kept in the files: mrr_movements
and feedback_comments by month, customer_value and customer_health by
as_of; cskpi writes the same one file per value, side by side instead of
in key=value folders, which costs the same).

Where the spec leaves a choice open the peer makes cskpi's (README "What the
spec leaves open"), so the two can be compared number for number. The one
deliberate approximation is comment tokenisation (see the feedback step in
the SQL file): cskpi segments words by Unicode UAX #29 in Rust; this splits
with regular expressions.

Prints one `peer <step> <seconds>` line per step on stdout, then
`peer total <seconds>`. Needs the `duckdb` and `numpy` Python packages.

With PEER_PROFILE_DIR=DIR every statement of the SQL file runs under
DuckDB's profiler (what EXPLAIN ANALYZE shows: each operator's time and
rows) and its tree goes to DIR/<section>-<nn>.txt; the run is then slower.
"""

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import math
import os
import re
import shutil
import sys
import tempfile
import time
import tomllib
import zlib
from pathlib import Path

import duckdb
import numpy as np

HERE = Path(__file__).resolve().parent
SQL_FILE = HERE / "peer_duckdb.sql"
FEEDBACK_SRC = HERE.parent / "src" / "feedback"

STEPS = ["validate", "retention", "mrr", "support", "surveys", "feedback",
         "csi", "value", "health", "summary", "write"]

# The input contract (spec section 1): column, logical type, required.
# Types are the SQL types every accepted Parquet type is cast to.
INPUTS = {
    "customers": dict(optional=False, key=["customer_id"], columns=[
        ("customer_id", "VARCHAR", True), ("signup_date", "DATE", True),
        ("churn_date", "DATE", False), ("segment", "VARCHAR", False)]),
    "orders": dict(optional=False, key=["order_id"], columns=[
        ("order_id", "VARCHAR", True), ("customer_id", "VARCHAR", True),
        ("order_date", "DATE", True), ("amount", "DOUBLE", True),
        ("kind", "VARCHAR", True), ("period_start", "DATE", False),
        ("period_end", "DATE", False)]),
    "tickets": dict(optional=False, key=["ticket_id"], columns=[
        ("ticket_id", "VARCHAR", True), ("customer_id", "VARCHAR", True),
        ("opened_at", "TIMESTAMP", True), ("resolved_at", "TIMESTAMP", False),
        ("contacts", "BIGINT", True), ("reopened", "BOOLEAN", False)]),
    "surveys": dict(optional=True, key=["response_id", "item"], columns=[
        ("response_id", "VARCHAR", True), ("customer_id", "VARCHAR", True),
        ("responded_at", "TIMESTAMP", True), ("survey", "VARCHAR", True),
        ("item", "VARCHAR", False), ("score", "DOUBLE", True),
        ("comment", "VARCHAR", False)]),
    "usage": dict(optional=True, key=["customer_id", "day"], columns=[
        ("customer_id", "VARCHAR", True), ("day", "DATE", True),
        ("active_users", "BIGINT", True), ("events", "BIGINT", True)]),
    "costs": dict(optional=True, key=[], columns=[
        ("month", "DATE", True), ("category", "VARCHAR", True),
        ("customer_id", "VARCHAR", False), ("amount", "DOUBLE", True)]),
}

# Output tables: (name, sort order, partition column): cskpi's, one file per partition value.
OUTPUTS = [
    ("retention_monthly", "month, segment", None),
    ("mrr_monthly", "month, segment", None),
    ("mrr_movements", "month, customer_id", "month"),
    ("support_monthly", "month, segment", None),
    ("survey_monthly", "month, segment", None),
    ("feedback_themes", "month, theme", None),
    ("feedback_comments", "month, response_id, comment", "month"),
    ("csi_factors", "period, segment, factor", None),
    ("csi_paths", "period, segment, from_factor, to_factor", None),
    ("csi_index", "period, segment", None),
    ("value_monthly", "month, segment", None),
    ("value_summary", "as_of, segment", None),
    ("customer_value", "as_of, customer_id", "as_of"),
    ("customer_health", "as_of, customer_id", "as_of"),
    ("cohort_retention", "cohort_month, segment, months_since", None),
    ("retention_model", "as_of, segment", None),
    ("retention_forecast", "as_of, segment, period", None),
    ("kpi_summary", "month, segment, kpi", None),
    ("rejects", "input, key, reason, raw_row", None),
]

HEALTH_DEFAULTS = {"usage": 0.30, "nps": 0.20, "csat": 0.15, "support": 0.15, "mrr_trend": 0.20}


class JobError(Exception):
    """A run that must stop, with the exit code cskpi would use."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def ident(name):
    return '"' + name.replace('"', '""') + '"'


def literal(value):
    """A SQL literal for a job-file value."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) + "::DOUBLE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise TypeError(value)


def add_months(month, n):
    index = month.year * 12 + month.month - 1 + n
    return dt.date(index // 12, index % 12 + 1, 1)


def month_end(month):
    return add_months(month.replace(day=1), 1) - dt.timedelta(days=1)


def parse_month(text):
    text = text.strip()
    try:
        return dt.date.fromisoformat(text + "-01")
    except ValueError:
        return dt.date.fromisoformat(text).replace(day=1)


# ---------------------------------------------------------------- job file

def load_job(path):
    with open(path, "rb") as f:
        job = tomllib.load(f)
    base = Path(path).resolve().parent
    run = job.get("run", {})
    as_of = run.get("as_of")
    if isinstance(as_of, str):
        as_of = dt.date.fromisoformat(as_of)
    if as_of is None:
        as_of = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    inputs = {}
    for name, location in job["input"].items():
        if "://" in location:
            raise JobError(4, f"input {name}: the peer reads local files only, not {location}")
        p = Path(location)
        inputs[name] = p if p.is_absolute() else base / p
    health = job.get("health", {})
    return dict(
        inputs=inputs,
        as_of=as_of,
        from_month=parse_month(run["from"]) if "from" in run else None,
        segment_by=run.get("segment_by", "segment"),
        max_reject_ratio=float(run.get("max_reject_ratio", 0.05)),
        grace_days=int(job.get("renewal", {}).get("grace_days", 30)),
        positive_min=float(job.get("csat", {}).get("positive_min", 4)),
        gross_margin=float(job.get("value", {}).get("gross_margin", 1.0)),
        max_lifetime_months=float(job.get("value", {}).get("max_lifetime_months", 120)),
        monthly_discount=float(job.get("value", {}).get("monthly_discount", 0.01)),
        min_model_customers=int(job.get("value", {}).get("min_model_customers", 100)),
        forecast_months=int(job.get("value", {}).get("forecast_months", 24)),
        # [health.weights] changes only the components it names
        health_weights={**HEALTH_DEFAULTS, **{k: float(v) for k, v in health.get("weights", {}).items()}},
        green_min=float(health.get("green_min", 70)),
        yellow_min=float(health.get("yellow_min", 40)),
        trend_days=int(health.get("trend_days", 30)),
        csi=csi_model(job["csi"]) if "csi" in job else None,
        themes=job.get("feedback", {}).get("themes"),
    )


def csi_model(csi):
    """The [csi] model as cskpi orders it: factors by name, items grouped by
    factor in that order, paths (driver, driven) sorted."""
    factors = sorted(csi.get("factors", {}))
    items, blocks = [], []
    for factor in factors:
        blocks.append(list(range(len(items), len(items) + len(csi["factors"][factor]))))
        items.extend(csi["factors"][factor])
    paths = sorted({(factors.index(driver), factors.index(driven))
                    for driven, drivers in csi.get("paths", {}).items() for driver in drivers})
    weights = csi.get("weights", "pls")
    scale = csi.get("scale", [1, 10])
    return dict(
        factors=factors, items=items, blocks=blocks, paths=paths,
        index_factor=factors.index(csi.get("index_factor", "satisfaction")),
        fixed_weights=None if weights == "pls" else [float(weights[i]) for i in items],
        scale=(float(scale[0]), float(scale[1])),
        min_respondents=int(csi.get("min_respondents", 30)),
        scheme=csi.get("scheme", "path"),
        scaled=bool(csi.get("scaled", False)),
        tolerance=float(csi.get("tolerance", 1e-6)),
        max_iterations=int(csi.get("max_iterations", 100)),
        bootstrap=int(csi.get("bootstrap", 200)),
        seed=int(csi.get("seed", 1)),
    )


# ------------------------------------------------------ word lists (4.6)

def rust_block(text, name):
    """The body of `const NAME: ... = &[ ... ];` in a Rust source."""
    m = re.search(r"const " + name + r"\b[^=]*=\s*&\[(.*?)\n\];", text, re.S)
    if not m:
        raise JobError(1, f"cannot find {name} in src/feedback")
    return m.group(1)


def feedback_phrases(themes_config):
    """(kind, theme, valence, phrase) rows: the theme keywords (the job's
    [feedback.themes] or cskpi's built-in taxonomy), the sentiment lexicon and
    the negators, read from cskpi's own sources so both use the same lists."""
    themes_rs = (FEEDBACK_SRC / "themes.rs").read_text()
    sentiment_rs = (FEEDBACK_SRC / "sentiment.rs").read_text()
    rows = []
    if themes_config:
        taxonomy = themes_config
    else:
        body = rust_block(themes_rs, "BUILT_IN")
        taxonomy = {theme: re.findall(r'"([^"]*)"', keywords)
                    for theme, keywords in re.findall(r'\(\s*"([^"]+)",\s*&\[(.*?)\],?\s*\)', body, re.S)}
    for theme, keywords in taxonomy.items():
        rows += [("theme", theme, None, k) for k in keywords]
    lexicon = re.findall(r'\("([^"]+)",\s*(-?[0-9.]+)\)', rust_block(sentiment_rs, "LEXICON"))
    rows += [("term", None, float(v), t) for t, v in lexicon]
    negators = re.findall(r'"([^"]+)"', rust_block(sentiment_rs, "NEGATORS"))
    rows += [("negator", None, None, n) for n in negators]
    factor = float(re.search(r"NEGATION_FACTOR: f64 = (-?[0-9.]+);", sentiment_rs).group(1))
    reach = int(re.search(r"NEGATION_REACH: usize = ([0-9]+);", sentiment_rs).group(1))
    if len(taxonomy) < 1 or len(lexicon) < 50 or len(negators) < 10:
        raise JobError(1, "src/feedback word lists not found (format changed?)")
    return rows, factor, reach


# ---------------------------------------------------------------- PLS (4.7)

class PlsError(Exception):
    pass


def _regress(r, target, predictors):
    """Least squares without intercept of standardised LV `target` on
    `predictors`, from their correlations `r` (the normal equations)."""
    try:
        return np.linalg.solve(r[np.ix_(predictors, predictors)], r[predictors, target])
    except np.linalg.LinAlgError:
        raise PlsError(f"the regression onto latent variable {target} is singular")


def moments(data):
    """(n, means, population covariance) of the answers."""
    means = data.mean(axis=0)
    x = data - means
    return len(data), means, x.T @ x / len(data)


def pls_estimate(n, s, blocks, paths, scheme="path", scaled=False, tol=1e-6, max_iter=100,
                 fixed_weights=None, start=None):
    """PLS path modelling, Lohmöller's algorithm as R's plspm and cskpi's
    src/csi/pls.rs run it: mode A for every block, the given inner scheme,
    centred (optionally scaled) indicators, stop when the sum of squared
    changes of the absolute outer weights is below `tol`. Every step is a
    function of the items' covariance matrix `s` (n respondents): the LV
    correlations are W'SW scaled, mode A's weights S W E. With
    `fixed_weights`, only the inner model for those weights; `start` gives
    initial weights (a bootstrap resample starts from the sample's)."""
    p = s.shape[0]
    lvs = len(blocks)
    if n < 3:
        raise PlsError(f"needs at least 3 respondents, got {n}")
    if scaled and fixed_weights is None:   # configured weights apply to raw answers
        sd = np.sqrt(np.diag(s))
        if np.any(~(sd > 0)):
            raise PlsError("an indicator has no variance")
        s = s / np.outer(sd, sd)
    preds = [sorted(f for f, t in paths if t == k) for k in range(lvs)]
    follows = [sorted(t for f, t in paths if f == k) for k in range(lvs)]
    adjacent = np.zeros((lvs, lvs), dtype=bool)
    for f, t in paths:
        adjacent[f, t] = adjacent[t, f] = True
    mask = np.zeros((p, lvs))
    for j, block in enumerate(blocks):
        mask[block, j] = 1.0

    def standardised(w):
        sd = np.sqrt(np.einsum("ij,ik,kj->j", w, s, w))
        if np.any(~(sd > 0)):
            raise PlsError("a latent variable has no variance")
        return w / sd

    if fixed_weights is not None:
        w = standardised(mask * np.asarray(fixed_weights, dtype=float)[:, None])
        iterations = 1
    else:
        w = standardised(mask * (1.0 if start is None else np.asarray(start)[:, None]))
        previous = (w * mask).sum(axis=1)
        iterations = 0
        while True:
            iterations += 1
            y = standardised(w)
            sy = s @ y
            r = y.T @ sy
            e = np.zeros((lvs, lvs))
            if scheme == "path":
                for k in range(lvs):
                    if preds[k]:
                        e[preds[k], k] = _regress(r, k, preds[k])
                    for f in follows[k]:
                        e[f, k] = r[k, f]
            else:
                e = np.where(adjacent, np.sign(r) if scheme == "centroid" else r, 0.0)
            # mode A: covariances of each block's indicators with its inner estimate
            w = (sy @ e) * mask
            current = w.sum(axis=1)
            change = float(np.sum((np.abs(previous) - np.abs(current)) ** 2))
            if change < tol:
                break
            if iterations >= max_iter:
                raise PlsError(f"did not converge in {iterations} iterations")
            previous = current
        w = standardised(w)

    sw = s @ w
    r = w.T @ sw
    weights = (w * mask).sum(axis=1)
    loadings = (sw * mask).sum(axis=1) / np.sqrt(np.diag(s))
    coefficients, r_squared = {}, [None] * lvs
    for k in range(lvs):
        if not preds[k]:
            continue
        beta = _regress(r, k, preds[k])
        r_squared[k] = float(beta @ r[preds[k], k])
        coefficients.update({(f, k): b for f, b in zip(preds[k], beta)})
    if fixed_weights is not None:
        weights = np.asarray(fixed_weights, dtype=float)   # reported as configured
    return dict(weights=weights, loadings=loadings, r_squared=r_squared, iterations=iterations,
                paths=[(f, t, float(coefficients[(f, t)])) for f, t in paths])


def estimate_model(model, n, s, start=None):
    return pls_estimate(n, s, model["blocks"], model["paths"], model["scheme"], model["scaled"],
                        model["tolerance"], model["max_iterations"], model["fixed_weights"], start)


def factor_scores(model, means, s, fit):
    """Spec 4.7: (sum w_i mean_i / sum w_i - min) / (max - min) * 100 over a
    factor's items, means of the raw answers (weights estimated on scaled
    items turned back into weights of raw answers first)."""
    lo, hi = model["scale"]
    w = fit["weights"].copy()
    if model["scaled"] and model["fixed_weights"] is None:
        w = w / np.sqrt(np.diag(s))
    scores = []
    for block in model["blocks"]:
        total = w[block].sum()
        scores.append(None if total == 0 else
                      float((np.dot(w[block], means[block]) / total - lo) / (hi - lo) * 100))
    return scores


def bootstrap(model, data, group, fit, threads):
    """Spec v2 4.7: `bootstrap` resamples of the respondents with
    replacement, draw d from numpy's PCG64 seeded with (seed, crc32 of the
    group, d) (not cskpi's generator, so the numbers agree in scale, not
    exactly), each estimated like the sample from its weighted covariances,
    warm-started from the sample's weights, on `threads` threads (numpy's
    array work releases the GIL); the first `bootstrap` draws that estimate
    are used, failures counted, and after 2 x bootstrap failures the
    intervals are None. Returns (per path and then csi: (std error, 2.5%,
    97.5%) or None, resamples, failures), or None when off."""
    wanted = model["bootstrap"]
    if wanted == 0:
        return None
    n = len(data)
    means = data.mean(axis=0)
    x = data - means
    xt = np.ascontiguousarray(x.T)
    stream = zlib.crc32(group.encode())

    def draw(d):
        rng = np.random.default_rng([model["seed"], stream, d])
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        # in slices of 8192 respondents, so that the weighted copy stays in
        # cache (42 -> 21 ms per resample of 478k x 16, measured)
        sums, products = np.zeros(len(xt)), np.zeros((len(xt), len(xt)))
        for start in range(0, n, 8192):
            weighted = xt[:, start:start + 8192] * counts[start:start + 8192]
            sums += weighted.sum(axis=1)
            products += weighted @ x[start:start + 8192]
        shift = sums / n
        products /= n
        s = products - np.outer(shift, shift)
        constant = np.diag(s) <= 1e-12 * np.diag(products)
        s[constant, :] = 0.0
        s[:, constant] = 0.0
        try:
            f = estimate_model(model, n, s, start=fit["weights"])
        except PlsError:
            return None
        csi = factor_scores(model, means + shift, s, f)[model["index_factor"]]
        return [c for _, _, c in f["paths"]] + [np.nan if csi is None else csi]

    values, failures, next_draw = [], 0, 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        while len(values) < wanted:
            batch = wanted - len(values)
            for result in pool.map(draw, range(next_draw, next_draw + batch)):
                if len(values) == wanted:
                    break
                if result is not None:
                    values.append(result)
                    continue
                failures += 1
                if failures >= 2 * wanted:
                    return [None] * (len(fit["paths"]) + 1), len(values), failures
            next_draw += batch
    values = np.asarray(values)
    spreads = []
    for column in values.T:
        if not np.all(np.isfinite(column)):
            spreads.append(None)
            continue
        low, high = np.percentile(column, [2.5, 97.5])
        spreads.append((float(column.std(ddof=1)) if len(column) > 1 else None, float(low), float(high)))
    return spreads, len(values), failures


# ---------------------------------------------------------------- retention model (4.11)

def sbg_fit(cohorts):
    """Maximum likelihood of the shifted-beta-geometric model over cohorts
    (`alive[0]` customers, `alive[t]` still active after period t, the last
    right-censored), by Newton steps on (ln alpha, ln beta) with exact
    derivatives: ln S(t) = sum_i ln((b+i-1)/(a+b+i-1)) and
    ln P(T=t) = ln S(t-1) + ln a - ln(a+b+t-1) differentiate term by term.
    Returns (alpha, beta, log-likelihood) or None when the maximum is not
    inside [1e-6, 1e6] or 500 steps do not reach a gradient below 1e-6."""
    def at(u, v):
        a, b = math.exp(u), math.exp(v)
        ll = 0.0
        g = np.zeros(2)      # d/da, d/db
        h = np.zeros((2, 2))  # second derivatives in (a, b)
        for alive in cohorts:
            ls, sa, sb = 0.0, 0.0, 0.0          # ln S(t-1) and its derivatives
            haa, hab, hbb = 0.0, 0.0, 0.0
            for t in range(1, len(alive)):
                lost = alive[t - 1] - alive[t]
                d = a + b + t - 1
                if lost:
                    ll += lost * (ls + math.log(a) - math.log(d))
                    g += lost * np.array([sa + 1 / a - 1 / d, sb - 1 / d])
                    h += lost * np.array([[haa - 1 / a ** 2 + 1 / d ** 2, hab + 1 / d ** 2],
                                          [hab + 1 / d ** 2, hbb + 1 / d ** 2]])
                ls += math.log(b + t - 1) - math.log(d)
                sa -= 1 / d
                sb += 1 / (b + t - 1) - 1 / d
                haa += 1 / d ** 2
                hab += 1 / d ** 2
                hbb += 1 / d ** 2 - 1 / (b + t - 1) ** 2
            survivors = alive[-1]
            ll += survivors * ls
            g += survivors * np.array([sa, sb])
            h += survivors * np.array([[haa, hab], [hab, hbb]])
        # to (u, v) = (ln a, ln b)
        gu = np.array([a * g[0], b * g[1]])
        hu = np.array([[a * a * h[0, 0] + a * g[0], a * b * h[0, 1]],
                       [a * b * h[0, 1], b * b * h[1, 1] + b * g[1]]])
        return ll, gu, hu

    if not any(len(alive) > 1 for alive in cohorts):
        return None
    u, v = 0.0, 0.0
    ll, g, h = at(u, v)
    for _ in range(500):
        if np.hypot(*g) < 1e-6:
            return math.exp(u), math.exp(v), ll
        try:
            step = -np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            step = g
        if step @ g <= 0:  # not an ascent direction: follow the gradient
            step = g / max(1.0, np.hypot(*g))
        for _ in range(60):
            nu, nv = u + step[0], v + step[1]
            if max(abs(nu), abs(nv)) <= math.log(1e6):
                nll, ng, nh = at(nu, nv)
                # near the top the likelihood's change drops below its
                # float resolution: a smaller gradient is progress then
                if nll > ll or (nll >= ll - 1e-12 * abs(ll) and np.hypot(*ng) < np.hypot(*g)):
                    break
            step = step / 2
        else:
            return None
        u, v, ll, g, h = nu, nv, nll, ng, nh
        # still rising halfway to a bound: no maximum inside [1e-6, 1e6]
        if max(abs(u), abs(v)) >= math.log(5e5):
            return None
    return None


def sbg_derl(d, a, b, m):
    """DERL(d | a, b, m) by its defining sum (closed form for d = 0)."""
    if d == 0:
        return (b + m) / (a - 1) if a > 1 else None
    total, term, t = 0.0, 1.0, m + 1
    while t < m + 10_000_000:
        term *= (b + t - 1) / (a + b + t - 1)
        total += term
        if term < total * 1e-17:
            return total
        term /= 1 + d
        t += 1
    return None


def run_retention_model(con, job):
    """retention_model, retention_forecast and retention_derl (the DERL per
    segment and tenure that customer_value reads) from cohort_retention."""
    rows = con.execute("""SELECT segment, cohort_month, cohort_customers, active_customers
                          FROM cohort_retention ORDER BY segment, cohort_month, months_since""").fetchall()
    by_segment = {}
    for segment, cohort, customers, active in rows:
        alive = by_segment.setdefault(segment, {}).setdefault(cohort, [customers])
        alive.append(active)
    earliest = con.execute("SELECT min(signup_date) FROM customers").fetchone()[0]
    last = con.execute("SELECT getvariable('last_complete_month')").fetchone()[0]
    max_tenure = 0 if earliest is None else max(
        0, (last.year - earliest.year) * 12 + last.month - earliest.month + 1)
    as_of = job["as_of"]
    model, forecast, derl = [], [], []
    for segment in sorted(by_segment):
        cohorts = [alive for alive in by_segment[segment].values() if alive[0] > 0]
        customers = sum(alive[0] for alive in cohorts)
        fit = sbg_fit(cohorts) if customers >= job["min_model_customers"] else None
        survival = []
        if fit:
            a, b, ll = fit
            s = 1.0
            for t in range(1, max(12, job["forecast_months"]) + 1):
                s *= (b + t - 1) / (a + b + t - 1)
                survival.append(s)
            for m in range(max_tenure + 1):
                derl.append((segment, m, sbg_derl(job["monthly_discount"], a, b, m)))
        model.append((as_of, segment, customers, len(cohorts),
                      *(fit if fit else (None, None, None)), survival[11] if fit else None))
        for t in range(1, job["forecast_months"] + 1):
            forecast.append((as_of, segment, t,
                             (fit[1] + t - 1) / (fit[0] + fit[1] + t - 1) if fit else None,
                             survival[t - 1] if fit else None))
    con.execute("""CREATE OR REPLACE TEMP TABLE retention_model (as_of DATE, segment VARCHAR,
                   customers BIGINT, cohorts BIGINT, alpha DOUBLE, beta DOUBLE, log_likelihood DOUBLE,
                   expected_retention_12m DOUBLE)""")
    con.execute("""CREATE OR REPLACE TEMP TABLE retention_forecast (as_of DATE, segment VARCHAR,
                   period BIGINT, retention_rate DOUBLE, survival DOUBLE)""")
    con.execute("""CREATE OR REPLACE TEMP TABLE retention_derl (segment VARCHAR, tenure_months BIGINT,
                   derl_months DOUBLE)""")
    for table, values in [("retention_model", model), ("retention_forecast", forecast),
                          ("retention_derl", derl)]:
        if values:
            marks = ", ".join("?" * len(values[0]))
            con.executemany(f"INSERT INTO {table} VALUES ({marks})", values)



def block_quality(data, block, loadings):
    """ave, Cronbach's alpha, Dillon-Goldstein's rho (on the first principal
    component's loadings), the two largest eigenvalues of the items'
    correlations: plspm's measurement diagnostics."""
    ave = float(np.mean(np.asarray(loadings)[block] ** 2))
    if len(block) == 1:
        return ave, 1.0, 1.0, 1.0, None
    r = np.corrcoef(data[:, block], rowvar=False)
    p = len(block)
    alpha = p / (p - 1) * (1 - p / r.sum())
    values, vectors = np.linalg.eigh(r)
    order = np.argsort(values)[::-1]
    pc = vectors[:, order[0]] * np.sqrt(values[order[0]])
    rho = pc.sum() ** 2 / (pc.sum() ** 2 + np.sum(1 - pc ** 2))
    return ave, float(alpha), float(rho), float(values[order[0]]), float(values[order[1]])


def total_effects(lvs, paths):
    """(I - B)^-1 - I: every chain of paths, B[to, from] = the coefficient."""
    b = np.zeros((lvs, lvs))
    for f, t, c in paths:
        b[t, f] = c
    return np.linalg.inv(np.eye(lvs) - b) - np.eye(lvs)


def goodness_of_fit(blocks, fit):
    communality = [fit["loadings"][c] ** 2 for block in blocks if len(block) > 1 for c in block]
    r2 = [r for r in fit["r_squared"] if r is not None]
    if not communality or not r2:
        return None
    return float(np.sqrt(np.mean(communality) * np.mean(r2)))


def run_csi(con, model, period, threads):
    """Pivots the csi answers to one row per respondent, estimates `all` and
    every segment with enough complete respondents, and registers
    csi_factors, csi_paths and csi_index (empty without a [csi] model)."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE csi_factors (period DATE, segment VARCHAR, factor VARCHAR,
            respondents BIGINT, score DOUBLE, item_weights STRUCT(item VARCHAR, weight DOUBLE)[],
            item_loadings STRUCT(item VARCHAR, loading DOUBLE)[], r_squared DOUBLE,
            ave DOUBLE, cronbach_alpha DOUBLE, dg_rho DOUBLE, eig_1st DOUBLE, eig_2nd DOUBLE);
        CREATE OR REPLACE TEMP TABLE csi_paths (period DATE, segment VARCHAR, from_factor VARCHAR,
            to_factor VARCHAR, path_coefficient DOUBLE, indirect_effect DOUBLE, total_effect DOUBLE,
            std_error DOUBLE, ci_low DOUBLE, ci_high DOUBLE);
        CREATE OR REPLACE TEMP TABLE csi_index (period DATE, segment VARCHAR, respondents BIGINT,
            csi DOUBLE, incomplete_respondents BIGINT, weights VARCHAR, iterations BIGINT, gof DOUBLE,
            csi_std_error DOUBLE, csi_ci_low DOUBLE, csi_ci_high DOUBLE, bootstrap_resamples BIGINT,
            bootstrap_failures BIGINT);
    """)
    if model is None:
        return
    factors, items = model["factors"], model["items"]
    # A configured item nobody answered is most likely a typo in the job file.
    seen = {r[0] for r in con.execute(
        "SELECT DISTINCT item FROM surveys WHERE survey = 'csi' "
        "AND responded_at >= CAST(getvariable('first_month') AS TIMESTAMP)").fetchall()}
    missing = [i for i in items if i not in seen]
    if seen and missing:
        raise JobError(3, f"csi: configured item(s) {', '.join(missing)} never answered")

    columns = ", ".join(f"p.{ident(i)}" for i in items)
    pivoted = con.execute(f"""
        SELECT coalesce(s.segment, 'unknown') AS segment, {columns}
        FROM (PIVOT csi_answers ON item IN ({", ".join(literal(i) for i in items)})
              USING first(score) GROUP BY response_id, customer_key) p
        LEFT JOIN customer_segments s ON s.customer_key = p.customer_key
        ORDER BY p.response_id, p.customer_key
    """).fetchnumpy()
    segments = np.asarray(pivoted["segment"], dtype=object)
    matrix = np.column_stack([np.ma.filled(np.ma.asarray(pivoted[i], dtype=float), np.nan)
                              for i in items]) if len(segments) else np.empty((0, len(items)))
    complete = ~np.isnan(matrix).any(axis=1)

    method = "configured" if model["fixed_weights"] is not None else "pls"
    factor_rows, path_rows, index_rows = [], [], []
    for segment in sorted({"all", *segments.tolist()}) if len(segments) else []:
        in_group = np.ones(len(segments), bool) if segment == "all" else segments == segment
        data = matrix[in_group & complete]
        incomplete = int((in_group & ~complete).sum())
        if len(data) < model["min_respondents"]:
            continue
        n, means, s = moments(data)
        try:
            fit = estimate_model(model, n, s)
        except PlsError as e:
            raise JobError(1, f"csi: segment {segment!r} ({len(data)} respondents): {e}")
        scores = factor_scores(model, means, s, fit)
        boot = bootstrap(model, data, segment, fit, threads)
        spreads = boot[0] if boot else [None] * (len(fit["paths"]) + 1)
        spreads = [spread or (None, None, None) for spread in spreads]
        quality = [block_quality(data, block, fit["loadings"]) for block in model["blocks"]]
        total = total_effects(len(factors), fit["paths"])
        for j, factor in enumerate(factors):
            block = model["blocks"][j]
            factor_rows.append((period, segment, factor, len(data), scores[j],
                                [{"item": items[c], "weight": float(fit["weights"][c])} for c in block],
                                [{"item": items[c], "loading": float(fit["loadings"][c])} for c in block],
                                None if fit["r_squared"][j] is None else float(fit["r_squared"][j]),
                                *quality[j]))
        path_rows += [(period, segment, factors[f], factors[t], c, float(total[t, f] - c), float(total[t, f]),
                       *spreads[i])
                      for i, (f, t, c) in enumerate(fit["paths"])]
        index_rows.append((period, segment, len(data), scores[model["index_factor"]], incomplete,
                           method, fit["iterations"], goodness_of_fit(model["blocks"], fit),
                           *spreads[-1], *(boot[1:] if boot else (None, None))))
    for table, rows in [("csi_factors", factor_rows), ("csi_paths", path_rows), ("csi_index", index_rows)]:
        if rows:
            con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)


# ------------------------------------------------------------------- driver

def sql_sections():
    """The SQL file's `-- @step NAME` sections."""
    sections, name = {}, None
    for line in SQL_FILE.read_text().splitlines(keepends=True):
        m = re.match(r"-- @step (\w+)", line)
        if m:
            name = m.group(1)
            sections[name] = ""
        elif name:
            sections[name] += line
    return sections


def run_section(con, section, sql):
    """Runs a section of the SQL file; with PEER_PROFILE_DIR, statement by
    statement under DuckDB's profiler, one query tree file each."""
    profile_dir = os.environ.get("PEER_PROFILE_DIR")
    if not profile_dir:
        con.execute(sql)
        return
    Path(profile_dir).mkdir(parents=True, exist_ok=True)
    con.execute("SET enable_profiling = 'query_tree'")
    try:
        for n, statement in enumerate(con.extract_statements(sql)):
            target = Path(profile_dir) / f"{section}-{n:02d}.txt"
            con.execute(f"SET profiling_output = {literal(str(target))}")
            con.execute(statement)
    finally:
        con.execute("SET enable_profiling = 'no_output'")
        con.execute("RESET profiling_output")


def input_relation(location):
    """read_parquet over a file or a directory (every *.parquet below it,
    hive key=value/ folders allowed)."""
    if location.is_dir():
        pattern = str(location / "**" / "*.parquet")
        return f"read_parquet({literal(pattern)}, hive_partitioning = true, union_by_name = true)"
    if not location.exists():
        raise JobError(4, f"input: cannot open {location}: no such file or directory")
    return f"read_parquet({literal(str(location))})"


def register_inputs(con, job):
    """`<t>_typed` per input: each contract column cast to its logical type
    (timestamps to UTC wall-clock TIMESTAMP, integer ids to text, decimals to
    DOUBLE), missing nullable columns as NULL, extra columns kept. An absent
    optional input is an empty table. Returns each input's column list."""
    columns_of = {}
    for name, spec in INPUTS.items():
        location = job["inputs"].get(name)
        if location is None:
            if not spec["optional"]:
                raise JobError(3, f"job file: input {name} is required")
            cols = ", ".join(f"CAST(NULL AS {t}) AS {ident(c)}" for c, t, _ in spec["columns"])
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name}_typed AS SELECT {cols} LIMIT 0")
            columns_of[name] = [c for c, _, _ in spec["columns"]]
            continue
        relation = input_relation(location)
        present = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
        required = [c for c, _, req in spec["columns"] if req]
        if name == "customers":
            required.append(job["segment_by"])
        for c in required:
            if c not in present:
                raise JobError(4, f"input {name}: file {location} has no column {c}")
        select = [f"CAST({ident(c)} AS {t}) AS {ident(c)}" if c in present
                  else f"CAST(NULL AS {t}) AS {ident(c)}" for c, t, _ in spec["columns"]]
        contract = {c for c, _, _ in spec["columns"]}
        select += [ident(c) for c in present if c not in contract]
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name}_typed AS SELECT {', '.join(select)} FROM {relation}")
        columns_of[name] = [c for c, _, _ in spec["columns"]] + [c for c in present if c not in contract]
    return columns_of


def set_variables(con, values):
    for name, value in values.items():
        con.execute(f"SET VARIABLE {name} = {literal(value)}")


def usage_key_repeats(con, as_of):
    """The hashes of usage keys (customer_id, day) seen more than once, up to
    as_of. Copies of a key share its day, so the hashes are grouped a month
    of days at a time: each grouping's table is a month's keys, not the
    whole input's (74.7 M keys at 1M customers: 12.0 s in one grouping,
    9.6 s by month; benches/README.md)."""
    con.execute("CREATE OR REPLACE TEMP TABLE usage_key_repeats (key_hash UBIGINT)")
    first = con.execute("SELECT min(day) FROM usage_typed WHERE customer_id IS NOT NULL AND day <= ?",
                        [as_of]).fetchone()[0]
    month = first.replace(day=1) if first else None
    while month is not None and month <= as_of:
        following = add_months(month, 1)
        con.execute("""INSERT INTO usage_key_repeats
            SELECT hash(customer_id, day) FROM usage_typed
            WHERE customer_id IS NOT NULL AND day >= ? AND day < ? AND day <= ?
            GROUP BY ALL HAVING count(*) > 1""", [month, following, as_of])
        month = following


def validate(con, job, sections, columns_of):
    as_of = job["as_of"]
    as_of_month = as_of.replace(day=1)
    previous_as_of = as_of - dt.timedelta(days=job["trend_days"])
    set_variables(con, dict(
        as_of=as_of,
        as_of_end=dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time()),
        as_of_month=as_of_month,
        as_of_next_month=add_months(as_of_month, 1),
        trailing_first_month=add_months(as_of_month, -11),
        # the last month whose last day is <= as_of
        last_complete_month=(as_of_month if month_end(as_of) == as_of else add_months(as_of_month, -1)),
        health_mrr_base_day=month_end(add_months(as_of_month, -3)),
        health_previous_as_of=previous_as_of,
        health_previous_mrr_base_day=month_end(add_months(previous_as_of.replace(day=1), -3)),
        grace_days=job["grace_days"],
        csat_positive_min=job["positive_min"],
        csi_scale_min=job["csi"]["scale"][0] if job["csi"] else 1.0,
        csi_scale_max=job["csi"]["scale"][1] if job["csi"] else 10.0,
        gross_margin=job["gross_margin"],
        max_lifetime_months=job["max_lifetime_months"],
        green_min=job["green_min"],
        yellow_min=job["yellow_min"],
        **{f"w_{k}": v for k, v in job["health_weights"].items()},
    ))
    usage_key_repeats(con, as_of)
    run_section(con, "validate", sections["validate"])

    rejects = []
    for name, columns in columns_of.items():
        raw = ", ".join(f"{ident(c)} := {ident(c)}" for c in columns)
        rejects.append(f"SELECT '{name}' AS input, reject_key AS key, reject_reason AS reason, "
                       f"CAST(to_json(struct_pack({raw})) AS VARCHAR) AS raw_row "
                       f"FROM {name}_checked WHERE reject_reason IS NOT NULL")
    con.execute("CREATE OR REPLACE TEMP TABLE rejects AS " + " UNION ALL ".join(rejects))

    # The reject ratio is over visible rows; over the limit the run fails.
    counts = con.execute(" UNION ALL ".join(
        f"SELECT '{name}', count(*), count(reject_reason) FROM {name}_checked" for name in INPUTS)).fetchall()
    for name, visible, rejected in counts:
        if visible and rejected / visible > job["max_reject_ratio"]:
            raise JobError(5, f"input {name}: {rejected} of {visible} visible rows rejected, "
                              f"over run.max_reject_ratio {job['max_reject_ratio']}")

    # The reported months: run.from (or the earliest visible signup's month) .. as_of's month.
    earliest = con.execute("SELECT min(signup_date) FROM customers").fetchone()[0]
    first_month = job["from_month"] or (earliest or as_of).replace(day=1)
    first_month = min(first_month, as_of_month)
    set_variables(con, dict(first_month=first_month))
    for table, start in [("kpi_months", first_month), ("trailing_months", add_months(as_of_month, -11))]:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE {table} AS
            SELECT CAST(unnest(generate_series({literal(start)}, {literal(as_of_month)}, INTERVAL 1 MONTH))
                        AS DATE) AS month""")
    run_section(con, "dimensions", sections["dimensions"].replace("${segment_by}", ident(job["segment_by"])))
    return first_month


def write_outputs(con, out):
    for table, order_by, partition in OUTPUTS:
        target = out / table
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        query = f"SELECT * FROM {table} ORDER BY {order_by}"
        # An empty partitioned table gets one empty file, so it can still be read.
        if partition and con.execute(f"SELECT count(*) FROM (FROM {table} LIMIT 1)").fetchone()[0]:
            con.execute(f"COPY ({query}) TO {literal(str(target))} (FORMAT parquet, COMPRESSION zstd, "
                        f"PARTITION_BY ({partition}), WRITE_PARTITION_COLUMNS true, OVERWRITE)")
        else:
            con.execute(f"COPY ({query}) TO {literal(str(target / 'part-0.parquet'))} "
                        f"(FORMAT parquet, COMPRESSION zstd)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    # Unset: DuckDB's own defaults (every core; memory_limit 80% of RAM).
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--memory-limit", default=None)
    args = parser.parse_args()

    started = time.perf_counter()
    timings = {}

    @contextlib.contextmanager
    def step(name):
        t0 = time.perf_counter()
        yield
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        print(f"peer {name} {timings[name]:.3f}", flush=True)

    try:
        job = load_job(args.job)
        sections = sql_sections()
        spill = Path(tempfile.mkdtemp(prefix="peer-duckdb-"))
        con = duckdb.connect()
        if args.threads is not None:
            con.execute(f"SET threads = {args.threads}")
        if args.memory_limit is not None:
            con.execute(f"SET memory_limit = {literal(args.memory_limit)}")
        con.execute(f"SET temp_directory = {literal(str(spill))}")
        # Timestamps are read as UTC wall-clock time, as the spec says.
        con.execute("SET TimeZone = 'UTC'")
        # Every output is written with an explicit ORDER BY, so intermediate
        # tables need not keep their rows in input order (DuckDB's documented
        # setting for such jobs: less memory, freer parallelism).
        con.execute("SET preserve_insertion_order = false")
        try:
            with step("validate"):
                columns_of = register_inputs(con, job)
                validate(con, job, sections, columns_of)
            for name in ["retention", "mrr", "cohorts", "support", "surveys"]:
                with step(name):
                    run_section(con, name, sections[name])
                    if name == "cohorts":
                        run_retention_model(con, job)
            with step("feedback"):
                rows, factor, reach = feedback_phrases(job["themes"])
                values = ", ".join(f"({literal(k)}, {literal(t)}::VARCHAR, {literal(v)}::DOUBLE, {literal(p)})"
                                   for k, t, v, p in rows)
                con.execute("CREATE OR REPLACE TEMP TABLE feedback_phrases AS "
                            f"FROM (VALUES {values}) AS t(kind, theme, valence, phrase)")
                set_variables(con, dict(negation_factor=factor, negation_reach=reach))
                run_section(con, "feedback", sections["feedback"])
            with step("csi"):
                if job["csi"]:
                    set_variables(con, dict(csi_items=job["csi"]["items"]))
                    run_section(con, "csi", sections["csi"])
                run_csi(con, job["csi"], job["as_of"].replace(day=1), args.threads or os.cpu_count())
            for name in ["value", "health", "summary"]:
                with step(name):
                    run_section(con, name, sections[name])
            with step("write"):
                write_outputs(con, args.out)
        finally:
            shutil.rmtree(spill, ignore_errors=True)
    except JobError as e:
        print(f"peer: error: {e}", file=sys.stderr)
        sys.exit(e.code)
    print(f"peer total {time.perf_counter() - started:.3f}", flush=True)


if __name__ == "__main__":
    main()
