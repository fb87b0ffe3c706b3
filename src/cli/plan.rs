//! `redis-operator plan`: what-if placement for SREs, and the way to check the solver from
//! outside.
//!
//! Exit codes: 0 with a plan, 2 when no placement satisfies the request (the reason on
//! stdout), 1 when an input file or value is malformed (a message naming it on stderr).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use k8s_openapi::api::core::v1::{Node, Toleration};
use redis_scheduler::{
    Change, CurrentMember, Placement, Request, Resources, Role, Spread, Unsatisfiable, solve,
};
use serde::{Deserialize, Serialize};

use crate::topology::{DEFAULT_ZONE_KEY, TopologyOptions, parse_quantity, topology_from_nodes};

const AFTER_HELP: &str = "\
OUTPUT
  --output json prints one line:
    {\"shards\":[{\"index\":0,\"members\":[{\"role\":\"leader\",\"node\":\"n1\",\"zone\":\"zone-a\"},...]}],
     \"changes\":[...],\"zoneLossSafe\":true}
  Members are listed leader first. A member is identified by shard index and node name.
  Changes, in the order to apply them:
    {\"op\":\"remove\",\"shard\":0,\"role\":\"follower\",\"node\":\"n2\",\"reason\":\"the member is unhealthy\"}
    {\"op\":\"create\",\"shard\":0,\"role\":\"follower\",\"node\":\"n4\",\"zone\":\"zone-b\",\"reason\":\"...\"}
    {\"op\":\"failover\",\"shard\":0,\"to\":\"n4\",\"from\":\"n1\",\"reason\":\"...\"}
  Dead members are removed first, then members are created (as followers that sync; as
  leader only in a shard with no member left), then leaders fail over gracefully, then the
  remaining members leave. zoneLossSafe tells whether losing any one zone leaves a majority
  of leaders, which Redis needs to fail over.

EXIT STATUS
  0 plan printed; 2 unsatisfiable ({\"error\":\"unsatisfiable\",\"reason\":\"...\"} with json);
  1 malformed input.";

/// Arguments of `redis-operator plan`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct PlanArgs {
    /// Nodes: the output of `kubectl get nodes -o json` as is (a v1 List of Nodes).
    #[arg(long, value_name = "FILE")]
    pub topology: PathBuf,
    /// Shards, each with one leader (L).
    #[arg(long, value_name = "L")]
    pub leaders: u32,
    /// Followers of every leader (F); a shard has F + 1 members.
    #[arg(long, value_name = "F")]
    pub followers_per_leader: u32,
    /// Current members: a JSON array of {"shard":0,"role":"leader","node":"n1"} objects;
    /// add "healthy":false to mark a member that must be replaced.
    #[arg(long, value_name = "FILE")]
    pub current: Option<PathBuf>,
    /// Node label whose value is the node's zone; nodes without it are not used under
    /// required spread.
    #[arg(long, value_name = "LABEL", default_value = DEFAULT_ZONE_KEY)]
    pub zone_key: String,
    /// required: members of a shard always in distinct zones, at most ⌈L/Z⌉ leaders per
    /// zone. preferred: the same when possible, else as spread as the nodes allow.
    #[arg(long, value_enum, default_value_t = SpreadArg::Required)]
    pub spread: SpreadArg,
    /// json for programs, table for people.
    #[arg(long, value_enum, default_value_t = OutputArg::Table)]
    pub output: OutputArg,
    /// CPU request of one member as a Kubernetes quantity (500m, 2); 0 ignores CPU.
    #[arg(long, value_name = "QUANTITY", default_value = "0")]
    pub member_cpu: String,
    /// Memory request of one member as a Kubernetes quantity (4Gi); 0 ignores memory.
    #[arg(long, value_name = "QUANTITY", default_value = "0")]
    pub member_memory: String,
    /// Let members of different shards share a node (two members of one shard never do).
    #[arg(long)]
    pub shared_nodes: bool,
    /// A taint the members tolerate: KEY, KEY=VALUE, KEY:EFFECT or KEY=VALUE:EFFECT.
    /// Repeatable. Without any, nodes with NoSchedule/NoExecute taints are not used.
    #[arg(long = "toleration", value_name = "TOLERATION")]
    pub tolerations: Vec<String>,
}

/// `--spread`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SpreadArg {
    /// Zone separation is a hard rule.
    Required,
    /// Zone separation is a preference.
    Preferred,
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputArg {
    /// One line of JSON.
    Json,
    /// A zone × shard grid with the changes listed below it.
    Table,
}

/// Entry point of `redis-operator plan`.
pub fn main(args: PlanArgs) -> ExitCode {
    let prepared = match prepare(&args) {
        Ok(prepared) => prepared,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(1);
        }
    };
    let (topology, request, current) = prepared;
    match (solve(&topology, &request, &current), args.output) {
        (Ok(placement), OutputArg::Json) => print_json(&JsonPlan::from(&placement)),
        (Ok(placement), OutputArg::Table) => {
            print!("{}", table(&placement, &request));
            ExitCode::SUCCESS
        }
        (Err(e), OutputArg::Json) => {
            let code = print_json(&JsonError {
                error: "unsatisfiable",
                reason: &e.reason,
            });
            if code == ExitCode::SUCCESS {
                ExitCode::from(2)
            } else {
                code
            }
        }
        (Err(e), OutputArg::Table) => {
            println!("{}", unsatisfiable_text(&e));
            ExitCode::from(2)
        }
    }
}

type Prepared = (redis_scheduler::Topology, Request, Vec<CurrentMember>);

/// Reads and checks every input; the error names the file or flag and what is wrong.
fn prepare(args: &PlanArgs) -> Result<Prepared, String> {
    let tolerations = args
        .tolerations
        .iter()
        .map(|t| parse_toleration(t))
        .collect::<Result<Vec<_>, _>>()?;
    let cpu = parse_quantity(&args.member_cpu, 3)
        .map_err(|e| format!("--member-cpu {:?}: {e}", args.member_cpu))?;
    let memory = parse_quantity(&args.member_memory, 0)
        .map_err(|e| format!("--member-memory {:?}: {e}", args.member_memory))?;

    let nodes = read_nodes(&args.topology)?;
    let options = TopologyOptions {
        zone_key: args.zone_key.clone(),
        tolerations,
    };
    let topology = topology_from_nodes(&nodes, &options)
        .map_err(|e| format!("{}: {e}", args.topology.display()))?;
    let current = match &args.current {
        Some(path) => read_current(path)?,
        None => Vec::new(),
    };
    let request = Request {
        leaders: args.leaders,
        followers_per_leader: args.followers_per_leader,
        member_resources: Resources {
            cpu_millis: cpu,
            memory_bytes: memory,
        },
        spread: match args.spread {
            SpreadArg::Required => Spread::Required,
            SpreadArg::Preferred => Spread::Preferred,
        },
        one_member_per_node: !args.shared_nodes,
    };
    Ok((topology, request, current))
}

/// `kubectl get nodes -o json`: `{"apiVersion":"v1","kind":"List","items":[...]}`.
#[derive(Deserialize)]
struct NodeList {
    kind: Option<String>,
    items: Vec<Node>,
}

fn read_nodes(path: &Path) -> Result<Vec<Node>, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let list: NodeList = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not a v1 List of Nodes as printed by `kubectl get nodes -o json`: {e}",
            path.display()
        )
    })?;
    match list.kind.as_deref() {
        None | Some("List" | "NodeList") => Ok(list.items),
        Some(other) => Err(format!(
            "{}: kind is {other:?}, expected \"List\" of Nodes as printed by `kubectl get nodes -o json`",
            path.display()
        )),
    }
}

fn read_current(path: &Path) -> Result<Vec<CurrentMember>, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: expected a JSON array of {{\"shard\":0,\"role\":\"leader\",\"node\":\"n1\"}} objects: {e}",
            path.display()
        )
    })
}

/// `KEY`, `KEY=VALUE`, `KEY:EFFECT`, `KEY=VALUE:EFFECT`.
fn parse_toleration(text: &str) -> Result<Toleration, String> {
    let (rest, effect) = match text.rsplit_once(':') {
        Some((rest, effect)) => (rest, Some(effect)),
        None => (text, None),
    };
    if let Some(effect) = effect
        && !matches!(effect, "NoSchedule" | "NoExecute" | "PreferNoSchedule")
    {
        return Err(format!(
            "--toleration {text:?}: effect must be NoSchedule, NoExecute or PreferNoSchedule"
        ));
    }
    let (key, value) = match rest.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (rest, None),
    };
    if key.is_empty() {
        return Err(format!("--toleration {text:?}: missing key"));
    }
    Ok(Toleration {
        key: Some(key.to_string()),
        operator: Some(if value.is_some() { "Equal" } else { "Exists" }.to_string()),
        value: value.map(str::to_string),
        effect: effect.map(str::to_string),
        toleration_seconds: None,
    })
}

/// The documented JSON shape, and nothing else.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonPlan<'a> {
    shards: &'a [redis_scheduler::ShardPlacement],
    changes: &'a [Change],
    zone_loss_safe: bool,
}

impl<'a> From<&'a Placement> for JsonPlan<'a> {
    fn from(p: &'a Placement) -> Self {
        Self {
            shards: &p.shards,
            changes: &p.changes,
            zone_loss_safe: p.zone_loss_safe,
        }
    }
}

#[derive(Serialize)]
struct JsonError<'a> {
    error: &'static str,
    reason: &'a str,
}

fn print_json(value: &impl Serialize) -> ExitCode {
    match serde_json::to_string(value) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot print JSON: {e}");
            ExitCode::from(1)
        }
    }
}

fn unsatisfiable_text(e: &Unsatisfiable) -> String {
    format!("Unsatisfiable: {}", e.reason)
}

/// The zone × shard grid, zone-loss verdict, notes and changes.
fn table(placement: &Placement, request: &Request) -> String {
    let zones: Vec<&str> = placement
        .leaders_per_zone
        .iter()
        .map(|z| z.zone.as_str())
        .collect();
    let header = |zone: &str| {
        if zone.is_empty() {
            "(no zone)".to_string()
        } else {
            zone.to_string()
        }
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head = vec!["SHARD".to_string()];
    head.extend(zones.iter().map(|z| header(z)));
    rows.push(head);
    for shard in &placement.shards {
        let mut row = vec![shard.index.to_string()];
        for zone in &zones {
            let cell: Vec<String> = shard
                .members
                .iter()
                .filter(|m| m.zone == *zone)
                .map(|m| {
                    format!(
                        "{} {}",
                        if m.role == Role::Leader { "L" } else { "F" },
                        m.node
                    )
                })
                .collect();
            row.push(if cell.is_empty() {
                ".".to_string()
            } else {
                cell.join(", ")
            });
        }
        rows.push(row);
    }
    let mut leaders = vec!["leaders".to_string()];
    leaders.extend(
        placement
            .leaders_per_zone
            .iter()
            .map(|z| z.leaders.to_string()),
    );
    rows.push(leaders);
    let mut members = vec!["members".to_string()];
    members.extend(
        placement
            .leaders_per_zone
            .iter()
            .map(|z| z.members.to_string()),
    );
    rows.push(members);

    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let followers = request.followers_per_leader;
    out.push_str(&format!(
        "Plan: {} shards × {} members (1 leader + {followers} follower{}), {} spread{}, at most {} leader{} per zone\n\n",
        request.leaders,
        request.members_per_shard(),
        if followers == 1 { "" } else { "s" },
        match request.spread {
            Spread::Required => "required",
            Spread::Preferred if placement.spread_relaxed => "preferred (relaxed)",
            Spread::Preferred => "preferred",
        },
        if request.one_member_per_node { ", one member per node" } else { "" },
        placement.leader_cap,
        if placement.leader_cap == 1 { "" } else { "s" },
    ));
    let body_rows = rows.len();
    for (i, row) in rows.iter().enumerate() {
        if i + 2 == body_rows {
            out.push('\n');
        }
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push('\n');
    if placement.zone_loss_safe {
        out.push_str(&format!(
            "Zone loss: safe — {}.\n",
            placement.zone_loss_reason
        ));
    } else {
        out.push_str(&format!(
            "Zone loss: NOT SAFE — {}\n",
            placement.zone_loss_reason
        ));
    }
    for note in &placement.notes {
        out.push_str(&format!("Note: {note}.\n"));
    }
    out.push('\n');
    if placement.changes.is_empty() {
        out.push_str("No changes: the current members already match this plan.\n");
        return out;
    }
    out.push_str(&format!(
        "Changes ({}), in order:\n",
        placement.changes.len()
    ));
    for (i, change) in placement.changes.iter().enumerate() {
        let text = match change {
            Change::Create {
                shard,
                role,
                node,
                zone,
                reason,
            } => format!(
                "create    shard {shard} {} on {node} ({zone}): {reason}",
                role.as_str()
            ),
            Change::Failover {
                shard,
                to,
                from,
                reason,
            } => match from {
                Some(from) => format!("failover  shard {shard} to {to} (from {from}): {reason}"),
                None => format!("failover  shard {shard} to {to}: {reason}"),
            },
            Change::Remove {
                shard,
                role,
                node,
                reason,
            } => format!(
                "remove    shard {shard} {} on {node}: {reason}",
                role.as_str()
            ),
        };
        out.push_str(&format!("{:>4}. {text}\n", i + 1));
    }
    out
}
