//! TODO(owner): module parse, being written.
