//! The labs: measurements and fault runs of the whole system, apart from the fixtures they run on
//! (`leadership-e2e`). [`mod@bench`] is the benchmark behind `e2e/bench`; [`chaos`] is the fault checker
//! behind `e2e/chaos`, with its hostile unit.
#![forbid(unsafe_code)]

pub mod bench;
pub mod chaos;
