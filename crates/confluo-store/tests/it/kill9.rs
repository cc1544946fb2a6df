//! Crashes of a real process.
