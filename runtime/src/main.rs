fn main() -> std::process::ExitCode {
    // Wasmtime errors capture a Rust backtrace when `RUST_BACKTRACE` asks
    // for them, and a workflow's wait ends its activation with one: with
    // `RUST_BACKTRACE=1` set for panics, every durable step paid for a stack
    // walk (a quarter of chain10's throughput). `RUST_LIB_BACKTRACE` governs
    // those captures alone; panics still honour `RUST_BACKTRACE`.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    reprise::cli::main()
}
