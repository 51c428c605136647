//! The PNG plot of delivered (and achieved) vs offered rate, drawn by
//! matplotlib from the sweep's numbers.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use crate::report::highest_lossless;
use crate::workload::RateResult;

const PLOT_SCRIPT: &str = r#"
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
data = json.load(open(sys.argv[1]))
offered = [r["offered"] for r in data["rates"]]
achieved = [r["achieved"] for r in data["rates"]]
delivered = [r["delivered"] for r in data["rates"]]
lost = [r["lost"] for r in data["rates"]]
cpu = [r["cpu"] for r in data["rates"]]
fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
top = max(offered + achieved + delivered) * 1.05 / 1000
ax.plot([0, top], [0, top], color="0.8", linestyle="--", label="delivered = offered")
ax.plot([o / 1000 for o in offered], [a / 1000 for a in achieved], marker="s", color="tab:gray", label="achieved by the workload")
ax.plot([o / 1000 for o in offered], [d / 1000 for d in delivered], marker="o", color="tab:blue", label="delivered to the OTLP receiver")
for o, d, l in zip(offered, delivered, lost):
    if l > 0:
        ax.annotate(f"lost {l / (o * data['seconds']) * 100:.0f}%", (o / 1000, d / 1000), textcoords="offset points", xytext=(4, -12), fontsize=8, color="tab:red")
if data.get("lossless"):
    ax.axvline(data["lossless"] / 1000, color="tab:green", linestyle=":", label=f"highest lossless: {data['lossless'] / 1000:.0f} k/s")
ax.set_xlabel("offered events/s (thousands)")
ax.set_ylabel("events/s (thousands)")
ax.set_xlim(0, top)
ax.set_ylim(0, top)
ax2 = ax.twinx()
ax2.plot([o / 1000 for o in offered], cpu, marker=".", color="tab:orange", alpha=0.7, label="agent CPU % (right)")
ax2.set_ylabel("agent CPU, % of one core")
ax2.set_ylim(0, max(cpu + [100]) * 1.1)
h1, l1 = ax.get_legend_handles_labels()
h2, l2 = ax2.get_legend_handles_labels()
ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
ax.set_title(data["title"], fontsize=10)
fig.tight_layout()
fig.savefig(sys.argv[2])
"#;

/// Draws `rates` into `path` (python3 + matplotlib); the data and script go to `dir`.
pub fn plot(
    rates: &[RateResult],
    seconds: u64,
    path: &Path,
    dir: &Path,
    title: &str,
) -> Result<(), String> {
    let lossless = highest_lossless(rates).map(|r| r.offered);
    let data = serde_json::json!({
        "title": title,
        "seconds": seconds,
        "lossless": lossless,
        "rates": rates.iter().map(|r| serde_json::json!({
            "offered": r.offered,
            "achieved": r.achieved,
            "delivered": r.delivered_rate,
            "lost": r.summary.lost,
            "cpu": r.cpu_pct,
        })).collect::<Vec<_>>(),
    });
    let json = dir.join("rates.json");
    std::fs::write(&json, data.to_string()).map_err(|e| e.to_string())?;
    let script = dir.join("plot.py");
    std::fs::write(&script, PLOT_SCRIPT).map_err(|e| e.to_string())?;
    let out = Command::new("python3")
        .arg(&script)
        .arg(&json)
        .arg(path)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let mut err = String::new();
        let _ = out.stderr.as_slice().read_to_string(&mut err);
        Err(format!(
            "plot failed (python3 with matplotlib needed): {err}"
        ))
    }
}
