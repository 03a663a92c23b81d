//! farm-scheduler-client: the worker side of the coordinator protocol.
//!
//! Not built yet: the worker comes after `farm run` and GPU support.
