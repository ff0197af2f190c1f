//! The daemon's Prometheus metrics: counters, gauges and histograms in one process-wide
//! registry, rendered in the text exposition format (0.0.4) for `/metrics`.
//!
//! It is a few functions rather than a metrics library because satflow records a dozen
//! series: a recorder, an exporter and their concurrent maps cost the binary more than all of
//! its metrics put together. It must never take label values from outside input (an outcome,
//! a reason, an outbox kind are satflow's own words), so the registry stays a handful of
//! series, and never hold its lock across an await.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Histogram buckets, in seconds: from a millisecond (a webhook's answer) to five minutes (a
/// slow outbox handler).
const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

type Labels = Vec<(&'static str, String)>;

enum Series {
    Counter(u64),
    Gauge(f64),
    /// Counts per bucket (not cumulative; `render` adds them up), then the sum and the count.
    Histogram {
        buckets: [u64; BUCKETS.len()],
        sum: f64,
        count: u64,
    },
}

impl Series {
    fn kind(&self) -> &'static str {
        match self {
            Series::Counter(_) => "counter",
            Series::Gauge(_) => "gauge",
            Series::Histogram { .. } => "histogram",
        }
    }
}

static REGISTRY: Mutex<BTreeMap<(&'static str, Labels), Series>> = Mutex::new(BTreeMap::new());

fn with_series(
    name: &'static str,
    labels: &[(&'static str, &str)],
    update: impl FnOnce(&mut Series),
    new: fn() -> Series,
) {
    let key = (
        name,
        labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
    );
    // A panic elsewhere while holding the lock leaves plain numbers behind: still usable.
    let mut registry = REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    update(registry.entry(key).or_insert_with(new));
}

/// Adds one to the counter `name` with `labels`.
pub fn count(name: &'static str, labels: &[(&'static str, &str)]) {
    with_series(
        name,
        labels,
        |s| {
            if let Series::Counter(n) = s {
                *n = n.saturating_add(1);
            }
        },
        || Series::Counter(0),
    );
}

/// Sets the gauge `name` with `labels` to `value`.
pub fn set(name: &'static str, labels: &[(&'static str, &str)], value: f64) {
    with_series(
        name,
        labels,
        |s| {
            if let Series::Gauge(v) = s {
                *v = value;
            }
        },
        || Series::Gauge(0.0),
    );
}

/// Records one observation of `seconds` in the histogram `name` with `labels`.
pub fn observe(name: &'static str, labels: &[(&'static str, &str)], seconds: f64) {
    with_series(
        name,
        labels,
        |s| {
            if let Series::Histogram {
                buckets,
                sum,
                count,
            } = s
            {
                if let Some(i) = BUCKETS.iter().position(|le| seconds <= *le) {
                    buckets[i] = buckets[i].saturating_add(1);
                }
                *sum += seconds;
                *count = count.saturating_add(1);
            }
        },
        || Series::Histogram {
            buckets: [0; BUCKETS.len()],
            sum: 0.0,
            count: 0,
        },
    );
}

/// Every series, in the Prometheus text format: one `# TYPE` line per name, then its samples.
pub fn render() -> String {
    let registry = REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = String::new();
    let mut last_name = "";
    for ((name, labels), series) in registry.iter() {
        if *name != last_name {
            let _ = writeln!(out, "# TYPE {name} {}", series.kind());
            last_name = name;
        }
        match series {
            Series::Counter(n) => sample(&mut out, name, "", labels, None, &n.to_string()),
            Series::Gauge(v) => sample(&mut out, name, "", labels, None, &v.to_string()),
            Series::Histogram {
                buckets,
                sum,
                count,
            } => {
                let mut cumulative = 0u64;
                for (le, n) in BUCKETS.iter().zip(buckets) {
                    cumulative = cumulative.saturating_add(*n);
                    let le = le.to_string();
                    sample(
                        &mut out,
                        name,
                        "_bucket",
                        labels,
                        Some(&le),
                        &cumulative.to_string(),
                    );
                }
                sample(
                    &mut out,
                    name,
                    "_bucket",
                    labels,
                    Some("+Inf"),
                    &count.to_string(),
                );
                sample(&mut out, name, "_sum", labels, None, &sum.to_string());
                sample(&mut out, name, "_count", labels, None, &count.to_string());
            }
        }
    }
    out
}

/// One sample line: `name{labels} value`, label values escaped as the format asks.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &Labels,
    le: Option<&str>,
    value: &str,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Some(le) = le {
        pairs.push(("le", le));
    }
    if !pairs.is_empty() {
        out.push('{');
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let escaped = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{k}=\"{escaped}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `render()` that belong to `name` (other tests record into the same
    /// process-wide registry).
    fn lines_of(name: &str) -> Vec<String> {
        render()
            .lines()
            .filter(|l| l.starts_with(name) || l.starts_with(&format!("# TYPE {name} ")))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn counters_and_gauges_render_one_type_line_and_a_sample_per_label_set() {
        count("test_m_total", &[("outcome", "succeeded")]);
        count("test_m_total", &[("outcome", "succeeded")]);
        count("test_m_total", &[("outcome", "fa\"il\\ed")]);
        set("test_m_gauge", &[], 7.0);
        set("test_m_gauge", &[], 3.0);
        assert_eq!(
            lines_of("test_m_total"),
            [
                "# TYPE test_m_total counter",
                "test_m_total{outcome=\"fa\\\"il\\\\ed\"} 1",
                "test_m_total{outcome=\"succeeded\"} 2",
            ]
        );
        assert_eq!(
            lines_of("test_m_gauge"),
            ["# TYPE test_m_gauge gauge", "test_m_gauge 3"]
        );
    }

    #[test]
    fn a_histogram_counts_cumulatively_with_an_inf_bucket_its_sum_and_count() {
        observe("test_h_seconds", &[("kind", "http")], 0.003_906_25);
        observe("test_h_seconds", &[("kind", "http")], 0.25);
        observe("test_h_seconds", &[("kind", "http")], 1000.0);
        let lines = lines_of("test_h_seconds");
        assert_eq!(lines[0], "# TYPE test_h_seconds histogram");
        let bucket = |le: &str| {
            let prefix = format!("test_h_seconds_bucket{{kind=\"http\",le=\"{le}\"}} ");
            lines
                .iter()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no bucket {le} in {lines:?}"))
                .to_string()
        };
        assert_eq!(bucket("0.001"), "0");
        assert_eq!(bucket("0.005"), "1");
        assert_eq!(bucket("0.25"), "2");
        assert_eq!(bucket("300"), "2");
        assert_eq!(bucket("+Inf"), "3");
        assert!(
            lines.contains(&"test_h_seconds_count{kind=\"http\"} 3".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"test_h_seconds_sum{kind=\"http\"} 1000.25390625".to_string()),
            "{lines:?}"
        );
    }
}
