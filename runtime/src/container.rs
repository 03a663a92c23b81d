//! create/start/wait/kill/delete through libcontainer; the only user of libcontainer.
