//! The `satflow` command: everything happens in `satflow::cli`.

fn main() -> std::process::ExitCode {
    satflow::cli::main()
}
