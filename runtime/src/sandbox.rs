//! What boxes every container in: user-namespace id ranges and idmapped mounts
//! ([`userns`]), the seccomp filter ([`seccomp`]) installed by farm's own libcontainer
//! [`executor`] right before exec, Docker's capability set ([`capabilities`]) and Docker's
//! masked and read-only paths ([`paths`]), and views over /proc folders put in place after
//! create ([`procview`]).

pub mod capabilities;
pub mod executor;
pub mod paths;
pub mod procview;
pub mod seccomp;
pub mod userns;
