//! The `dsf` binary: the program edge. It parses the command line, sets up logging
//! and hands over to the library; `dsf up` (a whole local cluster) is assembled here
//! from the library's node and balancer.

mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    std::process::exit(cli::run(cli));
}
