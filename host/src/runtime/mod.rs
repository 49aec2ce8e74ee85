//! Container runtimes, reached by plugins only through WIT capabilities.
