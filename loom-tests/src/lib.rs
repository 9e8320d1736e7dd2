//! Model checks of shmqueue under loom live in tests/ (run with --cfg shmqueue_loom).
