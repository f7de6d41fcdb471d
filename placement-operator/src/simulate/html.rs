//! `simulate --html FILE`: the report as one self-contained HTML page with charts, viewable offline.
//!
//! The charts are inline SVG written here (no script, no stylesheet or font from elsewhere), so the file
//! can be mailed, attached to a ticket or opened years later:
//! - per distribution, the pods per group after each burst against the group's target (dashed);
//! - the rebalance plan's node scores before and after, with the hot and cold thresholds' sigma;
//! - per traffic weight, the weight and the desired weight over time, and the metric.
//!
//! Every value shown is also in the tables under each chart. Text is escaped.

use super::Report;
use std::fmt::Write as _;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const PAD: f64 = 40.0;
/// Series colours (colour-blind safe).
const COLOURS: [&str; 8] = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"];

/// Escapes text for HTML element content and attribute values.
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

/// One line of a chart.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    dashed: bool,
    colour: &'static str,
}

/// A line chart of `series` with axis labels; `step` draws steps (weights hold until changed).
fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series], step: bool) -> String {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0_f64);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        return String::new();
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= 0.0 {
        y1 = 1.0;
    }
    let sx = |x: f64| PAD + (x - x0) / (x1 - x0) * (WIDTH - 2.0 * PAD);
    let sy = |y: f64| HEIGHT - PAD - y / y1 * (HEIGHT - 2.0 * PAD);
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         role=\"img\" aria-label=\"{}\">",
        escape(title),
        escape(title)
    );
    let _ = write!(
        svg,
        "<line x1=\"{PAD}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#888\"/><line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" \
         y2=\"{0}\" stroke=\"#888\"/>",
        HEIGHT - PAD,
        WIDTH - PAD
    );
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>\
         <text x=\"12\" y=\"{}\" font-size=\"11\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">{}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"10\" \
         text-anchor=\"end\">0</text>",
        WIDTH / 2.0,
        HEIGHT - 8.0,
        escape(x_label),
        HEIGHT / 2.0,
        HEIGHT / 2.0,
        escape(y_label),
        PAD - 4.0,
        PAD + 4.0,
        trim(y1),
        PAD - 4.0,
        HEIGHT - PAD
    );
    for s in series {
        let mut path = String::new();
        let mut last: Option<(f64, f64)> = None;
        for &(x, y) in &s.points {
            if let (true, Some((_, ly))) = (step, last) {
                let _ = write!(path, "{:.1},{:.1} ", sx(x), sy(ly));
            }
            let _ = write!(path, "{:.1},{:.1} ", sx(x), sy(y));
            last = Some((x, y));
        }
        let dash = if s.dashed { " stroke-dasharray=\"5 4\"" } else { "" };
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash} points=\"{}\"><title>{}</title></polyline>",
            s.colour,
            path.trim_end(),
            escape(&s.name)
        );
    }
    svg.push_str("</svg><p class=\"legend\">");
    for s in series {
        let _ = write!(
            svg,
            "<span><svg width=\"24\" height=\"8\"><line x1=\"0\" y1=\"4\" x2=\"24\" y2=\"4\" stroke=\"{}\" stroke-width=\"2\"{}/></svg> {}</span> ",
            s.colour,
            if s.dashed { " stroke-dasharray=\"5 4\"" } else { "" },
            escape(&s.name)
        );
    }
    svg.push_str("</p></figure>");
    svg
}

/// Horizontal paired bars: before and after per item, on a 0..1 scale.
fn paired_bars(title: &str, rows: &[(String, f64, f64)]) -> String {
    let row_h = 18.0;
    let height = PAD + rows.len() as f64 * row_h * 2.0 + 10.0;
    let label_w = 160.0;
    let bar_w = WIDTH - label_w - 20.0;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" \
         role=\"img\" aria-label=\"{}\">",
        escape(title),
        escape(title)
    );
    for (i, (name, before, after)) in rows.iter().enumerate() {
        let y = 10.0 + i as f64 * row_h * 2.0;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>before {}</title></rect>\
             <rect x=\"{label_w}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>after {}</title></rect>",
            label_w - 6.0,
            y + row_h,
            escape(name),
            y,
            bar_w * before.clamp(0.0, 1.0),
            row_h - 2.0,
            COLOURS[5],
            trim(*before),
            y + row_h,
            bar_w * after.clamp(0.0, 1.0),
            row_h - 2.0,
            COLOURS[0],
            trim(*after)
        );
    }
    let _ = write!(
        svg,
        "</svg><p class=\"legend\"><span style=\"color:{}\">&#9632;</span> before <span style=\"color:{}\">&#9632;</span> after \
         (utilization score, 0 to 1)</p></figure>",
        COLOURS[5], COLOURS[0]
    );
    svg
}

fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(t, "<th>{}</th>", escape(h));
    }
    t.push_str("</tr></thead><tbody>");
    for r in rows {
        t.push_str("<tr>");
        for c in r {
            let _ = write!(t, "<td>{}</td>", escape(c));
        }
        t.push_str("</tr>");
    }
    t.push_str("</tbody></table>");
    t
}

/// The whole report as one HTML document.
pub fn render(report: &Report) -> String {
    let mut body = String::new();
    let _ = write!(body, "<h1>{}</h1><p>{}</p>", escape(&report.scenario), escape(&report.description));

    for d in &report.distribution {
        let _ = write!(body, "<h2>Distribution: {}</h2><p>{}</p>", escape(&d.workload), escape(&d.rule));
        let mut series = Vec::new();
        for (g, group) in d.groups.iter().enumerate() {
            let colour = COLOURS[g % COLOURS.len()];
            let mut counts = vec![(0.0, 0.0)];
            let mut target = vec![(0.0, 0.0)];
            for b in &d.bursts {
                counts.push((f64::from(b.total), f64::from(b.counts.get(g).copied().unwrap_or(0))));
                target.push((f64::from(b.total), f64::from(b.target.get(g).copied().unwrap_or(0))));
            }
            series.push(Series { name: format!("{group}: pods"), points: counts, dashed: false, colour });
            series.push(Series { name: format!("{group}: target"), points: target, dashed: true, colour });
        }
        body.push_str(&line_chart(
            &format!("{}: pods per group after each burst, against the target", d.workload),
            "pods of the workload",
            "pods in the group",
            &series,
            false,
        ));
        let rows: Vec<Vec<String>> = d
            .bursts
            .iter()
            .map(|b| {
                let fmt = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" / ");
                vec![b.size.to_string(), b.total.to_string(), fmt(&b.counts), fmt(&b.target)]
            })
            .collect();
        let groups = d.groups.join(" / ");
        body.push_str(&table(&["burst", "total", &format!("pods ({groups})"), &format!("target ({groups})")], &rows));
    }

    if let Some(plan) = &report.rebalance {
        let _ = write!(
            body,
            "<h2>Rebalance plan</h2><p>sigma {} → {} with {} eviction(s){}; stopped: {}</p>",
            trim(plan.sigma_before),
            trim(plan.sigma_after),
            plan.evictions.len(),
            if plan.dry_run { " (dry run)" } else { "" },
            escape(&format!("{:?}", plan.stop))
        );
        let rows: Vec<(String, f64, f64)> = plan
            .nodes
            .iter()
            .map(|n| {
                let mark = if n.hot {
                    " (hot)"
                } else if n.cold {
                    " (cold)"
                } else {
                    ""
                };
                (format!("{}{mark}", n.node), n.before, n.after)
            })
            .collect();
        body.push_str(&paired_bars("Node scores before and after the plan", &rows));
        let evictions: Vec<Vec<String>> =
            plan.evictions.iter().map(|e| vec![e.pod.to_string(), e.from.clone(), e.to.clone()]).collect();
        body.push_str(&table(&["evicted pod", "from", "planned target"], &evictions));
    }

    for t in &report.traffic {
        let _ = write!(body, "<h2>Traffic weight: {} ({})</h2>", escape(&t.name), escape(&t.target));
        let Some(first) = t.steps.first() else { continue };
        let x = |s: &super::traffic::TrafficStep| s.at.duration_since(first.at).as_secs_f64() / 60.0;
        let weight = t.steps.iter().map(|s| (x(s), f64::from(s.weight))).collect();
        let desired = t.steps.iter().map(|s| (x(s), f64::from(s.desired))).collect();
        let metric = t.steps.iter().map(|s| (x(s), f64::try_from(s.metric).unwrap_or(0.0))).collect();
        body.push_str(&line_chart(
            &format!("{}: weight over time", t.name),
            "minutes since the first sample",
            "weight",
            &[
                Series { name: "weight".into(), points: weight, dashed: false, colour: COLOURS[0] },
                Series { name: "desired".into(), points: desired, dashed: true, colour: COLOURS[1] },
            ],
            true,
        ));
        body.push_str(&line_chart(
            &format!("{}: metric", t.name),
            "minutes since the first sample",
            "metric",
            &[Series { name: "metric".into(), points: metric, dashed: false, colour: COLOURS[2] }],
            false,
        ));
        let rows: Vec<Vec<String>> = t
            .steps
            .iter()
            .map(|s| {
                vec![
                    s.at.to_string(),
                    s.metric.to_string(),
                    s.desired.to_string(),
                    s.weight.to_string(),
                    s.reason.clone(),
                ]
            })
            .collect();
        body.push_str(&table(&["time", "metric", "desired", "weight", "why"], &rows));
    }

    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>placement simulate: {}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:800px;margin:2em auto;padding:0 1em;color:#222}}\
         figure{{margin:1em 0}}figcaption{{font-weight:600;margin-bottom:.3em}}svg{{max-width:100%;height:auto}}\
         table{{border-collapse:collapse;font-size:13px;margin:.5em 0 2em}}td,th{{border:1px solid #ccc;padding:2px 6px;\
         text-align:left}}.legend span{{margin-right:1em;white-space:nowrap}}</style></head><body>{body}</body></html>\n",
        escape(&report.scenario)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_renders_every_section_and_nothing_from_elsewhere() {
        let report = super::super::run(&super::super::Scenario::demo().expect("demo"));
        let html = render(&report);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("pods per group after each burst"), "distribution chart");
        assert!(html.contains("Node scores before and after the plan"), "rebalance chart");
        assert!(html.contains("weight over time"), "traffic chart");
        assert_eq!(html.matches("<svg xmlns").count(), report.distribution.len() + 1 + 2 * report.traffic.len());
        for outside in ["<script", "src=", "href=", "@import", "url("] {
            assert!(!html.contains(outside), "self-contained: found {outside}");
        }
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
        let chart = line_chart(
            "<script>",
            "x",
            "y",
            &[Series { name: "a<b".into(), points: vec![(0.0, 1.0), (2.0, 3.0)], dashed: false, colour: COLOURS[0] }],
            true,
        );
        assert!(!chart.contains("<script>") && chart.contains("&lt;script&gt;") && chart.contains("a&lt;b"));
        assert!(chart.contains("points=\"40.0,"), "{chart}");
    }
}
