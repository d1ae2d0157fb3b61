//! Self-contained HTML reports: metric tables, line plots (inline SVG) and animated GIFs (inline data URIs), in
//! one file that opens in any browser without a server or network.

use std::fmt::Write;

use base64::Engine;

/// A line plot: one polyline per series.
#[derive(Debug, Clone)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

#[derive(Debug, Clone)]
pub enum Block {
    Paragraph(String),
    Table {
        headers: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    Plot(LinePlot),
    /// Captioned GIF files' bytes.
    Gifs(Vec<(String, Vec<u8>)>),
}

#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub title: String,
    pub sections: Vec<Section>,
}

/// Text made safe inside HTML elements and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}\
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}\
figure{display:inline-block;margin:0.5em;text-align:center}figure img{image-rendering:pixelated;height:192px}\
figcaption{font-size:0.85em;color:#555}svg text{font-size:12px;fill:#333}";

const PALETTE: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf",
];

/// "Nice" axis limits and ticks covering [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = if (hi - lo).abs() < 1e-12 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    };
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).floor() * step;
    let mut out = Vec::new();
    let mut t = first;
    while t <= hi + step * 0.999 && out.len() < 100 {
        out.push(t);
        t += step;
    }
    // Ranges too wide for f64 steps (or not finite): the ends alone.
    if out.len() < 2 {
        return vec![lo, hi];
    }
    out
}

fn tick_label(v: f64) -> String {
    if v.abs() >= 1000.0 || (v != 0.0 && v.abs() < 0.01) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

impl LinePlot {
    /// The plot as an inline SVG (640 x 300).
    pub fn to_svg(&self) -> String {
        let (w, h, left, right, top, bottom) = (640.0, 300.0, 60.0, 150.0, 30.0, 45.0);
        let points = self
            .series
            .iter()
            .flat_map(|(_, p)| p.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        let (xt, yt) = (ticks(x0, x1), ticks(y0, y1));
        let (x0, x1) = (xt[0], xt[xt.len() - 1]);
        let (y0, y1) = (yt[0], yt[yt.len() - 1]);
        let sx = |x: f64| left + (x - x0) / (x1 - x0).max(1e-12) * (w - left - right);
        let sy = |y: f64| h - bottom - (y - y0) / (y1 - y0).max(1e-12) * (h - top - bottom);
        let mut s = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">"#
        );
        let _ = write!(
            s,
            r#"<text x="{left}" y="18" font-weight="bold">{}</text>"#,
            escape(&self.title)
        );
        for &t in &xt {
            let _ = write!(
                s,
                r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#eee"/><text x="{0}" y="{3}" text-anchor="middle">{4}</text>"##,
                sx(t),
                top,
                h - bottom,
                h - bottom + 16.0,
                tick_label(t)
            );
        }
        for &t in &yt {
            let _ = write!(
                s,
                r##"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="#eee"/><text x="{3}" y="{4}" text-anchor="end">{5}</text>"##,
                left,
                sy(t),
                w - right,
                left - 6.0,
                sy(t) + 4.0,
                tick_label(t)
            );
        }
        let _ = write!(
            s,
            r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#999"/><text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(14,{}) rotate(-90)" text-anchor="middle">{}</text>"##,
            w - left - right,
            h - top - bottom,
            (left + w - right) / 2.0,
            h - 6.0,
            escape(&self.x_label),
            (top + h - bottom) / 2.0,
            escape(&self.y_label)
        );
        for (i, (name, pts)) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let path: Vec<String> = pts
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/><line x1="{2}" y1="{3}" x2="{4}" y2="{3}" stroke="{color}" stroke-width="3"/><text x="{5}" y="{6}">{1}</text>"#,
                path.join(" "),
                escape(name),
                w - right + 10.0,
                top + 10.0 + 18.0 * i as f64,
                w - right + 28.0,
                w - right + 32.0,
                top + 14.0 + 18.0 * i as f64
            );
        }
        s.push_str("</svg>");
        s
    }
}

impl Report {
    pub fn to_html(&self) -> String {
        let mut s = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title><style>{STYLE}</style></head><body>\n<h1>{0}</h1>\n",
            escape(&self.title)
        );
        for section in &self.sections {
            let _ = writeln!(s, "<h2>{}</h2>", escape(&section.title));
            for block in &section.blocks {
                match block {
                    Block::Paragraph(text) => {
                        let _ = writeln!(s, "<p>{}</p>", escape(text));
                    }
                    Block::Table { headers, rows } => {
                        s.push_str("<table><thead><tr>");
                        for h in headers {
                            let _ = write!(s, "<th>{}</th>", escape(h));
                        }
                        s.push_str("</tr></thead><tbody>\n");
                        for row in rows {
                            s.push_str("<tr>");
                            for cell in row {
                                let _ = write!(s, "<td>{}</td>", escape(cell));
                            }
                            s.push_str("</tr>\n");
                        }
                        s.push_str("</tbody></table>\n");
                    }
                    Block::Plot(plot) => {
                        s.push_str(&plot.to_svg());
                        s.push('\n');
                    }
                    Block::Gifs(gifs) => {
                        for (caption, bytes) in gifs {
                            let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                            let _ = writeln!(
                                s,
                                "<figure><img alt=\"{0}\" src=\"data:image/gif;base64,{data}\"><figcaption>{0}</figcaption></figure>",
                                escape(caption)
                            );
                        }
                    }
                }
            }
        }
        s.push_str("</body></html>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere() {
        let report = Report {
            title: "<script>".into(),
            sections: vec![Section {
                title: "a & b".into(),
                blocks: vec![
                    Block::Table {
                        headers: vec!["\"h\"".into()],
                        rows: vec![vec!["<td>".into()]],
                    },
                    Block::Plot(LinePlot {
                        title: "<t>".into(),
                        x_label: "x".into(),
                        y_label: "y".into(),
                        series: vec![("<s>".into(), vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0)])],
                    }),
                ],
            }],
        };
        let html = report.to_html();
        assert!(!html.contains("<script>") && !html.contains("<t>") && !html.contains("<s>"));
        assert!(html.contains("&lt;td&gt;") && html.contains("a &amp; b"));
    }

    #[test]
    fn ticks_cover_the_range() {
        let t = ticks(0.13, 9.7);
        assert!(
            t[0] <= 0.13 && *t.last().unwrap() >= 9.7 && t.len() <= 8,
            "{t:?}"
        );
        assert!(ticks(5.0, 5.0).len() >= 2);
        assert_eq!(ticks(-1e308, 1e308).len(), 2);
    }
}
