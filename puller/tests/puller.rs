//! The integration tests of farm-puller, one module per area.

mod puller {
    pub mod unpack;
}
