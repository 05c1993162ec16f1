//! MappingStorage: the in-memory engine with FileStorage's semantics.
