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
    /// An OCI image's root to pivot into; without it the container sees the host's files.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Join the network, UTS and mount namespaces of this running container process first
    /// (exec probes and hooks).
    #[arg(long)]
    pub join: Option<i32>,
    /// Remount the namespace's mounts read-only, except `--keep-rw` and /proc, /dev, /sys.
    #[arg(long)]
    pub read_only_root: bool,
    #[arg(long)]
    pub keep_rw: Vec<String>,
    /// The capability set (bit n = capability n); absent: capabilities are left as they are.
    #[arg(long)]
    pub caps: Option<u64>,
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
    /// Delay and/or randomly drop traffic between every pod of two zones, both directions
    /// (one-way delay DELAY ± JITTER, uniform; each direction loses LOSS percent).
    LinkDegrade {
        zone_a: String,
        zone_b: String,
        #[arg(long, default_value_t = 0)]
        delay: u32,
        #[arg(long, default_value_t = 0)]
        jitter: u32,
        #[arg(long, default_value = "0", value_parser = parse_percent)]
        loss: Percent,
    },
    /// Undo link-degrade between two zones, or between all of them with --all.
    LinkRestore {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        zone_a: Option<String>,
        #[arg(required_unless_present = "all")]
        zone_b: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// One line per degraded zone pair.
    LinkStatus,
}

/// A percentage in hundredths of a percent (basis points), so 0.25 % is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent(pub u32);

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, frac) = (self.0 / 100, self.0 % 100);
        match frac {
            0 => write!(f, "{whole}%"),
            f10 if f10 % 10 == 0 => write!(f, "{whole}.{}%", f10 / 10),
            _ => write!(f, "{whole}.{frac:02}%"),
        }
    }
}

/// "5", "5%", "0.25": 0 to 100 with at most two decimals.
pub fn parse_percent(s: &str) -> Result<Percent, String> {
    let t = s.trim().trim_end_matches('%');
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let bad = || format!("expected a percentage from 0 to 100 (at most 2 decimals), got {s:?}");
    if whole.is_empty()
        || frac.len() > 2
        || !(whole.chars().chain(frac.chars())).all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u32 = whole.parse().map_err(|_| bad())?;
    let frac: u32 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
    let bp = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    if bp > 10_000 {
        return Err(bad());
    }
    Ok(Percent(bp))
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

    #[test]
    fn link_commands_parse() {
        let ctl = |args: &[&str]| {
            let mut v = vec!["node-agent", "ctl", "--state-dir", "d"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v).map(|c| match c.command {
                Command::Ctl(c) => c.action,
                _ => panic!("not ctl"),
            })
        };
        assert_eq!(
            ctl(&[
                "link-degrade",
                "zone-a",
                "zone-b",
                "--delay",
                "200",
                "--jitter",
                "50",
                "--loss",
                "5"
            ])
            .unwrap(),
            CtlAction::LinkDegrade {
                zone_a: "zone-a".into(),
                zone_b: "zone-b".into(),
                delay: 200,
                jitter: 50,
                loss: Percent(500)
            }
        );
        assert_eq!(
            ctl(&["link-restore", "--all"]).unwrap(),
            CtlAction::LinkRestore {
                zone_a: None,
                zone_b: None,
                all: true
            }
        );
        assert!(ctl(&["link-restore", "zone-a"]).is_err());
        assert!(ctl(&["link-restore"]).is_err());
        assert!(ctl(&["link-restore", "zone-a", "zone-b", "--all"]).is_err());
    }

    #[test]
    fn percentages_parse_exactly() {
        assert_eq!(parse_percent("5"), Ok(Percent(500)));
        assert_eq!(parse_percent("30%"), Ok(Percent(3000)));
        assert_eq!(parse_percent("0.25"), Ok(Percent(25)));
        assert_eq!(parse_percent("0.5"), Ok(Percent(50)));
        assert_eq!(parse_percent("100"), Ok(Percent(10_000)));
        for bad in ["", "-1", "100.01", "1.234", "x", ".5", "1e2"] {
            assert!(parse_percent(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Percent(500).to_string(), "5%");
        assert_eq!(Percent(50).to_string(), "0.5%");
        assert_eq!(Percent(525).to_string(), "5.25%");
        assert_eq!(Percent(5).to_string(), "0.05%");
    }
}
