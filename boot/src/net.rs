//! Sockets for applications, shaped like `std::net`: every call goes to the net core by
//! message and blocks only the calling thread (see the `net` crate).

pub use net::{
    Error, Ipv4Addr, Result, SocketAddrV4, TcpListener, TcpStream, UdpSocket, MAX_DATAGRAM,
};
