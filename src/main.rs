fn main() -> std::process::ExitCode {
    rustlive::cli::main()
}
