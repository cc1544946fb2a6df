//! `confluo hash-password`: prints the stored form of a password for the config's `[auth]`.

use std::io::{IsTerminal, Read, Write};
use std::num::NonZeroU32;
use std::process::ExitCode;

use clap::Args;
use confluo_server::{DEFAULT_ITERATIONS, PasswordHash};

/// `confluo hash-password` options.
#[derive(Args, Debug)]
pub struct HashArgs {
    /// PBKDF2 iterations: each AUTH costs one derivation of this many.
    #[arg(long, default_value_t = NonZeroU32::new(DEFAULT_ITERATIONS).expect("non-zero"))]
    iterations: NonZeroU32,
}

/// Reads the password from standard input (one line; a trailing newline is not part of it)
/// and prints its hash. The password is never an argument, which `ps` and shell histories
/// would show.
pub fn run(args: HashArgs) -> ExitCode {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        // No echo-free prompt without a terminal crate: say so, and how to avoid it.
        eprint!(
            "password (shown as typed; to hide it: read -rs P; printf %s \"$P\" | confluo hash-password): "
        );
        let _ = std::io::stderr().flush();
    }
    let mut input = Vec::new();
    if let Err(e) = stdin.lock().read_to_end(&mut input) {
        eprintln!("confluo hash-password: cannot read standard input: {e}");
        return ExitCode::FAILURE;
    }
    for end in [&b"\r\n"[..], b"\n"] {
        if let Some(stripped) = input.strip_suffix(end) {
            input.truncate(stripped.len());
            break;
        }
    }
    if input.is_empty() {
        eprintln!("confluo hash-password: empty password");
        return ExitCode::FAILURE;
    }
    println!("{}", PasswordHash::new(&input, args.iterations));
    ExitCode::SUCCESS
}
