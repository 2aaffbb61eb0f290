//! TODO(owner): module flow_table, being written.
