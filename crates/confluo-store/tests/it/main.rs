//! Integration tests, one module per thing that breaks.

fn main() {}
