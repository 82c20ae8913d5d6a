//! `clawhive`: see the library crate for the subcommands.

fn main() -> std::process::ExitCode {
    clawhive::main_entry()
}
