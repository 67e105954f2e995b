//! [`Addressing`]: the addresses one local cluster hands out (nodes, pods, Services,
//! LoadBalancers), kept apart from every other cluster's.

use std::net::Ipv4Addr;

use crate::{Error, Result};

/// The addresses of one cluster. In the shared-host mode they are loopback addresses of the
/// range `127.<10+index>.0.0/16`; with pod networking, the private ranges of
/// [`crate::net::PodRanges`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addressing {
    second_octet: u8,
    pods: Option<crate::net::PodRanges>,
}

impl Addressing {
    /// Loopback addressing of the cluster with this index (0..=99).
    pub fn new(index: u8) -> Result<Self> {
        if index > 99 {
            return Err(Error::Invalid(format!("cluster index {index} > 99")));
        }
        Ok(Addressing {
            second_octet: 10 + index,
            pods: None,
        })
    }

    /// The addressing of cluster `index` in network mode `mode`.
    pub fn for_mode(index: u8, mode: crate::net::NetworkMode) -> Result<Self> {
        let mut a = Self::new(index)?;
        if mode == crate::net::NetworkMode::Pods {
            a.pods = Some(crate::net::PodRanges::new(index));
        }
        Ok(a)
    }

    /// The pod ranges, with pod networking.
    pub fn pod_ranges(&self) -> Option<crate::net::PodRanges> {
        self.pods
    }

    /// The address of node `n` (0-based, at most 119).
    pub fn node_ip(&self, n: usize) -> Ipv4Addr {
        match self.pods {
            Some(p) => p.node_ip(n),
            None => Ipv4Addr::new(127, self.second_octet, Self::node_octet(n), 1),
        }
    }

    /// Pod slot `m` (2..=254) on node `n`.
    pub fn pod_ip(&self, n: usize, m: u8) -> Ipv4Addr {
        match self.pods {
            Some(p) => p.pod_ip(n, m),
            None => Ipv4Addr::new(127, self.second_octet, Self::node_octet(n), m),
        }
    }

    /// LoadBalancer ingress slot `m` (2..=254).
    pub fn load_balancer_ip(&self, m: u8) -> Ipv4Addr {
        match self.pods {
            Some(p) => p.load_balancer_ip(m),
            None => Ipv4Addr::new(127, self.second_octet, 0, m),
        }
    }

    /// The service cluster-IP range (on the shared host, `127.<c>.240.0/20`: never routed to,
    /// there is no kube-proxy; it only keeps every allocated address on loopback).
    pub fn service_cidr(&self) -> String {
        match self.pods {
            Some(p) => p.service_cidr(),
            None => format!("127.{}.240.0/20", self.second_octet),
        }
    }

    /// The first service IP (the `kubernetes` Service).
    pub fn first_service_ip(&self) -> Ipv4Addr {
        match self.pods {
            Some(p) => p.first_service_ip(),
            None => Ipv4Addr::new(127, self.second_octet, 240, 1),
        }
    }

    /// Where the cluster's components listen and pods reach the apiserver.
    pub fn host_ip(&self) -> Ipv4Addr {
        match self.pods {
            Some(_) => crate::net::HOST_IP,
            None => Ipv4Addr::LOCALHOST,
        }
    }

    fn node_octet(n: usize) -> u8 {
        u8::try_from(n.min(119) + 1).unwrap_or(120)
    }
}
