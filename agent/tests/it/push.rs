//! Registry push tests (being written).
