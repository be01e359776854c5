//! The sockets the network stage opens itself (DHCP before the interface has an address) and
//! waiting on them. Plain TCP/UDP goes through `std::net`; rtnetlink through `net::rtnl`.

use rustix::event::{PollFd, PollFlags, Timespec};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// A UDP socket on `0.0.0.0:port` that sends and receives on `iface` only
/// (`SO_BINDTODEVICE`), with `SO_REUSEADDR` (one per interface, all on the same port) and
/// `SO_BROADCAST`: what a DHCP client needs before its interface has an address.
pub fn udp_on_device(iface: &str, port: u16) -> io::Result<UdpSocket> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_socket_broadcast(&fd, true)?;
    // rustix has no SO_BINDTODEVICE; socket2 sets it on the same fd.
    socket2::SockRef::from(&fd).bind_device(Some(iface.as_bytes()))?;
    rustix::net::bind(&fd, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
    Ok(UdpSocket::from(fd))
}

/// Waits until one of `fds` is readable, at most `timeout`: which ones are. A poll that fails
/// or is interrupted by a signal counts as none ready.
pub fn readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Vec<bool> {
    let mut polls: Vec<PollFd<'_>> = fds.iter().map(|f| PollFd::new(f, PollFlags::IN)).collect();
    let timeout = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    });
    match rustix::event::poll(&mut polls, Some(&timeout)) {
        Ok(n) if n > 0 => polls
            .iter()
            .map(|p| p.revents().contains(PollFlags::IN))
            .collect(),
        _ => vec![false; fds.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn device_sockets_receive_on_their_device_only() {
        if !crate::support::testing::is_root() {
            crate::support::testing::skip("SO_BINDTODEVICE needs CAP_NET_RAW on older kernels");
            return;
        }
        let s = udp_on_device("lo", 0).unwrap();
        assert!(s.broadcast().unwrap());
        let port = s.local_addr().unwrap().port();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 4];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(s.recv_from(&mut buf).unwrap().0, 1);
        let e = udp_on_device("no-such-if0", 0).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::NODEV.raw_os_error())
        );
    }

    #[test]
    fn readable_says_which() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let t = std::time::Instant::now();
        let fds = [a.as_fd(), b.as_fd()];
        assert_eq!(readable(&fds, Duration::from_millis(50)), [false, false]);
        assert!(t.elapsed() >= Duration::from_millis(50));
        b.send_to(b"x", b.local_addr().unwrap()).unwrap();
        assert_eq!(readable(&fds, Duration::from_secs(5)), [false, true]);
    }
}
