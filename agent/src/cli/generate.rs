//! Shell completions and the manual page, generated from the command line
//! definition ([`crate::cli::Cli`]), so they cannot drift from `--help`.
//!
//! `mapwatch completions <SHELL>` and `mapwatch manpage` print them; they
//! read no configuration and need no privileges, so packaging scripts can
//! run them on the build machine.
//!
//! ```
//! let mut page = Vec::new();
//! mapwatch::cli::generate::manpage(&mut page).unwrap();
//! let page = String::from_utf8(page).unwrap();
//! assert!(page.contains("otlp\\-endpoint"));
//!
//! let mut script = Vec::new();
//! mapwatch::cli::generate::completions(clap_complete::Shell::Bash, &mut script).unwrap();
//! assert!(String::from_utf8(script).unwrap().contains("--otlp-endpoint"));
//! ```

use std::io::{self, Write};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The command the completions complete: the installed binary's name.
pub const BIN_NAME: &str = "mapwatch";

/// Writes the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = Cli::command();
    // clap_complete panics when its writer fails; render into memory first
    // so a closed pipe is an error, not a panic.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN_NAME, &mut script);
    out.write_all(&script)
}

/// Sections clap does not know about, appended to the generated page (roff).
const EXTRA_SECTIONS: &str = r#".SH FILES
.TP
\fI/etc/mapwatch/mapwatch.toml\fR
The configuration file read when neither \fB\-\-config\fR nor \fBMAPWATCH_CONFIG\fR names one;
optional. Every key, its meaning and default are documented in the example shipped as
\fI/usr/share/doc/mapwatch/examples/mapwatch.toml\fR (Debian package).
.TP
\fI/sys/kernel/btf/vmlinux\fR
The kernel's type information, needed to load the BPF programs (CO\-RE).
.TP
\fI/sys/kernel/tracing\fR
tracefs, where syscall tracepoints are found; mounted by mapwatch if it is missing.
.SH ENVIRONMENT
Settings come from, lowest precedence first: built\-in defaults, the TOML file, the standard
OpenTelemetry variables, \fBMAPWATCH_*\fR variables, then command\-line flags.
.TP
\fBMAPWATCH_CONFIG\fR
Path of the TOML configuration file (beaten by \fB\-\-config\fR).
.TP
\fBMAPWATCH_LOG\fR
Filter of the agent's own diagnostics on stderr, as \fBRUST_LOG\fR (default: info).
.TP
\fBMAPWATCH_\fR\fISECTION\fR\fB__\fR\fIKEY\fR
Any configuration key, with two underscores between nested keys, e.g.
\fBMAPWATCH_OTLP__ENDPOINT\fR or \fBMAPWATCH_BATCH__MAX_QUEUE_SIZE\fR.
.TP
\fBOTEL_EXPORTER_OTLP_ENDPOINT\fR, \fBOTEL_EXPORTER_OTLP_LOGS_ENDPOINT\fR, \fBOTEL_EXPORTER_OTLP_PROTOCOL\fR, \fBOTEL_EXPORTER_OTLP_HEADERS\fR, \fBOTEL_EXPORTER_OTLP_TIMEOUT\fR, \fBOTEL_EXPORTER_OTLP_COMPRESSION\fR
Where and how records are exported, as in any OpenTelemetry SDK; a \fBLOGS_\fR variable beats
its generic counterpart.
.TP
\fBOTEL_SERVICE_NAME\fR, \fBOTEL_RESOURCE_ATTRIBUTES\fR, \fBOTEL_SDK_DISABLED\fR, \fBOTEL_BLRP_*\fR
The resource, export switch and batching, as in any OpenTelemetry SDK.
.SH EXIT STATUS
.TP
\fB0\fR
Stopped by SIGINT or SIGTERM after flushing.
.TP
\fB1\fR
The host cannot run mapwatch (privileges, BTF, tracefs) or a probe failed to load.
.TP
\fB2\fR
A configuration error; one line on stderr names the key, its source, the value and what is
allowed.
.SH SEE ALSO
\fBbpf\fR(2), \fBmmap\fR(2), \fBcapabilities\fR(7)
"#;

/// Writes the manual page, section 1, in roff.
pub fn manpage(out: &mut dyn Write) -> io::Result<()> {
    clap_mangen::Man::new(Cli::command())
        .manual("mapwatch manual")
        .render(out)?;
    out.write_all(EXTRA_SECTIONS.as_bytes())
}

/// Runs `write` on a locked stdout and turns the result into an exit status:
/// success, success when the reader went away (`| head`), 1 otherwise.
pub fn to_stdout(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> ExitCode {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mapwatch: cannot write to stdout: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_flags() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let mut script = Vec::new();
            completions(shell, &mut script).unwrap();
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("otlp-endpoint"), "{shell}: {script}");
            assert!(script.contains(BIN_NAME), "{shell}");
        }
    }

    #[test]
    fn the_generators_stay_out_of_the_help() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("probe"), "{help}");
        assert!(!help.contains("manpage"), "{help}");
        assert!(!help.contains("completions"), "{help}");
    }

    #[test]
    fn manpage_has_the_flags_and_the_extra_sections() {
        let mut page = Vec::new();
        manpage(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(
            page.starts_with(".ie \\n(.g .ds Aq"),
            "roff preamble: {page}"
        );
        assert!(page.contains(".TH mapwatch 1"), "{page}");
        for needle in [
            "\\-\\-otlp\\-endpoint",
            "\\-\\-config",
            ".SH FILES",
            ".SH ENVIRONMENT",
            ".SH EXIT STATUS",
        ] {
            assert!(page.contains(needle), "missing {needle}");
        }
        assert!(
            !page.contains("manpage"),
            "hidden subcommands stay out of the page"
        );
    }

    #[test]
    fn a_closed_reader_is_not_a_failure() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert!(manpage(&mut Closed).is_err());
        assert!(completions(Shell::Bash, &mut Closed).is_err());
    }
}
