//! The sockets the network stage opens itself (DHCP before the interface has an address) and
//! waiting on them. Plain TCP/UDP goes through `std::net`; rtnetlink through `net::rtnl`.

use rustix::event::{PollFd, PollFlags, Timespec};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
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

// --- IPv6 (router discovery and DHCPv6 before the interface has a global address) ------------

/// A raw ICMPv6 socket that sends and receives on `iface` only, non-blocking, with the hop
/// limit 255 that router discovery requires of what it sends (RFC 4861 §4.1). It sees every
/// ICMPv6 message on the link; the kernel has checked their checksums.
pub struct Icmp6(std::os::fd::OwnedFd);

impl Icmp6 {
    pub fn on_device(iface: &str) -> io::Result<Icmp6> {
        use rustix::net::{ipproto, sockopt, AddressFamily, SocketFlags, SocketType};
        let fd = rustix::net::socket_with(
            AddressFamily::INET6,
            SocketType::RAW,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(ipproto::ICMPV6),
        )?;
        sockopt::set_ipv6_unicast_hops(&fd, Some(255))?;
        sockopt::set_ipv6_multicast_hops(&fd, 255)?;
        socket2::SockRef::from(&fd).bind_device(Some(iface.as_bytes()))?;
        Ok(Icmp6(fd))
    }

    /// Sends `bytes` (the kernel fills in the checksum) to `dest` through interface `ifindex`.
    pub fn send(&self, bytes: &[u8], dest: std::net::Ipv6Addr, ifindex: u32) -> io::Result<()> {
        let to = std::net::SocketAddrV6::new(dest, 0, 0, ifindex);
        rustix::net::sendto(&self.0, bytes, rustix::net::SendFlags::empty(), &to)?;
        Ok(())
    }

    /// One message and its source, `None` when nothing is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, std::net::Ipv6Addr)>> {
        match rustix::net::recvfrom(&self.0, &mut *buf, rustix::net::RecvFlags::empty()) {
            Ok((n, _, from)) => {
                let src = from
                    .and_then(|a| std::net::SocketAddrV6::try_from(a).ok())
                    .map(|a| *a.ip())
                    .unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);
                Ok(Some((n, src)))
            }
            Err(rustix::io::Errno::AGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl std::os::fd::AsFd for Icmp6 {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A UDP socket on `[::]:port`, IPv6 only, that sends and receives on `iface` only, with
/// `SO_REUSEADDR`: the DHCPv6 client's (it sends from the interface's link-local address).
pub fn udp6_on_device(iface: &str, port: u16) -> io::Result<UdpSocket> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::INET6,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_ipv6_v6only(&fd, true)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    socket2::SockRef::from(&fd).bind_device(Some(iface.as_bytes()))?;
    rustix::net::bind(
        &fd,
        &std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, port, 0, 0),
    )?;
    Ok(UdpSocket::from(fd))
}

/// Writes one IPv6 setting of an interface, `/proc/sys/net/ipv6/conf/IFACE/KEY` (what rtnetlink
/// cannot set): the network stage turns the kernel's own router-advertisement handling off on
/// the interfaces it configures itself.
pub fn set_ipv6_conf(iface: &str, key: &str, value: &str) -> io::Result<()> {
    if iface.contains('/') || iface.starts_with('.') || key.contains('/') {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/{key}"), value)
}

/// Reads what `stream` already holds, without waiting: `WouldBlock` when nothing is there.
/// A peer connection that is serving uses it to look for messages between blocks without
/// sleeping (a read timeout of even 100 µs costs a context switch per look).
pub fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(stream, buf, rustix::net::RecvFlags::DONTWAIT)?.0)
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

    #[test]
    fn recv_now_does_not_wait() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 8];
        let t = std::time::Instant::now();
        let e = recv_now(&b, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(t.elapsed() < Duration::from_secs(1));
        std::io::Write::write_all(&mut a, b"abc").unwrap();
        let mut got = 0;
        while got == 0 {
            got = recv_now(&b, &mut buf)
                .or_else(|e| {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    Ok::<_, io::Error>(0)
                })
                .unwrap();
        }
        assert_eq!(buf.get(..got), Some(&b"abc"[..got]));
        drop(a);
    }
}
