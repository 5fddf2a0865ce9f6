//! `roost-desktop`: starts the app (see the library's docs).

#![forbid(unsafe_code)]
// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    match roost_desktop::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roost-desktop: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
