//! Wire types generated from `proto/clawhive/v1`. They stay at the edges:
//! services convert them to `clawhive-core` domain types with `From`/`TryFrom`.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("clawhive.v1");
}

/// Encoded `FileDescriptorSet` for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("clawhive_descriptor");

pub use prost::Message;
