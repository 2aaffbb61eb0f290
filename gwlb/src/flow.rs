//! TODO(owner): module flow, being written.
