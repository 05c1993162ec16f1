//! Blob directory layouts (bushy, lawn) and the `.layout` marker; file naming
//! `<oid dir>/<tid_repr>.blob` (spec filestorage.md §12).
