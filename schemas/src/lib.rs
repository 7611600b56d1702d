//! ferry-schemas
