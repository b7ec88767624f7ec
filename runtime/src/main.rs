fn main() -> std::process::ExitCode {
    reprise::cli::main()
}
