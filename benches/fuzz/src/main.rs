//! `earshot-fuzz <target> [--cases N | --seconds S]`: see the crate docs and README.

earshot_fuzz::tracking_allocator!();
earshot_fuzz::coverage_hooks!();

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(earshot_fuzz::main_with(&args, earshot_fuzz::targets::all()));
}
