//! Cost per event in instructions and heap allocations: `pathcost` under
//! valgrind (callgrind, dhat), and the split between our stages and the SDK's.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::options::Options;

/// Instructions and heap allocations per event of one stage (valgrind).
#[derive(Debug, Clone)]
pub struct StageCost {
    pub stage: &'static str,
    pub kind: &'static str,
    pub instructions: f64,
    pub allocations: f64,
}

/// Instructions executed by `bin ARGS` under callgrind (its out file goes to `dir`).
fn callgrind_instructions(bin: &Path, args: &[String], dir: &Path) -> Option<u64> {
    let out = dir.join("callgrind.out");
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|l| l.strip_prefix("summary:").or(l.strip_prefix("totals:")))
        .and_then(|v| v.trim().parse().ok())
}

/// Heap blocks allocated by `bin ARGS` under dhat.
fn dhat_blocks(bin: &Path, args: &[String]) -> Option<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=dhat", "--dhat-out-file=/dev/null"])
        .arg(bin)
        .args(args)
        .stdout(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("Total:"))?;
    let (_, blocks) = line.split_once(" in ")?;
    blocks
        .split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()
}

/// Runs `pathcost` under callgrind and dhat at two iteration counts; the
/// difference over the extra events is the cost per event, start-up excluded.
pub fn run_pathcost(o: &Options, dir: &Path) -> Result<Vec<StageCost>, String> {
    if !o.pathcost.exists() {
        return Err(format!("{} not found", o.pathcost.display()));
    }
    let mut out = Vec::new();
    // (mode, iterations low, high, events per iteration)
    let modes: [(&'static str, &'static str, u64, u64, u64); 5] = [
        (
            "encoder",
            "now: decode + map into the agent's OTLP encoder, into a batch",
            1_000,
            11_000,
            2,
        ),
        (
            "request",
            "now: the batch written as request bytes (per record of a 512 batch)",
            1,
            6,
            512,
        ),
        (
            "map",
            "before: decode + map into the SDK's SdkLogRecord (ours)",
            1_000,
            11_000,
            2,
        ),
        (
            "emit",
            "before: ... + emit through the SDK's BatchLogProcessor (no-op exporter)",
            1_000,
            11_000,
            2,
        ),
        (
            "encode",
            "before: OTLP transform + prost encoding (opentelemetry-proto, per record of a 512 batch)",
            1,
            6,
            512,
        ),
    ];
    for kind in ["anonymous", "file"] {
        for (mode, stage, lo, hi, per) in modes {
            eprintln!("loadtest: valgrind: pathcost {mode} {kind}");
            let args = |n: u64| vec![mode.to_owned(), kind.to_owned(), n.to_string()];
            let measure = |n: u64| -> Option<(u64, u64)> {
                Some((
                    callgrind_instructions(&o.pathcost, &args(n), dir)?,
                    dhat_blocks(&o.pathcost, &args(n))?,
                ))
            };
            let (Some((i0, b0)), Some((i1, b1))) = (measure(lo), measure(hi)) else {
                return Err("valgrind failed (Debian package valgrind)".into());
            };
            let events = ((hi - lo) * per) as f64;
            out.push(StageCost {
                stage,
                kind: if kind == "file" {
                    "file-backed"
                } else {
                    "anonymous"
                },
                instructions: i1.saturating_sub(i0) as f64 / events,
                allocations: b1.saturating_sub(b0) as f64 / events,
            });
        }
    }
    Ok(out)
}

/// The cost of the stage whose label starts with `stage_prefix`, for `kind` records.
fn cost<'a>(costs: &'a [StageCost], stage_prefix: &str, kind: &str) -> Option<&'a StageCost> {
    costs
        .iter()
        .find(|c| c.stage.starts_with(stage_prefix) && c.kind == kind)
}

/// The SDK path the agent used before its own encoder: (decode + map,
/// SDK emit, OTLP encode) instructions per event, and the first's share.
pub fn split(costs: &[StageCost], kind: &str) -> Option<(f64, f64, f64, f64)> {
    let ours = cost(costs, "before: decode", kind)?.instructions;
    let emit = cost(costs, "before: ...", kind)?.instructions - ours;
    let encode = cost(costs, "before: OTLP", kind)?.instructions;
    Some((ours, emit, encode, ours / (ours + emit + encode)))
}

/// The agent's path now: (decode + map + encode into a batch, request
/// bytes) instructions per event.
pub fn now(costs: &[StageCost], kind: &str) -> Option<(f64, f64)> {
    Some((
        cost(costs, "now: decode", kind)?.instructions,
        cost(costs, "now: the batch", kind)?.instructions,
    ))
}

#[cfg(test)]
mod tests {
    use super::{StageCost, split};

    #[test]
    fn splits_ours_from_the_sdk() {
        let c = |stage, instructions| StageCost {
            stage,
            kind: "anonymous",
            instructions,
            allocations: 0.0,
        };
        let costs = [
            c("now: decode + map into the encoder", 700.0),
            c("now: the batch written", 50.0),
            c("before: decode + map (ours)", 1000.0),
            c("before: ... + emit", 3000.0),
            c("before: OTLP transform", 6000.0),
        ];
        assert_eq!(
            split(&costs, "anonymous"),
            Some((1000.0, 2000.0, 6000.0, 1000.0 / 9000.0))
        );
        assert_eq!(split(&costs, "file-backed"), None);
        assert_eq!(super::now(&costs, "anonymous"), Some((700.0, 50.0)));
    }
}
