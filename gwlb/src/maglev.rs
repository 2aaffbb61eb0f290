//! TODO(owner): module maglev, being written.
