//! Shared helpers for gwlb integration tests.
