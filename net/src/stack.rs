//! One network interface: smoltcp's `Interface` and its sockets over a [`Device`],
//! addressed by DHCPv4 with a static fallback, polled with the time passed in.

use alloc::vec;

use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::socket::dhcpv4;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

use crate::adapter::Adapter;
use crate::device::Device;
use crate::trace::{self, Counter};

/// The address QEMU's user networking hands out, used when DHCP does not answer.
pub const FALLBACK_ADDRESS: Ipv4Cidr = Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24);
/// QEMU's user-networking gateway.
pub const FALLBACK_GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);

/// How the interface gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// This address and, if any, this default gateway.
    Static(Ipv4Cidr, Option<Ipv4Address>),
    /// DHCPv4; the fallback address if no lease came within this many milliseconds.
    Dhcp { fallback_after_ms: u64 },
}

/// A network interface and its sockets.
pub struct Stack<D: Device> {
    interface: Interface,
    adapter: Adapter<D>,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    fallback_at_ms: u64,
    address: Option<(Ipv4Cidr, &'static str)>,
}

impl<D: Device> core::fmt::Debug for Stack<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stack")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl<D: Device> Stack<D> {
    /// Returns a stack on `device`, addressed as `addressing` says, at time `now_ms`.
    pub fn new(device: D, addressing: Addressing, now_ms: u64) -> Self {
        Self::with_storage(device, addressing, now_ms, vec![])
    }

    /// Returns a stack like [`Stack::new`] whose socket set has room for `sockets`
    /// sockets reserved up front (so adding one never allocates), or `None` when this
    /// core has no memory for that.
    pub fn try_new(device: D, addressing: Addressing, now_ms: u64, sockets: usize) -> Option<Self> {
        let mut storage = alloc::vec::Vec::new();
        // Besides the table's sockets: the DHCP client's.
        storage.try_reserve_exact(sockets + 1).ok()?;
        Some(Self::with_storage(device, addressing, now_ms, storage))
    }

    fn with_storage(
        device: D,
        addressing: Addressing,
        now_ms: u64,
        storage: alloc::vec::Vec<smoltcp::iface::SocketStorage<'static>>,
    ) -> Self {
        let mac = EthernetAddress(device.mac());
        let mut adapter = Adapter::new(device);
        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        config.random_seed = u64::from_le_bytes([
            mac.0[0], mac.0[1], mac.0[2], mac.0[3], mac.0[4], mac.0[5], 0x4D, 0x41,
        ]);
        let interface = Interface::new(config, &mut adapter, Instant::from_millis(now_ms as i64));
        let mut stack = Stack {
            interface,
            adapter,
            sockets: SocketSet::new(storage),
            dhcp: None,
            fallback_at_ms: u64::MAX,
            address: None,
        };
        match addressing {
            Addressing::Static(address, gateway) => stack.configure(address, gateway, "static"),
            Addressing::Dhcp { fallback_after_ms } => {
                stack.dhcp = Some(stack.sockets.add(dhcpv4::Socket::new()));
                stack.fallback_at_ms = now_ms.saturating_add(fallback_after_ms);
            }
        }
        stack
    }

    fn configure(&mut self, address: Ipv4Cidr, gateway: Option<Ipv4Address>, source: &'static str) {
        self.interface.update_ip_addrs(|addresses| {
            addresses.clear();
            let _ = addresses.push(IpCidr::Ipv4(address));
        });
        let routes = self.interface.routes_mut();
        routes.remove_default_ipv4_route();
        if let Some(gateway) = gateway {
            let _ = routes.add_default_ipv4_route(gateway);
        }
        self.address = Some((address, source));
    }

    /// Returns the interface's address and where it came from (`dhcp`, `static`,
    /// `fallback`), once it has one.
    pub fn address(&self) -> Option<(Ipv4Cidr, &'static str)> {
        self.address
    }

    /// Returns the sockets, to add and use them.
    pub fn sockets(&mut self) -> &mut SocketSet<'static> {
        &mut self.sockets
    }

    /// Returns the sockets and the interface's context together (`connect` needs both).
    pub fn parts(&mut self) -> (&mut SocketSet<'static>, &mut smoltcp::iface::Context) {
        (&mut self.sockets, self.interface.context())
    }

    /// Returns when smoltcp next needs a poll (a retransmission, a timer), in
    /// milliseconds from `now_ms`; `None` when only new frames or socket calls matter.
    pub fn poll_delay(&mut self, now_ms: u64) -> Option<u64> {
        self.interface
            .poll_delay(Instant::from_millis(now_ms as i64), &self.sockets)
            .map(|delay| delay.total_millis())
    }

    /// Returns the interface's context, which `connect` needs.
    pub fn context(&mut self) -> &mut smoltcp::iface::Context {
        self.interface.context()
    }

    /// Returns the device.
    pub fn device(&mut self) -> &mut D {
        &mut self.adapter.device
    }

    /// Moves packets between the device and the sockets, and runs DHCP; returns true when
    /// a socket may have changed.
    pub fn poll(&mut self, now_ms: u64) -> bool {
        self.poll_with(now_ms, |_| {})
    }

    /// Like [`poll`](Self::poll), calling `after_packet` with the sockets after each
    /// received packet that may have changed one (a listener refills its backlog there,
    /// so every SYN of a burst finds a listening socket).
    pub fn poll_with(
        &mut self,
        now_ms: u64,
        after_packet: impl FnMut(&mut SocketSet<'static>),
    ) -> bool {
        let received = self.poll_ingress(now_ms, after_packet);
        self.poll_egress(now_ms) || received
    }

    /// Takes in every received frame, calling `after_packet` after each one that may
    /// have changed a socket; returns true when one did. Sends nothing but what a frame
    /// needs at once (an ARP reply, say): the caller answers on the sockets first, so an
    /// acknowledgement leaves with the answer ([`poll_egress`](Self::poll_egress)).
    pub fn poll_ingress(
        &mut self,
        now_ms: u64,
        mut after_packet: impl FnMut(&mut SocketSet<'static>),
    ) -> bool {
        let now = Instant::from_millis(now_ms as i64);
        self.interface.poll_maintenance(now);
        let mut changed = false;
        let started = trace::start();
        let mut frames = 0;
        loop {
            match self
                .interface
                .poll_ingress_single(now, &mut self.adapter, &mut self.sockets)
            {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => {
                    changed = true;
                    after_packet(&mut self.sockets);
                }
            }
            frames += 1;
        }
        if frames > 0 {
            trace::finish(started, Counter::IngressCycles, None);
            trace::add(Counter::FramesIn, frames);
        }
        changed
    }

    /// Sends what the sockets have to send (data, acknowledgements, retransmissions)
    /// and runs DHCP; returns true when a socket changed.
    pub fn poll_egress(&mut self, now_ms: u64) -> bool {
        let now = Instant::from_millis(now_ms as i64);
        let mut changed = false;
        let started = trace::start();
        while self
            .interface
            .poll_egress(now, &mut self.adapter, &mut self.sockets)
            == PollResult::SocketStateChanged
        {
            changed = true;
        }
        trace::finish(started, Counter::EgressCycles, None);
        if let Some(handle) = self.dhcp {
            let event = self
                .sockets
                .get_mut::<dhcpv4::Socket>(handle)
                .poll()
                .map(|event| match event {
                    dhcpv4::Event::Configured(lease) => Some((lease.address, lease.router)),
                    dhcpv4::Event::Deconfigured => None,
                });
            match event {
                Some(Some((address, router))) => self.configure(address, router, "dhcp"),
                Some(None) => {
                    self.address = None;
                    self.interface
                        .update_ip_addrs(|addresses| addresses.clear());
                }
                None => {}
            }
            if self.address.is_none() && now_ms >= self.fallback_at_ms {
                self.sockets.remove(handle);
                self.dhcp = None;
                self.configure(FALLBACK_ADDRESS, Some(FALLBACK_GATEWAY), "fallback");
            }
        }
        changed
    }
}
