//! `zeo serve`: the mio event loop, connections, TLS, dispatch of protocol requests to
//! storages, the commit-lock queue and invalidation broadcast. Only this module
//! touches sockets.
