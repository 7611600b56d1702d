//! ferry-tests: end-to-end tests that start real nodes
