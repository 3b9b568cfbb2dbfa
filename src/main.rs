//! The `dsf` binary: the program edge. It parses the command line, sets up logging
//! and hands over to the library; `dsf up` (a whole local cluster) is assembled here
//! from the library's node and balancer.

mod cli;

use clap::Parser;

/// mimalloc instead of glibc's allocator: under pipelined load `malloc`/`free`
/// (with glibc's chunk consolidation) were a fifth of a node's CPU on the Redis path
/// (BENCHMARKS.md, "Third pass").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cli::Cli::parse();
    std::process::exit(cli::run(cli));
}
