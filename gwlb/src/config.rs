//! TODO(owner): module config, being written.
