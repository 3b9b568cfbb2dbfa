//! The `dsf` binary: parses the command line and hands over to the library.

use clap::Parser;

fn main() {
    let cli = dsf::cli::Cli::parse();
    std::process::exit(dsf::cli::run(cli));
}
