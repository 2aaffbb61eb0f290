//! TODO(owner): module encap, being written.
