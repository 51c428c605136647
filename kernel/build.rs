//! Builds the BPF object with clang and checks the record layout shared with C.
//!
//! Two outputs in OUT_DIR:
//! - `mapwatch.bpf.o`: every BPF program, CO-RE relocatable, embedded by `lib.rs`;
//! - `layout.rs`: sizes, field offsets, the sum of field sizes and constant values
//!   of `events.h` as the C compiler sees them; `abi.rs` asserts at compile time
//!   that its mirrors agree and that no struct has implicit padding.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str = "install the BPF toolchain: apt-get install clang llvm libbpf-dev";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf_dir = Path::new("src/bpf");
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    println!("cargo:rerun-if-env-changed=CLANG");

    build_bpf_object(bpf_dir, &out);
    generate_layout(bpf_dir, &out);
}

/// The Debian multiarch include directory, where `asm/types.h` lives; clang's
/// BPF target does not search it by itself.
fn multiarch_include() -> String {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let triple = match arch.as_str() {
        "aarch64" => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    format!("/usr/include/{triple}")
}

fn target_arch_define() -> &'static str {
    match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "-D__TARGET_ARCH_arm64",
        _ => "-D__TARGET_ARCH_x86",
    }
}

fn build_bpf_object(bpf_dir: &Path, out: &Path) {
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let object = out.join("mapwatch.bpf.o");
    let status = Command::new(&clang)
        .args(["-target", "bpf", "-g", "-O2", "-Wall", "-Werror"])
        .arg(target_arch_define())
        .arg(format!("-I{}", multiarch_include()))
        .arg("-c")
        .arg(bpf_dir.join("mapwatch.bpf.c"))
        .arg("-o")
        .arg(&object)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run `{clang}` to build the BPF programs ({e}); {INSTALL_HINT}")
        });
    assert!(
        status.success(),
        "`{clang}` failed to build src/bpf/mapwatch.bpf.c (see the errors above); if headers such as \
         <bpf/bpf_helpers.h> are missing, {INSTALL_HINT}"
    );
}

/// Every struct field and constant that `abi.rs` mirrors.
const STRUCTS: &[(&str, &[&str])] = &[
    (
        "mw_header",
        &[
            "kind",
            "backend",
            "size",
            "ktime_ns",
            "tgid",
            "tid",
            "ppid",
            "uid",
            "gid",
            "euid",
            "egid",
            "pid_ns",
            "mnt_ns",
            "exe_dev",
            "cgroup_id",
            "process_start_ns",
            "exe_inode",
            "exe_ctime_ns",
            "comm",
        ],
    ),
    (
        "mw_file",
        &[
            "inode",
            "ctime_ns",
            "dev",
            "open_flags",
            "mode",
            "path_len",
            "flags",
        ],
    ),
    (
        "mw_do_mmap",
        &[
            "hdr",
            "addr",
            "len",
            "prot",
            "mmap_flags",
            "pgoff",
            "start_ns",
            "error",
            "fd",
            "file_source",
            "call_flags",
            "_pad0",
            "file",
            "path",
        ],
    ),
    (
        "mw_filter_settings",
        &["flags", "rate_per_sec", "prot_any", "rate_burst", "_pad0"],
    ),
    ("mw_path_prefix", &["len", "list", "bytes"]),
    ("mw_enforce_settings", &["deny", "flags"]),
    ("mw_exe_key", &["inode", "dev", "_pad0"]),
    ("mw_process_loss", &["lost", "comm"]),
    (
        "mw_security_mmap_file",
        &[
            "hdr",
            "prot",
            "mmap_flags",
            "verdict",
            "has_verdict",
            "fd",
            "file_source",
            "call_flags",
            "enforced",
            "action",
            "_pad0",
            "file",
            "path",
        ],
    ),
    (
        "mw_security_file_mprotect",
        &[
            "hdr",
            "start",
            "len",
            "reqprot",
            "prot",
            "vma_start",
            "vma_end",
            "prev_prot",
            "pkey",
            "result",
            "has_result",
            "file_source",
            "call_flags",
            "enforced",
            "action",
            "_pad0",
            "file",
            "path",
        ],
    ),
];

const CONSTANTS: &[&str] = &[
    "MW_COMM_LEN",
    "MW_PATH_MAX",
    "MW_EVENT_DO_MMAP",
    "MW_EVENT_SECURITY_MMAP_FILE",
    "MW_EVENT_PROCESS_EXIT",
    "MW_EVENT_PROCESS_EXEC",
    "MW_BACKEND_SYSCALL_TRACEPOINT",
    "MW_BACKEND_KPROBE",
    "MW_BACKEND_FEXIT",
    "MW_BACKEND_LSM",
    "MW_FILE_PRESENT",
    "MW_FILE_PATH_TRUNCATED",
    "MW_FILE_DELETED",
    "MW_FILE_OPEN_FOR_WRITE",
    "MW_FILE_DIR_WORLD_WRITABLE",
    "MW_FILE_ANON_MEMORY",
    "MW_FILE_PATH_CHROOT",
    "MW_FILE_SOURCE_NONE",
    "MW_FILE_SOURCE_ARGUMENT",
    "MW_FILE_SOURCE_VMA",
    "MW_FILE_SOURCE_CALL_FAILED",
    "MW_FILE_SOURCE_VMA_BUSY",
    "MW_FILE_SOURCE_VMA_MISSING",
    "MW_FILE_SOURCE_VMA_MISMATCH",
    "MW_FILE_SOURCE_LOOKUP_FAILED",
    "MW_CALL_FD",
    "MW_CALL_EXEC",
    "MW_CALL_IMPLIED_EXEC",
    "MW_CALL_BRK",
    "MW_CALL_SHMAT",
    "MW_CALL_FOUND_AT_START",
    "MW_BACKEND_PROC_MAPS",
    "MW_COUNTER_DO_MMAP_SENT",
    "MW_COUNTER_DO_MMAP_RINGBUF_FULL",
    "MW_COUNTER_SECURITY_SENT",
    "MW_COUNTER_SECURITY_RINGBUF_FULL",
    "MW_COUNTER_PENDING_MAP_FULL",
    "MW_COUNTER_PENDING_MISSING",
    "MW_COUNTER_FILTERED",
    "MW_COUNTER_RATE_LIMITED",
    "MW_COUNTER_EXIT_SENT",
    "MW_COUNTER_EXIT_RINGBUF_FULL",
    "MW_COUNTER_VMA_BUSY",
    "MW_COUNTER_VMA_MISSING",
    "MW_COUNTER_VMA_MISMATCH",
    "MW_COUNTER_VMA_LOOKUP_FAILED",
    "MW_COUNTER_SECURITY_PENDING_MAP_FULL",
    "MW_COUNTER_EXEC_SENT",
    "MW_COUNTER_EXEC_RINGBUF_FULL",
    "MW_COUNTER_COMPAT_MPROTECT_UNWATCHED",
    "MW_COUNTER_MAX",
    "MW_FILTER_INCLUDE_PIDS",
    "MW_FILTER_INCLUDE_COMMS",
    "MW_FILTER_INCLUDE_UIDS",
    "MW_FILTER_INCLUDE_CGROUPS",
    "MW_FILTER_INCLUDE_PREFIXES",
    "MW_FILTER_FILE_ONLY",
    "MW_FILTER_ANON_ONLY",
    "MW_LIST_INCLUDE",
    "MW_LIST_EXCLUDE",
    "MW_PREFIX_MAX",
    "MW_PREFIX_LEN",
    "MW_EVENT_SECURITY_FILE_MPROTECT",
    "MW_COUNTER_MPROTECT_SENT",
    "MW_COUNTER_MPROTECT_RINGBUF_FULL",
    "MW_COUNTER_MPROTECT_PENDING_MAP_FULL",
    "MW_COUNTER_WX_HISTORY_FULL",
    "MW_COUNTER_WX_HISTORY_EVICTED",
    "MW_COUNTER_SCRATCH_MISSING",
    "MW_COUNTER_BRK_PENDING_MAP_FULL",
    "MW_MPROT_RANGE",
    "MW_MPROT_VMA",
    "MW_MPROT_PKEY_CALL",
    "MW_MPROT_WAS_WRITABLE",
    "MW_MPROT_HISTORY_INCOMPLETE",
    "MW_MPROT_SPAN",
    "MW_MPROT_SPAN_ANON",
    "MW_MPROT_SPAN_UNCHECKED",
    "MW_REASON_WRITE_EXECUTE",
    "MW_REASON_EXECUTE_ANONYMOUS",
    "MW_REASON_EXECUTE_MEMFD",
    "MW_REASON_EXECUTE_DELETED_FILE",
    "MW_REASON_EXECUTE_FROM_WORLD_WRITABLE_DIR",
    "MW_REASON_EXECUTE_FILE_OPEN_FOR_WRITE",
    "MW_REASON_WRITE_THEN_EXECUTE",
    "MW_REASON_EXECUTE_THEN_WRITE",
    "MW_REASON_EXECUTE_UNVERIFIED",
    "MW_REASON_WRITE_HISTORY_INCOMPLETE",
    "MW_REASON_COUNT",
    "MW_ACTION_NONE",
    "MW_ACTION_DENIED",
    "MW_ACTION_WOULD_DENY",
    "MW_ACTION_EXEMPT",
    "MW_ACTION_COUNT",
    "MW_ENFORCE_DRY_RUN",
    "MW_ENFORCE_SCOPE_CGROUPS",
    "MW_ENFORCE_INCLUDE_INIT",
];

/// Compiles and runs a small host C program that prints the layout of
/// `events.h` as Rust constants.
fn generate_layout(bpf_dir: &Path, out: &Path) {
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"events.h\"\nint main(void) {\n",
    );
    for (name, fields) in STRUCTS {
        let upper = name.to_uppercase();
        c.push_str(&format!(
            "printf(\"pub const SIZEOF_{upper}: usize = %zu;\\n\", sizeof(struct {name}));\n"
        ));
        for field in *fields {
            let field_upper = field.to_uppercase();
            c.push_str(&format!(
                "printf(\"pub const {upper}_{field_upper}: usize = %zu;\\n\", offsetof(struct {name}, {field}));\n"
            ));
        }
        // The sum of the listed fields' sizes: equal to the struct's size only
        // when it has no implicit padding (and no field is missing from the list).
        let sum: Vec<String> = fields
            .iter()
            .map(|field| format!("sizeof(((struct {name} *)0)->{field})"))
            .collect();
        c.push_str(&format!(
            "printf(\"pub const FIELDS_OF_{upper}: usize = %zu;\\n\", (size_t)({}));\n",
            sum.join(" + ")
        ));
    }
    for constant in CONSTANTS {
        c.push_str(&format!(
            "printf(\"pub const {constant}: u64 = %llu;\\n\", (unsigned long long)({constant}));\n"
        ));
    }
    c.push_str("return 0;\n}\n");

    let source = out.join("layout.c");
    let binary = out.join("layout");
    std::fs::write(&source, c).expect("write layout.c");
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .arg(format!("-I{}", bpf_dir.display()))
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}` ({e}); apt-get install gcc"));
    assert!(
        status.success(),
        "`{cc}` failed to compile the layout probe"
    );
    let output = Command::new(&binary)
        .output()
        .expect("run the layout probe");
    assert!(output.status.success(), "the layout probe failed");
    std::fs::write(out.join("layout.rs"), output.stdout).expect("write layout.rs");
}
