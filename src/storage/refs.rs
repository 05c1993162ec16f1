//! Persistent-reference scanner over object pickles (ZODB `referencesf`), for pack GC.
