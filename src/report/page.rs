//! The report's HTML: one self-contained page (inline CSS and SVG, a
//! content security policy that allows no request at all).

use super::format::escape;

/// Rows of text under a chart, for screen readers and copy-paste.
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn html(&self) -> String {
        let mut html = String::from("<table><thead><tr>");
        for h in &self.headers {
            html.push_str(&format!("<th scope=\"col\">{}</th>", escape(h)));
        }
        html.push_str("</tr></thead><tbody>");
        for row in &self.rows {
            html.push_str("<tr>");
            for cell in row {
                html.push_str(&format!("<td>{}</td>", escape(cell)));
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table>");
        html
    }
}

/// A headline number: shown formatted, its exact value in `data-value`
/// (what a test or a scraper reads).
pub struct Tile {
    pub key: &'static str,
    pub label: String,
    pub shown: String,
    pub value: Option<f64>,
}

#[derive(Default)]
pub struct Page {
    body: String,
}

impl Page {
    pub fn raw(&mut self, html: &str) {
        self.body.push_str(html);
    }

    pub fn section(&mut self, id: &str, title: &str, answers: &str) {
        self.body.push_str(&format!(
            "<section id=\"{}\"><h2>{}</h2><p class=\"answers\">{}</p>",
            escape(id),
            escape(title),
            escape(answers)
        ));
    }

    pub fn end_section(&mut self) {
        self.body.push_str("</section>");
    }

    pub fn heading(&mut self, text: &str) {
        self.body.push_str(&format!("<h3>{}</h3>", escape(text)));
    }

    pub fn paragraph(&mut self, text: &str) {
        self.body.push_str(&format!("<p>{}</p>", escape(text)));
    }

    /// A part without data: said in words, no empty chart.
    pub fn no_data(&mut self, what: &str, why: &str) {
        self.body.push_str(&format!(
            "<p class=\"no-data\" data-no-data=\"{}\">No data: {}</p>",
            escape(what),
            escape(why)
        ));
    }

    /// A chart (inline SVG) with its numbers in a `<details>` table.
    pub fn chart(&mut self, id: &str, svg: &str, table: &Table) {
        self.body.push_str(&format!(
            "<figure id=\"{}\" class=\"chart\">{}<details><summary>The numbers</summary>{}</details></figure>",
            escape(id),
            svg,
            table.html()
        ));
    }

    /// A table shown as is (not under a chart).
    pub fn table(&mut self, id: &str, table: &Table) {
        self.body.push_str(&format!(
            "<div id=\"{}\" class=\"table\">{}</div>",
            escape(id),
            table.html()
        ));
    }

    pub fn tiles(&mut self, tiles: &[Tile]) {
        self.body.push_str("<div class=\"tiles\">");
        for tile in tiles {
            let value = tile.value.map(|v| v.to_string()).unwrap_or_default();
            self.body.push_str(&format!(
                "<div class=\"tile\"><div class=\"label\">{}</div><div class=\"value\" data-kpi=\"{}\" data-value=\"{}\">{}</div></div>",
                escape(&tile.label),
                escape(tile.key),
                escape(&value),
                escape(&tile.shown)
            ));
        }
        self.body.push_str("</div>");
    }

    pub fn document(self, title: &str) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{}</title><style>{}</style></head><body><main>{}</main></body></html>\n",
            escape(title),
            STYLE,
            self.body
        )
    }
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}\
h1{font-size:1.6rem;margin:.6rem 0}h2{font-size:1.3rem;border-bottom:2px solid #0072b2;padding-bottom:4px}\
h3{font-size:1.05rem;margin-top:1.4rem}\
section{background:#fff;border-radius:8px;padding:8px 20px 16px;margin:18px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}\
.answers{color:#4a5163;font-style:italic}\
.tiles{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}\
.tile{border:1px solid #d6dae3;border-radius:6px;padding:8px 14px;min-width:140px}\
.tile .label{font-size:.8rem;color:#4a5163}.tile .value{font-size:1.35rem;font-weight:600}\
figure{margin:12px 0}figure svg{max-width:100%;height:auto}\
details{margin:4px 0 8px}summary{cursor:pointer;color:#0072b2}\
table{border-collapse:collapse;font-size:.85rem;margin:6px 0}\
th,td{border:1px solid #d6dae3;padding:3px 8px;text-align:right}th{background:#eef1f6}\
td:first-child,th:first-child{text-align:left}\
.no-data{color:#8a5a00;background:#fff6e0;border-left:4px solid #e69f00;padding:6px 10px}\
";
