#!/usr/bin/env python3
"""Compares cskpi's output tables with the DuckDB peer's.

    python3 benches/compare_outputs.py CSKPI_OUT PEER_OUT

Both are output directories with one directory per table (files side by
side, as cskpi writes them, or in hive folders, as the peer does; the
partition column is inside the files either way). Each check
joins the two tables on their key and counts rows missing on either side
and values that differ: counts, names and labels must be equal, money and
rates equal within 1e-9 relative (|a - b| <= 1e-9 * max(|a|, |b|), or
both within 1e-12 of each other, so that 0 and -0.0 agree).

Checks marked `report` (comment themes and sentiment, which the peer
tokenises approximately, the CSI estimates, whose floating sums differ in
the last bits, and the CSI bootstrap, drawn by another generator) print
their differences but do not fail. Exits 1 when an exact check fails.
"""

import collections
import datetime
import json
import re
import sys

import duckdb

REL_TOL = 1e-9
ABS_TOL = 1e-12
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def instant(value):
    """A JSON timestamp as its UTC instant ('YYYY-MM-DD HH:MM:SS[.ffffff]'),
    whatever its style: 'T' or ' ', a zone (cskpi shows a zoned timestamp
    in its zone, 'Z' for UTC) or none (the peer's, in UTC)."""
    if not isinstance(value, str) or not TIMESTAMP.match(value):
        return value
    parsed = datetime.datetime.fromisoformat(re.sub(r"(Z|[+-]00(:?00)?)$", "+00:00", value))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return parsed.isoformat(sep=" ")


def table(directory, name):
    return f"read_parquet('{directory}/{name}/**/*.parquet', hive_partitioning = false)"


class Comparison:
    def __init__(self, cskpi, peer):
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.cskpi, self.peer = cskpi, peer
        self.rows = []
        self.failed = False

    def check(self, name, table_name, keys, exact=(), close=(), report=False, where="true",
              cskpi_sql=None, peer_sql=None, rounded=()):
        """Joins cskpi's and the peer's rows of a table on `keys`; counts
        rows present on one side only and, per column, the rows that
        differ (`exact`: equality, `close`: 1e-9 relative, `rounded`:
        values both engines round to 9 decimals, within one unit of that
        rounding, since operands a bit apart can round to neighbours)."""
        a = cskpi_sql or f"SELECT * FROM {table(self.cskpi, table_name)} WHERE {where}"
        b = peer_sql or f"SELECT * FROM {table(self.peer, table_name)} WHERE {where}"
        on = " AND ".join(f"a.{k} IS NOT DISTINCT FROM b.{k}" for k in keys)
        parts = [
            "count(*) AS rows",
            "count(*) FILTER (a._present IS NULL) AS only_peer",
            "count(*) FILTER (b._present IS NULL) AS only_cskpi",
        ]
        for c in exact:
            parts.append(f"count(*) FILTER (a._present AND b._present AND a.{c} IS DISTINCT FROM b.{c})")
        for c in close:
            diff = f"abs(a.{c} - b.{c})"
            scale = f"greatest(abs(a.{c}), abs(b.{c}))"
            parts.append(f"count(*) FILTER (a._present AND b._present AND ((a.{c} IS NULL) <> (b.{c} IS NULL) "
                         f"OR ({diff} > {REL_TOL} * {scale} AND {diff} > {ABS_TOL})))")
            parts.append(f"max(CASE WHEN {scale} > 0 THEN {diff} / {scale} END) FILTER (a._present AND b._present)")
        for c in rounded:
            parts.append(f"count(*) FILTER (a._present AND b._present AND ((a.{c} IS NULL) <> (b.{c} IS NULL) "
                         f"OR abs(a.{c} - b.{c}) > 1.001e-9))")
        result = self.con.execute(f"""
            SELECT {", ".join(parts)}
            FROM (SELECT *, true AS _present FROM ({a})) a
            FULL JOIN (SELECT *, true AS _present FROM ({b})) b ON {on}
        """).fetchone()
        rows, only_peer, only_cskpi = result[:3]
        values = list(result[3:])
        diffs = {}
        for c in exact:
            n = values.pop(0)
            if n:
                diffs[c] = n
        worst = 0.0
        for c in close:
            n, rel = values.pop(0), values.pop(0)
            worst = max(worst, rel or 0.0)
            if n:
                diffs[c] = n
        for c in rounded:
            n = values.pop(0)
            if n:
                diffs[c] = n
        ok = not (only_peer or only_cskpi or diffs)
        if not ok and not report:
            self.failed = True
        status = "ok" if ok else ("report" if report else "MISMATCH")
        detail = ", ".join(f"{c}: {n}" for c, n in diffs.items())
        self.rows.append((name, rows, only_cskpi, only_peer, detail or "-",
                          f"{worst:.1e}" if close else "-", status))
        return ok

    def check_bootstrap(self, name, table_name, keys, std_error, ci_low, ci_high):
        """Bootstrap spreads, which the two engines draw from different
        generators: resample counts equal, standard errors within 30% of
        each other, interval ends within 1.5 standard errors (with 200
        resamples, about 4 and 3.7 times their own sampling error)."""
        on = " AND ".join(f"a.{k} IS NOT DISTINCT FROM b.{k}" for k in keys)
        far = (f"(a.{std_error} IS NULL) <> (b.{std_error} IS NULL) "
               f"OR abs(a.{std_error} - b.{std_error}) > 0.3 * a.{std_error} "
               f"OR abs(a.{ci_low} - b.{ci_low}) > 1.5 * a.{std_error} "
               f"OR abs(a.{ci_high} - b.{ci_high}) > 1.5 * a.{std_error}")
        rows, differ = self.con.execute(f"""
            SELECT count(*), count(*) FILTER ({far})
            FROM {table(self.cskpi, table_name)} a JOIN {table(self.peer, table_name)} b ON {on}
        """).fetchone()
        self.rows.append((name, rows, "-", "-", f"{std_error}/{ci_low}/{ci_high}: {differ}" if differ else "-",
                          "-", "ok" if not differ else "report"))

    def check_raw_rows(self):
        """The rejects' raw rows as JSON objects: the same columns and values,
        whatever the key order and the timestamp style (see `instant`)."""
        def rows(directory):
            found = collections.Counter()
            for input_name, raw_row in self.con.execute(
                    f"SELECT input, raw_row FROM {table(directory, 'rejects')}").fetchall():
                values = {k: instant(v) for k, v in json.loads(raw_row).items()}
                found[(input_name, json.dumps(values, sort_keys=True))] += 1
            return found
        a, b = rows(self.cskpi), rows(self.peer)
        only_a, only_b = sum((a - b).values()), sum((b - a).values())
        ok = not (only_a or only_b)
        self.failed |= not ok
        self.rows.append(("rejects raw_row (as JSON objects)", sum(a.values()), only_a, only_b, "-", "-",
                          "ok" if ok else "MISMATCH"))

    def print(self):
        header = ("check", "rows", "only cskpi", "only peer", "columns that differ (rows)", "max rel", "status")
        widths = [max(len(str(r[i])) for r in [header, *self.rows]) for i in range(len(header))]
        for r in [header, tuple("-" * w for w in widths), *self.rows]:
            print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    cskpi, peer = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/")
    c = Comparison(cskpi, peer)

    # Validation: the same rows rejected for the same reason, every copy of a duplicate.
    reasons = """SELECT input, reason, count(*) AS n FROM {t} GROUP BY ALL"""
    c.check("rejects per input and reason", "rejects", ["input", "reason"], exact=["n"],
            cskpi_sql=reasons.format(t=table(cskpi, "rejects")), peer_sql=reasons.format(t=table(peer, "rejects")))
    keyed = """SELECT input, key, reason, count(*) AS copies FROM {t} GROUP BY ALL"""
    c.check("rejects per input, key and reason", "rejects", ["input", "key", "reason"], exact=["copies"],
            cskpi_sql=keyed.format(t=table(cskpi, "rejects")), peer_sql=keyed.format(t=table(peer, "rejects")))
    c.check_raw_rows()

    ms = ["month", "segment"]
    c.check("retention_monthly counts", "retention_monthly", ms,
            exact=["customers_start", "customers_new", "customers_end", "customers_churned",
                   "renewals_due", "renewals_won", "renewals_pending"])
    c.check("retention_monthly rates", "retention_monthly", ms, close=["churn_rate", "crr", "renewal_rate"])
    c.check("mrr_monthly paying customers", "mrr_monthly", ms, exact=["paying_customers"])
    c.check("mrr_monthly money", "mrr_monthly", ms,
            close=["mrr", "arpa", "new_mrr", "expansion_mrr", "reactivation_mrr", "contraction_mrr",
                   "churned_mrr", "net_new_mrr"])
    c.check("mrr_monthly nrr, grr, quick ratio", "mrr_monthly", ms, close=["nrr", "grr", "quick_ratio"])
    c.check("mrr_movements", "mrr_movements", ["month", "customer_id"], exact=["segment", "movement"],
            close=["mrr", "prev_mrr", "delta"])
    c.check("support_monthly counts", "support_monthly", ms,
            exact=["tickets", "resolved", "first_contact_resolved"])
    c.check("support_monthly fcr, median hours", "support_monthly", ms,
            close=["fcr_rate", "median_resolution_hours"])
    c.check("survey_monthly counts", "survey_monthly", ms,
            exact=["nps_responses", "promoters", "passives", "detractors", "csat_responses", "csat_positive"])
    c.check("survey_monthly nps, moe, csat", "survey_monthly", ms, close=["nps", "nps_moe", "csat"])
    c.check("value_monthly", "value_monthly", ms, close=["retention_cost", "crc", "arpa", "crc_to_arpa"])
    c.check("value_summary (clv per segment)", "value_summary", ["as_of", "segment"], exact=["customers"],
            close=["avg_order_value", "purchase_frequency", "lifetime_months", "clv", "revenue", "cps_total"])
    c.check("customer_value", "customer_value", ["as_of", "customer_id"],
            exact=["segment", "cps_quintile", "tenure_months"],
            close=["revenue", "direct_cost", "allocated_cost", "cps", "clv"])
    # DERL follows the fitted alpha and beta, which two maximisers to a
    # gradient of 1e-6 agree on to about 1e-7, not 1e-9
    c.check("customer_value derl, predicted clv", "customer_value", ["as_of", "customer_id"],
            close=["derl_months", "predicted_clv"], report=True)
    c.check("cohort_retention", "cohort_retention", ["cohort_month", "segment", "months_since"],
            exact=["cohort_customers", "active_customers"],
            close=["logo_retention", "mrr", "mrr_retention"])
    fitted = "SELECT as_of, segment, customers, cohorts, alpha IS NOT NULL AS fitted FROM {t}"
    c.check("retention_model (which segments have a model)", "retention_model", ["as_of", "segment"],
            exact=["customers", "cohorts", "fitted"],
            cskpi_sql=fitted.format(t=table(cskpi, "retention_model")),
            peer_sql=fitted.format(t=table(peer, "retention_model")))
    c.check("retention_model estimates", "retention_model", ["as_of", "segment"],
            close=["alpha", "beta", "log_likelihood", "expected_retention_12m"], report=True)
    c.check("retention_forecast", "retention_forecast", ["as_of", "segment", "period"],
            close=["retention_rate", "survival"], report=True)
    c.check("customer_health", "customer_health", ["as_of", "customer_id"],
            exact=["segment", "band", "previous_band"],
            close=["health_score", "usage", "nps", "csat", "support", "mrr_trend",
                   "usage_contribution", "nps_contribution", "csat_contribution",
                   "support_contribution", "mrr_trend_contribution",
                   "previous_health_score"], rounded=["health_change"])
    bands = """SELECT segment, band, floor(health_score / 10) AS decile, count(*) AS customers
               FROM {t} GROUP BY ALL"""
    c.check("health score distribution", "customer_health", ["segment", "band", "decile"], exact=["customers"],
            cskpi_sql=bands.format(t=table(cskpi, "customer_health")),
            peer_sql=bands.format(t=table(peer, "customer_health")))
    c.check("kpi_summary", "kpi_summary", ["month", "segment", "kpi"], close=["value"])

    # Approximate by design: tokenisation (themes, sentiment) and the CSI numerics.
    c.check("feedback_comments", "feedback_comments", ["response_id", "comment"],
            exact=["customer_id", "month", "survey", "score", "segment", "themes", "responded_at"],
            close=["sentiment"], report=True)
    c.check("feedback_themes", "feedback_themes", ["month", "theme"], exact=["comments", "mentions"],
            close=["share", "avg_sentiment", "avg_nps_score"], report=True)
    c.check("csi_index", "csi_index", ["period", "segment"],
            exact=["respondents", "incomplete_respondents", "iterations"], close=["csi", "gof"], report=True)
    c.check("csi_factors", "csi_factors", ["period", "segment", "factor"], exact=["respondents"],
            close=["score", "r_squared", "ave", "cronbach_alpha", "dg_rho", "eig_1st", "eig_2nd"],
            report=True)
    unnested = """SELECT period, segment, factor, w.item, w.weight, l.loading
                  FROM {t}, unnest(item_weights) AS u(w), unnest(item_loadings) AS v(l)
                  WHERE w.item = l.item"""
    c.check("csi item weights and loadings", "csi_factors", ["period", "segment", "factor", "item"],
            close=["weight", "loading"], report=True,
            cskpi_sql=unnested.format(t=table(cskpi, "csi_factors")),
            peer_sql=unnested.format(t=table(peer, "csi_factors")))
    c.check("csi_paths", "csi_paths", ["period", "segment", "from_factor", "to_factor"],
            close=["path_coefficient", "indirect_effect", "total_effect"], report=True)
    c.check("csi bootstrap counts", "csi_index", ["period", "segment"], exact=["bootstrap_resamples"])
    c.check_bootstrap("csi_paths bootstrap", "csi_paths", ["period", "segment", "from_factor", "to_factor"],
                      "std_error", "ci_low", "ci_high")
    c.check_bootstrap("csi_index bootstrap", "csi_index", ["period", "segment"],
                      "csi_std_error", "csi_ci_low", "csi_ci_high")

    c.print()
    sys.exit(1 if c.failed else 0)


if __name__ == "__main__":
    main()
