//! The programs `scripts/otel-stack.sh` builds from Go modules: the
//! OpenTelemetry Collector, Jaeger, VictoriaLogs and Helm.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The programs `scripts/otel-stack.sh` built.
pub struct Stack {
    pub otelcol: PathBuf,
    pub jaeger: PathBuf,
    pub victoria_logs: PathBuf,
    pub helm: PathBuf,
}

/// The stack, built by the script if it is not yet (the script skips what
/// is in its cache). `None` after printing `SKIP:` when Go is missing
/// outside CI; in CI that is a failure, as is any failed build.
pub fn stack() -> Option<&'static Stack> {
    static STACK: OnceLock<Result<Stack, String>> = OnceLock::new();
    let stack = STACK.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/otel-stack.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("--paths")
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/otel-stack.sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ci = std::env::var("CI").as_deref() == Ok("true");
        match out.status.code() {
            Some(0) => {}
            Some(3) if !ci => return Err(stderr.trim().to_owned()),
            _ => panic!("{} failed ({}):\n{stderr}", script.display(), out.status),
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("no {name}= in the script's output:\n{stdout}"))
        };
        Ok(Stack {
            otelcol: path("otelcol"),
            jaeger: path("jaeger"),
            victoria_logs: path("victoria-logs"),
            helm: path("helm"),
        })
    });
    match stack {
        Ok(stack) => Some(stack),
        Err(reason) => {
            println!("SKIP: the collector stack is not built and cannot be: {reason}");
            None
        }
    }
}
