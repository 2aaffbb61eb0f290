//! TODO(owner): module decap, being written.
