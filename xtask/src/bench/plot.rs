//! SVG line plots of throughput and scaling efficiency against cores, written by hand:
//! one line per workload, axes with ticks and labels, a legend and a title.

use std::fmt::Write as _;

use super::report::SuiteReport;

/// One line of a plot: a label and its `(cores, value)` points.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Series {
    pub label: String,
    pub points: Vec<(usize, f64)>,
}

/// A plot of values against core counts.
#[derive(Clone, Debug)]
pub(super) struct Plot {
    pub title: String,
    pub y_label: String,
    /// A logarithmic y axis (throughputs of different sizes), else linear from 0.
    pub log_y: bool,
    /// A dashed horizontal line at this value (ideal efficiency), if any.
    pub reference: Option<f64>,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 70.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Returns `text` with XML's special characters escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for char in text.chars() {
        match char {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            char => out.push(char),
        }
    }
    out
}

/// Returns `value` short, with k, M or G for thousands, millions, billions.
fn short(value: f64) -> String {
    let (scaled, suffix) = match value.abs() {
        size if size >= 1e9 => (value / 1e9, "G"),
        size if size >= 1e6 => (value / 1e6, "M"),
        size if size >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    let text = format!("{scaled:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{suffix}")
}

/// Returns a step of 1, 2 or 5 times a power of ten that cuts `span` into about 5.
fn nice_step(span: f64) -> f64 {
    let raw = (span / 5.0).max(f64::MIN_POSITIVE);
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|factor| factor * power >= raw)
        .unwrap_or(10.0);
    step * power
}

/// A mapping from data to picture coordinates along one axis.
struct Axis {
    low: f64,
    high: f64,
    log: bool,
    /// Picture coordinates of `low` and `high`.
    from: f64,
    to: f64,
}

impl Axis {
    fn position(&self, value: f64) -> f64 {
        let map = |value: f64| if self.log { value.log10() } else { value };
        let (low, high) = (map(self.low), map(self.high));
        let fraction = if high > low {
            (map(value) - low) / (high - low)
        } else {
            0.5
        };
        self.from + fraction * (self.to - self.from)
    }
}

/// Returns the plot as an SVG document.
pub(super) fn svg(plot: &Plot) -> String {
    let points = || {
        plot.series
            .iter()
            .flat_map(|series| series.points.iter())
            .filter(|(_, value)| value.is_finite() && (!plot.log_y || *value > 0.0))
    };
    let mut cores: Vec<usize> = points().map(|&(cores, _)| cores.max(1)).collect();
    cores.sort_unstable();
    cores.dedup();
    let (fewest, most) = (
        *cores.first().unwrap_or(&1) as f64,
        *cores.last().unwrap_or(&1) as f64,
    );
    // Core counts double from one measure to the next: a log2 x axis spaces them evenly.
    let (x_low, x_high) = if most > fewest {
        (fewest, most)
    } else {
        (fewest / 2.0, fewest * 2.0)
    };
    let x = Axis {
        low: x_low,
        high: x_high,
        log: true,
        from: LEFT,
        to: WIDTH - RIGHT,
    };
    let values: Vec<f64> = points()
        .map(|&(_, value)| value)
        .chain(plot.reference)
        .collect();
    let largest = values.iter().copied().fold(f64::NAN, f64::max);
    let smallest = values.iter().copied().fold(f64::NAN, f64::min);
    let (y_low, y_high, y_ticks) = if plot.log_y {
        let low = if smallest.is_finite() {
            smallest.log10().floor()
        } else {
            0.0
        };
        let high = if largest.is_finite() {
            largest.log10().ceil().max(low + 1.0)
        } else {
            low + 1.0
        };
        let ticks: Vec<f64> = (low as i32..=high as i32)
            .map(|power| 10f64.powi(power))
            .collect();
        (10f64.powf(low), 10f64.powf(high), ticks)
    } else {
        let top = if largest.is_finite() && largest > 0.0 {
            largest * 1.1
        } else {
            1.0
        };
        let step = nice_step(top);
        let high = (top / step).ceil() * step;
        let ticks: Vec<f64> = (0..=(high / step).round() as usize)
            .map(|index| index as f64 * step)
            .collect();
        (0.0, high, ticks)
    };
    let y = Axis {
        low: y_low,
        high: y_high,
        log: plot.log_y,
        from: HEIGHT - BOTTOM,
        to: TOP,
    };

    let mut svg = String::new();
    let _ = writeln!(svg, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"13\">"
    );
    let _ = writeln!(
        svg,
        "<rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"white\"/>"
    );
    let _ = writeln!(
        svg,
        "<text class=\"title\" x=\"{:.1}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" \
         font-weight=\"bold\">{}</text>",
        (LEFT + WIDTH - RIGHT) / 2.0,
        escape(&plot.title)
    );
    // Grid, ticks and tick labels.
    for &count in &cores {
        let position = x.position(count as f64);
        let _ = writeln!(
            svg,
            "<line x1=\"{position:.1}\" y1=\"{:.1}\" x2=\"{position:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
            TOP,
            HEIGHT - BOTTOM
        );
        let _ = writeln!(
            svg,
            "<text class=\"x-tick\" x=\"{position:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{count}</text>",
            HEIGHT - BOTTOM + 20.0
        );
    }
    for &tick in &y_ticks {
        let position = y.position(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT:.1}\" y1=\"{position:.1}\" x2=\"{:.1}\" y2=\"{position:.1}\" stroke=\"#ddd\"/>",
            WIDTH - RIGHT
        );
        let _ = writeln!(
            svg,
            "<text class=\"y-tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 8.0,
            position + 4.0,
            short(tick)
        );
    }
    // Axes and their labels.
    let _ = writeln!(
        svg,
        "<path d=\"M {LEFT:.1} {TOP:.1} V {:.1} H {:.1}\" fill=\"none\" stroke=\"black\"/>",
        HEIGHT - BOTTOM,
        WIDTH - RIGHT
    );
    let _ = writeln!(
        svg,
        "<text class=\"x-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">cores</text>",
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 20.0
    );
    let _ = writeln!(
        svg,
        "<text class=\"y-label\" transform=\"translate(22 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        (TOP + HEIGHT - BOTTOM) / 2.0,
        escape(&plot.y_label)
    );
    if let Some(reference) = plot.reference {
        let position = y.position(reference);
        let _ = writeln!(
            svg,
            "<line class=\"reference\" x1=\"{LEFT:.1}\" y1=\"{position:.1}\" x2=\"{:.1}\" \
             y2=\"{position:.1}\" stroke=\"#888\" stroke-dasharray=\"6 4\"/>",
            WIDTH - RIGHT
        );
    }
    // One line per series, and its legend entry.
    for (index, series) in plot.series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let mut shown: Vec<(usize, f64)> = series
            .points
            .iter()
            .copied()
            .filter(|(_, value)| value.is_finite() && (!plot.log_y || *value > 0.0))
            .collect();
        shown.sort_by_key(|&(cores, _)| cores);
        let coordinates: Vec<String> = shown
            .iter()
            .map(|&(cores, value)| {
                format!(
                    "{:.1},{:.1}",
                    x.position(cores.max(1) as f64),
                    y.position(value)
                )
            })
            .collect();
        let _ = writeln!(
            svg,
            "<polyline class=\"series\" points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
            coordinates.join(" ")
        );
        for &(cores, value) in &shown {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\"><title>{}: {} at {cores} cores</title></circle>",
                x.position(cores.max(1) as f64),
                y.position(value),
                escape(&series.label),
                short(value)
            );
        }
        let legend_y = TOP + 10.0 + index as f64 * 22.0;
        let legend_x = WIDTH - RIGHT + 20.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{legend_x:.1}\" y1=\"{legend_y:.1}\" x2=\"{:.1}\" y2=\"{legend_y:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>",
            legend_x + 24.0
        );
        let _ = writeln!(
            svg,
            "<text class=\"legend\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            legend_x + 32.0,
            legend_y + 4.0,
            escape(&series.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Returns the series of `report` whose record names end with `suffix`, one per name,
/// labelled by the name without the suffix (and with the unit, if `with_unit`).
fn series_ending(report: &SuiteReport, suffix: &str, with_unit: bool) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for record in &report.records {
        let Some(stem) = record.name.strip_suffix(suffix) else {
            continue;
        };
        let stem = stem.trim_end_matches(['/', '_']);
        let label = if with_unit {
            format!("{stem} ({})", record.unit)
        } else {
            stem.to_string()
        };
        match series.iter_mut().find(|series| series.label == label) {
            Some(found) => found.points.push((record.cores, record.value)),
            None => series.push(Series {
                label,
                points: vec![(record.cores, record.value)],
            }),
        }
    }
    series
}

/// Returns the plots of a suite as `(file name, SVG)`: throughput (records named
/// `..total`) and scaling efficiency (`..efficiency`) against cores, when it has them.
pub(super) fn suite_plots(report: &SuiteReport) -> Vec<(String, String)> {
    let suite = &report.environment.suite;
    let context = format!(
        "{suite}: {}, {} host CPUs, medians",
        report.environment.accel, report.environment.host_cpus
    );
    let mut plots = Vec::new();
    let throughput = series_ending(report, "total", true);
    if !throughput.is_empty() {
        let plot = Plot {
            title: format!("Throughput against cores ({context})"),
            y_label: "per second, all cores (log scale)".into(),
            log_y: true,
            reference: None,
            series: throughput,
        };
        plots.push((format!("{suite}-throughput.svg"), svg(&plot)));
    }
    let efficiency = series_ending(report, "efficiency", false);
    if !efficiency.is_empty() {
        let plot = Plot {
            title: format!("Scaling efficiency ({context})"),
            y_label: "throughput(N) / (N x throughput(1))".into(),
            log_y: false,
            reference: Some(1.0),
            series: efficiency,
        };
        plots.push((format!("{suite}-efficiency.svg"), svg(&plot)));
    }
    plots
}

/// A minimal XML reader for checking the SVG this module writes (and the smoke test's).
pub(super) mod xml {
    /// An element: its name, attributes and text (with entities decoded), and children.
    #[derive(Debug, Default)]
    pub struct Element {
        pub name: String,
        pub attributes: Vec<(String, String)>,
        pub text: String,
        pub children: Vec<Element>,
    }

    impl Element {
        /// Returns the value of attribute `name`.
        pub fn attribute(&self, name: &str) -> Option<&str> {
            self.attributes
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        }

        /// Returns this element and all below it, depth first.
        pub fn all(&self) -> Vec<&Element> {
            let mut found = vec![self];
            for child in &self.children {
                found.extend(child.all());
            }
            found
        }
    }

    fn decode(text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('&') {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find(';')
                .ok_or_else(|| format!("unterminated entity in {text:?}"))?;
            out.push(match &rest[start + 1..start + end] {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                other => return Err(format!("unknown entity &{other};")),
            });
            rest = &rest[start + end + 1..];
        }
        if rest.contains(['<', '>']) {
            return Err(format!("raw markup character in {text:?}"));
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Returns the document's root element, or why the text is not well-formed.
    pub fn parse(document: &str) -> Result<Element, String> {
        let mut rest = document.trim_start();
        if let Some(after) = rest.strip_prefix("<?xml") {
            rest = &after[after.find("?>").ok_or("unterminated XML declaration")? + 2..];
        }
        let mut stack: Vec<Element> = Vec::new();
        let mut root = None;
        loop {
            let start = rest.find('<');
            let text = &rest[..start.unwrap_or(rest.len())];
            match stack.last_mut() {
                Some(open) => open.text.push_str(&decode(text)?),
                None if !text.trim().is_empty() => return Err("text outside the root".into()),
                None => {}
            }
            let Some(start) = start else { break };
            let end = rest[start..].find('>').ok_or("unterminated tag")? + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let element = stack.pop().ok_or("closing tag without an opening one")?;
                if element.name != name.trim() {
                    return Err(format!("<{}> closed by </{}>", element.name, name));
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None if root.is_none() => root = Some(element),
                    None => return Err("two root elements".into()),
                }
                continue;
            }
            let (tag, empty) = match tag.strip_suffix('/') {
                Some(tag) => (tag, true),
                None => (tag, false),
            };
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let mut element = Element {
                name: tag[..name_end].to_string(),
                ..Element::default()
            };
            if element.name.is_empty() {
                return Err("a tag without a name".into());
            }
            let mut attributes = tag[name_end..].trim();
            while !attributes.is_empty() {
                let (key, after) = attributes.split_once("=\"").ok_or("unquoted attribute")?;
                let (value, after) = after.split_once('"').ok_or("unterminated attribute")?;
                let key = key.trim();
                if key.is_empty() || key.contains(char::is_whitespace) {
                    return Err(format!("bad attribute name {key:?}"));
                }
                if element.attributes.iter().any(|(seen, _)| seen == key) {
                    return Err(format!("attribute {key} twice"));
                }
                element.attributes.push((key.to_string(), decode(value)?));
                attributes = after.trim_start();
            }
            if empty {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Err("an empty root element".into()),
                }
            } else {
                stack.push(element);
            }
        }
        if !stack.is_empty() {
            return Err(format!("<{}> never closed", stack[stack.len() - 1].name));
        }
        root.ok_or_else(|| "no root element".into())
    }
}

#[cfg(test)]
mod tests {
    use super::xml::{self, Element};
    use super::*;
    use crate::bench::report::environment;
    use crate::bench::Record;

    fn points(element: &Element) -> Vec<(f64, f64)> {
        element
            .attribute("points")
            .unwrap()
            .split_whitespace()
            .map(|pair| {
                let (x, y) = pair.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    fn texts<'a>(root: &'a Element, class: &str) -> Vec<&'a str> {
        root.all()
            .into_iter()
            .filter(|element| element.name == "text" && element.attribute("class") == Some(class))
            .map(|element| element.text.as_str())
            .collect()
    }

    fn plot() -> Plot {
        Plot {
            title: "Throughput <&> cores".into(),
            y_label: "per second".into(),
            log_y: true,
            reference: None,
            series: vec![
                Series {
                    label: "compute (ops/s)".into(),
                    points: vec![(1, 4e8), (2, 8e8), (4, 9e8)],
                },
                Series {
                    label: "a<b & \"c\"".into(),
                    points: vec![(4, 4e4), (2, 2e4)],
                },
            ],
        }
    }

    #[test]
    fn writes_well_formed_svg_with_lines_labels_and_legend() {
        let root = xml::parse(&svg(&plot())).unwrap();
        assert_eq!(root.name, "svg");
        assert_eq!(root.attribute("viewBox"), Some("0 0 760 460"));
        assert_eq!(texts(&root, "title"), vec!["Throughput <&> cores"]);
        assert_eq!(
            texts(&root, "legend"),
            vec!["compute (ops/s)", "a<b & \"c\""]
        );
        assert_eq!(texts(&root, "x-tick"), vec!["1", "2", "4"]);
        assert_eq!(texts(&root, "x-label"), vec!["cores"]);
        assert_eq!(texts(&root, "y-label"), vec!["per second"]);
        // Log axis from 10^4 to 10^9.
        assert_eq!(
            texts(&root, "y-tick"),
            vec!["10k", "100k", "1M", "10M", "100M", "1G"]
        );
        let lines: Vec<&Element> = root
            .all()
            .into_iter()
            .filter(|element| element.attribute("class") == Some("series"))
            .collect();
        assert_eq!(lines.len(), 2);
        let compute = points(lines[0]);
        assert_eq!(compute.len(), 3);
        for &(x, y) in compute.iter().chain(points(lines[1]).iter()) {
            assert!((LEFT..=WIDTH - RIGHT).contains(&x), "x {x}");
            assert!((TOP..=HEIGHT - BOTTOM).contains(&y), "y {y}");
        }
        // More cores further right, more throughput higher up (smaller y).
        assert!(compute[0].0 < compute[1].0 && compute[1].0 < compute[2].0);
        assert!(compute[0].1 > compute[1].1 && compute[1].1 > compute[2].1);
        // Doubling cores moves by the same distance on the log2 axis.
        let step = compute[1].0 - compute[0].0;
        assert!((compute[2].0 - compute[1].0 - step).abs() < 0.2);
        // Points are drawn in core order whatever order they came in.
        let second = points(lines[1]);
        assert!(second[0].0 < second[1].0);
        let circles = root
            .all()
            .into_iter()
            .filter(|element| element.name == "circle")
            .count();
        assert_eq!(circles, 5);
    }

    #[test]
    fn efficiency_plots_are_linear_with_a_reference_line() {
        let plot = Plot {
            title: "efficiency".into(),
            y_label: "x".into(),
            log_y: false,
            reference: Some(1.0),
            series: vec![Series {
                label: "alloc".into(),
                points: vec![(1, 1.0), (2, 0.95), (8, 0.25)],
            }],
        };
        let root = xml::parse(&svg(&plot)).unwrap();
        let ticks = texts(&root, "y-tick");
        assert_eq!(ticks.first(), Some(&"0"));
        assert!(ticks.contains(&"1"), "{ticks:?}");
        let reference = root
            .all()
            .into_iter()
            .find(|element| element.attribute("class") == Some("reference"))
            .unwrap();
        let y: f64 = reference.attribute("y1").unwrap().parse().unwrap();
        let line = root
            .all()
            .into_iter()
            .find(|element| element.attribute("class") == Some("series"))
            .map(points)
            .unwrap();
        // The 1.0 point sits on the reference line.
        assert!((line[0].1 - y).abs() < 0.1);
        assert_eq!(line[2].0, WIDTH - RIGHT);
    }

    #[test]
    fn single_points_empty_and_odd_values_still_make_valid_svg() {
        let mut plot = plot();
        plot.series = vec![Series {
            label: "one".into(),
            points: vec![(2, 5.0), (4, f64::NAN), (8, 0.0)],
        }];
        let root = xml::parse(&svg(&plot)).unwrap();
        let line = root
            .all()
            .into_iter()
            .find(|element| element.attribute("class") == Some("series"))
            .map(points)
            .unwrap();
        assert_eq!(line.len(), 1);
        plot.series.clear();
        assert!(xml::parse(&svg(&plot)).is_ok());
        plot.log_y = false;
        assert!(xml::parse(&svg(&plot)).is_ok());
    }

    #[test]
    fn the_xml_reader_refuses_broken_documents() {
        assert!(xml::parse("<svg><g></svg>").is_err());
        assert!(xml::parse("<svg><text>a < b</text></svg>").is_err());
        assert!(xml::parse("<svg a=1></svg>").is_err());
        assert!(xml::parse("<svg a=\"1\" a=\"2\"></svg>").is_err());
        assert!(xml::parse("<svg>&nope;</svg>").is_err());
        assert!(xml::parse("<svg></svg><svg></svg>").is_err());
        assert!(xml::parse("<svg>").is_err());
        let root =
            xml::parse("<?xml version=\"1.0\"?><svg><text k=\"&amp;\">x &lt; y</text></svg>")
                .unwrap();
        assert_eq!(root.children[0].text, "x < y");
        assert_eq!(root.children[0].attribute("k"), Some("&"));
    }

    #[test]
    fn suites_get_throughput_and_efficiency_plots() {
        let report = SuiteReport {
            environment: environment("scale", 2),
            records: vec![
                Record::new("compute/total", 1, "ops/s", vec![1e8]),
                Record::new("compute/per_core", 1, "ops/s", vec![1e8]),
                Record::new("compute/efficiency", 1, "x", vec![1.0]),
                Record::new("compute/total", 2, "ops/s", vec![2e8]),
                Record::new("compute/efficiency", 2, "x", vec![1.0]),
                Record::new("rpc/total", 2, "calls/s", vec![1e6]),
            ],
        };
        let plots = suite_plots(&report);
        let names: Vec<&str> = plots.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, vec!["scale-throughput.svg", "scale-efficiency.svg"]);
        let throughput = xml::parse(&plots[0].1).unwrap();
        assert_eq!(
            texts(&throughput, "legend"),
            vec!["compute (ops/s)", "rpc (calls/s)"]
        );
        let efficiency = xml::parse(&plots[1].1).unwrap();
        assert_eq!(texts(&efficiency, "legend"), vec!["compute"]);
        let mut boot = report;
        boot.records = vec![Record::new("boot_ms", 1, "ms", vec![3.0])];
        assert!(suite_plots(&boot).is_empty());
    }

    #[test]
    fn short_numbers_and_steps() {
        assert_eq!(short(1_500_000.0), "1.5M");
        assert_eq!(short(100.0), "100");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(2e9), "2G");
        assert_eq!(nice_step(1.1), 0.5);
        assert_eq!(nice_step(10.0), 2.0);
    }
}
