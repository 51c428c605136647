//! The command line: `Options`, their defaults, and `--help`.

use std::path::PathBuf;

pub const USAGE: &str = "\
loadtest: mapwatch's end-to-end performance harness (root)

options (defaults in brackets):
  --agent PATH            mapwatch binary [target/release/mapwatch]
  --workload PATH         mmap-load binary [target/release/mmap-load]
  --rates LIST            offered events/s, comma separated
                          [5000,10000,25000,50000,75000,100000,150000,200000,300000,400000]
  --seconds N             workload duration per rate [10]
  --out PATH              Markdown report [docs/performance.md]
  --plot PATH             PNG plot [docs/performance.png]
  --criterion-dir PATH    criterion results to include [target/criterion]
  --overhead-pairs N      mmap+munmap pairs per overhead sample [200000]
  --overhead-samples N    samples per condition and repeat [5]
  --overhead-repeats N    repeats of the whole set of conditions [3]
  --profile-seconds N     perf record duration [6]
  --what-if-batch N       re-run the lossy rates with batch.max_export_batch_size = N
                          (0: don't) [4096]
  --no-what-if-serial     don't re-run the highest lossless and the lossy rates with
                          one export at a time (batch.max_concurrent_exports = 1)
  --pathcost PATH          pathcost binary, run under valgrind [target/release/pathcost]
  --skip-load | --skip-overhead | --skip-profile | --skip-pathcost
  --keep-temp             keep the work directory (perf.data, plot data)
";

#[derive(Debug)]
pub struct Options {
    pub agent: PathBuf,
    pub workload: PathBuf,
    pub rates: Vec<u64>,
    pub seconds: u64,
    pub out: PathBuf,
    pub plot: PathBuf,
    pub criterion_dir: PathBuf,
    pub overhead_pairs: u64,
    pub overhead_samples: usize,
    pub overhead_repeats: usize,
    pub profile_seconds: u64,
    pub skip_load: bool,
    pub skip_overhead: bool,
    pub skip_profile: bool,
    pub what_if_batch: usize,
    pub what_if_serial: bool,
    pub pathcost: PathBuf,
    pub skip_pathcost: bool,
    pub keep_temp: bool,
}

impl Default for Options {
    /// The defaults `USAGE` lists.
    fn default() -> Options {
        Options {
            agent: "target/release/mapwatch".into(),
            workload: "target/release/mmap-load".into(),
            rates: vec![
                5_000, 10_000, 25_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 400_000,
            ],
            seconds: 10,
            out: "docs/performance.md".into(),
            plot: "docs/performance.png".into(),
            criterion_dir: "target/criterion".into(),
            overhead_pairs: 200_000,
            overhead_samples: 5,
            overhead_repeats: 3,
            profile_seconds: 6,
            skip_load: false,
            skip_overhead: false,
            skip_profile: false,
            what_if_batch: 4096,
            what_if_serial: true,
            pathcost: "target/release/pathcost".into(),
            skip_pathcost: false,
            keep_temp: false,
        }
    }
}

impl Options {
    /// The process's arguments; `--help` prints `USAGE` and exits.
    pub fn parse() -> Result<Options, String> {
        Options::parse_from(std::env::args().skip(1))
    }

    fn parse_from(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut o = Options::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            let num = |v: String| v.parse::<u64>().map_err(|e| format!("{arg}: {e}"));
            match arg.as_str() {
                "--agent" => o.agent = value()?.into(),
                "--workload" => o.workload = value()?.into(),
                "--rates" => {
                    o.rates = value()?
                        .split(',')
                        .map(|r| r.trim().parse::<u64>().map_err(|e| format!("--rates: {e}")))
                        .collect::<Result<_, _>>()?;
                }
                "--seconds" => o.seconds = num(value()?)?,
                "--out" => o.out = value()?.into(),
                "--plot" => o.plot = value()?.into(),
                "--criterion-dir" => o.criterion_dir = value()?.into(),
                "--overhead-pairs" => o.overhead_pairs = num(value()?)?,
                "--overhead-samples" => o.overhead_samples = num(value()?)? as usize,
                "--overhead-repeats" => o.overhead_repeats = num(value()?)? as usize,
                "--profile-seconds" => o.profile_seconds = num(value()?)?,
                "--skip-load" => o.skip_load = true,
                "--skip-overhead" => o.skip_overhead = true,
                "--skip-profile" => o.skip_profile = true,
                "--what-if-batch" => o.what_if_batch = num(value()?)? as usize,
                "--no-what-if-serial" => o.what_if_serial = false,
                "--pathcost" => o.pathcost = value()?.into(),
                "--skip-pathcost" => o.skip_pathcost = true,
                "--keep-temp" => o.keep_temp = true,
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown option {other}\n{USAGE}")),
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::Options;

    fn parse(args: &[&str]) -> Result<Options, String> {
        Options::parse_from(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn defaults_and_overrides() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.rates.len(), 10);
        assert_eq!(o.what_if_batch, 4096);
        assert!(o.what_if_serial);
        let o = parse(&[
            "--rates",
            "1000, 2000",
            "--seconds",
            "3",
            "--no-what-if-serial",
        ])
        .unwrap();
        assert_eq!(o.rates, [1000, 2000]);
        assert_eq!(o.seconds, 3);
        assert!(!o.what_if_serial);
    }

    #[test]
    fn errors() {
        assert!(parse(&["--seconds"]).unwrap_err().contains("needs a value"));
        assert!(
            parse(&["--seconds", "x"])
                .unwrap_err()
                .starts_with("--seconds:")
        );
        assert!(
            parse(&["--bogus"])
                .unwrap_err()
                .starts_with("unknown option --bogus")
        );
    }
}
