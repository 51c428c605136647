//! Criterion micro-benchmark results found on disk, for the report.

use std::path::Path;

/// One criterion benchmark's mean time per iteration.
#[derive(Debug)]
pub struct Bench {
    pub id: String,
    pub ns_per_iter: f64,
    /// Elements per iteration (its `Throughput::Elements`), if set.
    pub elements: Option<u64>,
}

/// Every `new` result under `dir` (criterion's output tree), sorted by id.
pub fn collect_criterion(dir: &Path) -> Vec<Bench> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                let bench = std::fs::read_to_string(path.join("benchmark.json"))
                    .ok()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
                let est = std::fs::read_to_string(path.join("estimates.json"))
                    .ok()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
                if let (Some(b), Some(e)) = (bench, est) {
                    out.push(Bench {
                        id: b["full_id"].as_str().unwrap_or("?").to_owned(),
                        ns_per_iter: e["mean"]["point_estimate"].as_f64().unwrap_or(f64::NAN),
                        elements: b["throughput"]["Elements"].as_u64(),
                    });
                }
            } else if path
                .file_name()
                .is_none_or(|n| n != "report" && n != "base")
            {
                stack.push(path);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Elements per second of benchmark `id`, if it ran.
pub fn bench_rate(benches: &[Bench], id: &str) -> Option<f64> {
    benches
        .iter()
        .find(|b| b.id == id)
        .map(|b| b.elements.unwrap_or(1) as f64 / (b.ns_per_iter * 1e-9))
}

#[cfg(test)]
mod tests {
    use super::{bench_rate, collect_criterion};

    #[test]
    fn reads_new_results_and_skips_base_and_report() {
        let dir = std::env::temp_dir().join(format!("loadtest-criterion-{}", std::process::id()));
        let write = |sub: &str, id: &str, ns: f64| {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).unwrap();
            let bench = format!(r#"{{"full_id":"{id}","throughput":{{"Elements":2}}}}"#);
            std::fs::write(d.join("benchmark.json"), bench).unwrap();
            let est = format!(r#"{{"mean":{{"point_estimate":{ns}}}}}"#);
            std::fs::write(d.join("estimates.json"), est).unwrap();
        };
        write("map/anonymous/new", "map/anonymous", 1000.0);
        write("map/anonymous/base", "map/anonymous (base)", 1.0);
        write("decode/report/new", "decode (report)", 1.0);
        write("decode/new", "decode", 500.0);
        let benches = collect_criterion(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let ids: Vec<&str> = benches.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["decode", "map/anonymous"]);
        let rate = bench_rate(&benches, "map/anonymous").unwrap();
        assert!((rate - 2e6).abs() < 1e-3, "{rate}");
        assert_eq!(bench_rate(&benches, "missing"), None);
    }
}
