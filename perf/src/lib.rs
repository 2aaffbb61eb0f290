//! gwlb benchmark harness.
