//! security_file_mprotect and the W->X detection, with real workloads (see
//! `mprotect_cases/mod.rs`); the VM matrix runs this suite under every
//! backend of the event.

mod common;
mod mprotect_cases;

use mprotect_cases as cases;

#[test]
fn rw_to_rx_injection_warns() {
    cases::rw_to_rx_injection_warns();
}

#[test]
fn pkey_mprotect_injection_warns() {
    cases::pkey_mprotect_injection_warns();
}

#[test]
fn file_mapping_names_the_file() {
    cases::file_mapping_names_the_file();
}

#[test]
fn failed_mprotect_reports_the_error_without_false_alarm() {
    cases::failed_mprotect_reports_the_error_without_false_alarm();
}

#[test]
fn second_thread_doing_the_mprotect_is_seen() {
    cases::second_thread_doing_the_mprotect_is_seen();
}

#[test]
fn sub_range_and_rw_r_rx_are_seen() {
    cases::sub_range_and_rw_r_rx_are_seen();
}

#[test]
fn unmap_and_remap_in_between_is_seen() {
    cases::unmap_and_remap_in_between_is_seen();
}

#[test]
fn mremap_in_between_is_seen() {
    cases::mremap_in_between_is_seen();
}

#[test]
fn rx_to_rwx_warns() {
    cases::rx_to_rwx_warns();
}

#[test]
fn benign_programs_are_quiet() {
    cases::benign_programs_are_quiet();
}
