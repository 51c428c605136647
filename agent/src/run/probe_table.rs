//! `mapwatch probe`: what each backend of each hook does on this host.

use crate::host::preflight;
use crate::kernel;

/// `mapwatch probe`: tries every backend of every event and prints a table
/// of what works on this host and why the rest does not.
pub fn probe() -> anyhow::Result<()> {
    preflight::check()?;
    let rows = kernel::probe_all(std::process::id())?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("kernel {}", kernel.trim());
    println!("{:<20} {:<20} result", "event", "backend");
    for row in &rows {
        let result = match &row.result {
            Ok(()) => "works".to_owned(),
            Err(reason) => format!("no: {reason}"),
        };
        println!(
            "{:<20} {:<20} {result}",
            row.event.name(),
            row.backend.name()
        );
    }
    for event in kernel::Hook::ALL {
        let chosen = rows.iter().find(|r| r.event == event && r.result.is_ok());
        match chosen {
            Some(row) => println!("auto selects {} for {}", row.backend.name(), event.name()),
            None => println!("no backend can report {} here", event.name()),
        }
    }
    Ok(())
}
