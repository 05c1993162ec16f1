//! FileStorage: byte-compatible Data.fs engine (spec filestorage.md).
