//! Command line of `node-agent`. The shape is fixed: `hack/local-cluster` calls exactly this.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "node-agent",
    version,
    about = "Test-only kubelet stand-in: runs redis Pods as processes in per-pod network and mount namespaces"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve all simulated nodes until killed.
    Run(RunArgs),
    /// Talk to a running agent over DIR/agent.sock.
    Ctl(CtlArgs),
    /// Kill pod processes and remove sandboxes left by an agent that was SIGKILLed.
    Cleanup(CleanupArgs),
    /// Internal: run by the agent inside a container's mount namespace to pivot into the
    /// image's root file system and exec the container's command as its user.
    #[command(hide = true)]
    EnterRootfs(EnterArgs),
}

#[derive(Args, Debug)]
pub struct EnterArgs {
    #[arg(long)]
    pub root: PathBuf,
    #[arg(long)]
    pub workdir: String,
    #[arg(long)]
    pub uid: u32,
    #[arg(long)]
    pub gid: u32,
    /// Comma-separated supplementary group IDs (the first is the primary group).
    #[arg(long, default_value = "")]
    pub groups: String,
    #[arg(long)]
    pub no_new_privs: bool,
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CleanupArgs {
    #[arg(long)]
    pub state_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[arg(long)]
    pub kubeconfig: PathBuf,
    #[arg(long)]
    pub state_dir: PathBuf,
    /// NAME=ZONE; repeat once per simulated node. Order decides the node's subnet.
    #[arg(long = "node", value_parser = parse_node, required = true)]
    pub nodes: Vec<NodeArg>,
    #[arg(long, default_value = "rop-br0")]
    pub bridge: String,
    #[arg(long, default_value = "10.244.0.0/16", value_parser = parse_cidr)]
    pub bridge_cidr: Cidr,
    #[arg(long, default_value_t = 8)]
    pub lease_duration_seconds: i32,
    #[arg(long, default_value_t = 2)]
    pub lease_renew_seconds: u64,
    #[arg(long, default_value = "8")]
    pub cpu: String,
    #[arg(long, default_value = "16Gi")]
    pub memory: String,
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// OCI image archives this node can run (default: STATE_DIR/images/archives), one image
    /// reference or more per archive, named in its index.json annotations.
    #[arg(long)]
    pub image_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CtlArgs {
    #[arg(long)]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub action: CtlAction,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum CtlAction {
    /// Crash a node (power loss), or with --partition cut it off the network.
    Down {
        node: String,
        #[arg(long)]
        partition: bool,
    },
    /// Boot a crashed node, or heal a partitioned one.
    Up { node: String },
    /// One line per node: name zone state pods=N
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeArg {
    pub name: String,
    pub zone: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    fn base(self) -> u32 {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        u32::from(self.addr) & mask
    }

    /// The bridge's own address: the first host address of the range.
    pub fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + 1)
    }

    /// Node `index` (0-based) owns the /24 at offset `index + 1`; its hostIP is `.1` of that /24.
    pub fn node_ip(self, index: usize, host: u8) -> Ipv4Addr {
        let block = u32::try_from(index + 1).unwrap_or(u32::MAX);
        Ipv4Addr::from(self.base() + (block << 8) + u32::from(host))
    }

    /// How many node /24 blocks fit, leaving block 0 to the gateway.
    pub fn node_blocks(self) -> usize {
        if self.prefix > 23 {
            0
        } else {
            (1usize << (24 - usize::from(self.prefix))) - 1
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn parse_node(s: &str) -> Result<NodeArg, String> {
    let (name, zone) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=ZONE, got {s:?}"))?;
    if name.is_empty() || zone.is_empty() {
        return Err(format!("expected NAME=ZONE, got {s:?}"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err(format!("node name {name:?} is not a valid DNS subdomain"));
    }
    Ok(NodeArg {
        name: name.to_string(),
        zone: zone.to_string(),
    })
}

pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("expected A.B.C.D/N, got {s:?}"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let prefix: u8 = prefix.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if prefix > 23 {
        return Err(format!(
            "{s:?}: prefix must be /23 or shorter (each node needs its own /24)"
        ));
    }
    Ok(Cidr { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_follow_the_documented_layout() {
        let c = parse_cidr("10.244.0.0/16").unwrap();
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 244, 0, 1));
        assert_eq!(c.node_ip(0, 1), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(c.node_ip(2, 254), Ipv4Addr::new(10, 244, 3, 254));
        assert_eq!(c.node_blocks(), 255);
    }

    #[test]
    fn node_flag_parses() {
        assert_eq!(
            parse_node("n1=zone-a").unwrap(),
            NodeArg {
                name: "n1".into(),
                zone: "zone-a".into()
            }
        );
        assert!(parse_node("n1").is_err());
        assert!(parse_node("N1=z").is_err());
    }

    #[test]
    fn cli_accepts_the_fixed_interface() {
        let cli = Cli::try_parse_from([
            "node-agent",
            "run",
            "--kubeconfig",
            "k",
            "--state-dir",
            "d",
            "--node",
            "a=z1",
            "--node",
            "b=z2",
            "--lease-duration-seconds",
            "8",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!(r.nodes.len(), 2);
        assert_eq!(r.bridge, "rop-br0");
        let cli = Cli::try_parse_from([
            "node-agent",
            "ctl",
            "--state-dir",
            "d",
            "down",
            "a",
            "--partition",
        ])
        .unwrap();
        let Command::Ctl(c) = cli.command else {
            panic!("not ctl")
        };
        assert_eq!(
            c.action,
            CtlAction::Down {
                node: "a".into(),
                partition: true
            }
        );
    }
}
