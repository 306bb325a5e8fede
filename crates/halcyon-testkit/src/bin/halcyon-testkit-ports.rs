//! Holds port blocks for the allocator's two-process test: `halcyon-testkit-ports DIRECTORY LOW
//! HIGH LEN COUNT` takes COUNT blocks of LEN ports from the allocator over LOW..HIGH with its
//! lock files in DIRECTORY, prints `block BASE LEN` for each and then `ready`, and holds them
//! until its standard input closes. Exit codes: 0 done, 1 a block could not be had, 2 bad
//! arguments.

use std::io::Read;
use std::process::ExitCode;

use halcyon_testkit::PortAllocator;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [directory, low, high, len, count] = args.as_slice() else {
        eprintln!("usage: halcyon-testkit-ports DIRECTORY LOW HIGH LEN COUNT");
        return ExitCode::from(2);
    };
    let numbers: Result<Vec<u16>, _> = [low, high, len, count]
        .iter()
        .map(|s| s.parse::<u16>())
        .collect();
    let Ok(&[low, high, len, count]) = numbers.as_deref() else {
        eprintln!("LOW, HIGH, LEN and COUNT are numbers from 0 to 65535");
        return ExitCode::from(2);
    };
    let allocator = PortAllocator::with_directory(directory, low, high);
    let mut held = Vec::new();
    for _ in 0..count {
        match allocator.allocate(len) {
            Ok(block) => {
                println!("block {} {}", block.base(), block.len());
                held.push(block);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    }
    println!("ready");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(held);
    ExitCode::SUCCESS
}
