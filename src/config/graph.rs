//! Step 2: the compile pass. Resolves `inputs`, rejects cycles, duplicate ids and
//! double claims, and lets every component check itself against what reaches it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use super::{ComponentEntry, PipelineFile};
use crate::component::{Check, Claim, ComponentConfig, Kind, Prepared, Problem};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::event::Schema;

/// A component by kind and position in its list.
pub type Node = (Kind, usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub from: Node,
    pub to: Node,
}

/// A pipeline that passed the compile pass: safe to build and run.
#[derive(Debug)]
pub struct CheckedPipeline {
    pub file: PipelineFile,
    pub edges: Vec<Edge>,
    /// Transforms in an order where each comes after all its inputs.
    pub transform_order: Vec<usize>,
    /// What reaches each transform and sink.
    pub input_schemas: HashMap<Node, Vec<Arc<Schema>>>,
    /// What each component's check loaded and kept for its build.
    pub prepared: HashMap<Node, Prepared>,
    /// Files the components read besides the pipeline file.
    pub reads: Vec<PathBuf>,
    /// Which component read which of them.
    pub read_by: HashMap<Node, Vec<PathBuf>>,
    /// A fingerprint of each file read, taken when it was checked: a reload
    /// rebuilds a component whose files changed although its keys did not.
    pub fingerprints: HashMap<PathBuf, u64>,
}

impl CheckedPipeline {
    /// Every file the pipeline is made of: the pipeline file and what the
    /// components read.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.file.source.path.clone()];
        v.extend(self.reads.iter().cloned());
        v
    }

    /// Whether a file `node` read differs from what `other` saw of it.
    pub fn reads_changed(&self, other: &CheckedPipeline, node: Node) -> bool {
        (self.read_by.get(&node).into_iter().flatten()).any(|f| self.fingerprints.get(f) != other.fingerprints.get(f))
    }

    /// What the check of a component kept, if it is a `T`.
    pub fn prepared<T: std::any::Any>(&self, node: Node) -> Option<&T> {
        self.prepared.get(&node)?.downcast_ref()
    }

    pub fn id(&self, node: Node) -> &str {
        match node.0 {
            Kind::Source => &self.file.sources[node.1].id,
            Kind::Transform => &self.file.transforms[node.1].id,
            Kind::Sink => &self.file.sinks[node.1].id,
        }
    }

    /// A one-line description: "2 sources, 3 transforms, 3 sinks, 8 edges".
    pub fn summary(&self) -> String {
        format!(
            "{} source{}, {} transform{}, {} sink{}, {} edge{}",
            self.file.sources.len(),
            plural(self.file.sources.len()),
            self.file.transforms.len(),
            plural(self.file.transforms.len()),
            self.file.sinks.len(),
            plural(self.file.sinks.len()),
            self.edges.len(),
            plural(self.edges.len()),
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Runs the compile pass. On success returns the checked pipeline and its
/// warnings; on failure every error (and warning) found.
pub fn compile(file: PipelineFile, mut diags: Diagnostics) -> Result<(CheckedPipeline, Diagnostics), Diagnostics> {
    let src = file.source.clone();
    let err = |span: Option<Range<usize>>, comp: &str, msg: String| {
        Diagnostic::error(&src, span, msg).in_component(comp.to_string())
    };

    // Ids are shared across kinds: `inputs` names them without a kind.
    let mut ids: HashMap<&str, Node> = HashMap::new();
    let mut all: Vec<(Node, &str, Range<usize>)> = Vec::new();
    all.extend(
        file.sources
            .iter()
            .enumerate()
            .map(|(i, c)| ((Kind::Source, i), c.id.as_str(), c.span.clone())),
    );
    all.extend(
        file.transforms
            .iter()
            .enumerate()
            .map(|(i, c)| ((Kind::Transform, i), c.id.as_str(), c.span.clone())),
    );
    all.extend(
        file.sinks
            .iter()
            .enumerate()
            .map(|(i, c)| ((Kind::Sink, i), c.id.as_str(), c.span.clone())),
    );
    for (node, id, span) in &all {
        if let Some(first) = ids.get(id) {
            diags.push(err(
                Some(span.clone()),
                &format!("{}.{id}", node.0.table()),
                format!("duplicate component id `{id}`: already used by {}.{id}; ids must be unique across sources, transforms and sinks", first.0.table()),
            ));
        } else {
            ids.insert(id, *node);
        }
    }
    let has_broken = |kind: Kind| file.broken.iter().any(|(k, _)| *k == kind);
    if file.sources.is_empty() && !has_broken(Kind::Source) {
        diags.push(Diagnostic::error(
            &src,
            Some(0..0),
            "the pipeline has no source; add a [sources.ID] table (e.g. type = \"modbus_tcp\")",
        ));
    }
    if file.sinks.is_empty() && !has_broken(Kind::Sink) {
        diags.push(Diagnostic::error(
            &src,
            Some(0..0),
            "the pipeline has no sink; add a [sinks.ID] table (e.g. type = \"prometheus\")",
        ));
    }

    // Resolve inputs into edges.
    let producers: Vec<(&str, Node)> = all
        .iter()
        .filter(|(n, _, _)| n.0 != Kind::Sink)
        .map(|(n, id, _)| (*id, *n))
        .collect();
    // Components whose upstreams failed to parse: their own checks would only
    // repeat those errors in other words, so they are skipped.
    let mut tainted: HashSet<Node> = HashSet::new();
    let is_broken = |id: &str| file.broken.iter().any(|(_, b)| b == id);
    let known = |except: &str| {
        let mut v: Vec<&str> = producers.iter().map(|(id, _)| *id).collect();
        v.extend(
            file.broken
                .iter()
                .filter(|(k, _)| *k != Kind::Sink)
                .map(|(_, b)| b.as_str()),
        );
        v.retain(|id| *id != except);
        v.sort_unstable();
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut edges: Vec<Edge> = Vec::new();
    let consumers = file
        .transforms
        .iter()
        .enumerate()
        .map(|(i, c)| ((Kind::Transform, i), &c.id, &c.inputs))
        .chain(
            file.sinks
                .iter()
                .enumerate()
                .map(|(i, c)| ((Kind::Sink, i), &c.id, &c.inputs)),
        );
    for (to, id, inputs) in consumers {
        let name = format!("{}.{id}", to.0.table());
        for (pattern, span) in inputs {
            let mut matched: Vec<Node> = Vec::new();
            if pattern.contains('*') {
                matched.extend(
                    producers
                        .iter()
                        .filter(|(pid, n)| *n != to && glob_match(pattern, pid))
                        .map(|(_, n)| *n),
                );
                if file.broken.iter().any(|(_, b)| glob_match(pattern, b)) {
                    tainted.insert(to);
                } else if matched.is_empty() {
                    diags.push(err(
                        Some(span.clone()),
                        &name,
                        format!(
                            "input pattern `{pattern}` matches no source or transform; known ids: {}",
                            known(id)
                        ),
                    ));
                }
            } else if let Some(&node) = ids.get(pattern.as_str()) {
                if node.0 == Kind::Sink {
                    diags.push(err(
                        Some(span.clone()),
                        &name,
                        format!("input `{pattern}` is a sink; sinks have no output to read from"),
                    ));
                } else if node == to {
                    diags.push(err(
                        Some(span.clone()),
                        &name,
                        format!("`{id}` names itself as an input"),
                    ));
                } else {
                    matched.push(node);
                }
            } else if is_broken(pattern) {
                tainted.insert(to);
            } else {
                diags.push(err(
                    Some(span.clone()),
                    &name,
                    format!("unknown input `{pattern}`; known ids: {}", known(id)),
                ));
            }
            for from in matched {
                let e = Edge { from, to };
                if !edges.contains(&e) {
                    edges.push(e);
                }
            }
        }
    }

    // Order transforms; whatever cannot be ordered sits on a cycle.
    let transform_order = topo_order(file.transforms.len(), &edges);
    if transform_order.len() < file.transforms.len() {
        let ordered: BTreeSet<usize> = transform_order.iter().copied().collect();
        let stuck: Vec<usize> = (0..file.transforms.len()).filter(|i| !ordered.contains(i)).collect();
        let names: Vec<&str> = stuck.iter().map(|&i| file.transforms[i].id.as_str()).collect();
        for &i in &stuck {
            let t = &file.transforms[i];
            // Self-references were already reported; report real cycles once per member.
            diags.push(err(
                Some(t.span.clone()),
                &format!("transforms.{}", t.id),
                format!(
                    "cycle between transforms: {} feed each other; data must flow from sources to sinks",
                    names.join(", ")
                ),
            ));
        }
    }

    // Let every component check itself, in data-flow order so each knows its inputs.
    let mut outputs: HashMap<Node, Vec<Arc<Schema>>> = HashMap::new();
    let mut input_schemas: HashMap<Node, Vec<Arc<Schema>>> = HashMap::new();
    let mut found = Found::default();
    let gather = |to: Node, outputs: &HashMap<Node, Vec<Arc<Schema>>>| -> Vec<Arc<Schema>> {
        let mut v: Vec<Arc<Schema>> = Vec::new();
        for e in edges.iter().filter(|e| e.to == to) {
            for s in outputs.get(&e.from).into_iter().flatten() {
                if !v.iter().any(|x| Arc::ptr_eq(x, s) || **x == **s) {
                    v.push(s.clone());
                }
            }
        }
        v
    };
    for (i, c) in file.sources.iter().enumerate() {
        let node = (Kind::Source, i);
        let out = check_one(&file, c, node, &[], &mut diags, &mut found);
        outputs.insert(node, out);
    }
    for &i in &transform_order {
        let node = (Kind::Transform, i);
        if tainted.contains(&node) || edges.iter().any(|e| e.to == node && tainted.contains(&e.from)) {
            tainted.insert(node);
            continue;
        }
        let inputs = gather(node, &outputs);
        let out = check_one(&file, &file.transforms[i], node, &inputs, &mut diags, &mut found);
        outputs.insert(node, out);
        input_schemas.insert(node, inputs);
    }
    for (i, c) in file.sinks.iter().enumerate() {
        let node = (Kind::Sink, i);
        let inputs = gather(node, &outputs);
        let upstream_broken =
            tainted.contains(&node) || edges.iter().any(|e| e.to == node && tainted.contains(&e.from));
        if let Some(s) = inputs
            .iter()
            .find(|s| !upstream_broken && !s.scaled && s.fields.iter().any(|f| f.needs_scaling()))
        {
            diags.push(
                Diagnostic::warning(&src, Some(c.span.clone()), format!(
                    "receives raw register values of model `{}` that carry a scale but pass no `scale` transform; add one between the source and this sink",
                    s.model
                ))
                .in_component(format!("sinks.{}", c.id)),
            );
        }
        check_one(&file, c, node, &inputs, &mut diags, &mut found);
        input_schemas.insert(node, inputs);
    }

    // Two components may not hold one port, serial line or file.
    let mut holders: HashMap<&Claim, Node> = HashMap::new();
    for (claim, node, key) in &found.claims {
        match holders.get(claim) {
            Some(first) if first != node => {
                let (span, name) = entry_span(&file, *node, key.as_deref());
                let first_id = id_of(&file, *first);
                diags.push(err(
                    Some(span),
                    &name,
                    format!("{claim} is already claimed by {}.{first_id}", first.0.table()),
                ));
            }
            Some(_) => {}
            None => {
                holders.insert(claim, *node);
            }
        }
    }

    // Output nobody reads is a mistake more often than not, but not fatal.
    for (node, id, span) in &all {
        if file.broken.is_empty() && node.0 != Kind::Sink && !edges.iter().any(|e| e.from == *node) {
            diags.push(
                Diagnostic::warning(
                    &src,
                    Some(span.clone()),
                    format!("no sink or transform consumes `{id}`; its events go nowhere"),
                )
                .in_component(format!("{}.{id}", node.0.table())),
            );
        }
    }

    diags.sort();
    if diags.has_errors() {
        return Err(diags);
    }
    Ok((
        CheckedPipeline {
            file,
            edges,
            transform_order,
            input_schemas,
            prepared: found.prepared,
            fingerprints: found.reads.iter().map(|f| (f.clone(), fingerprint(f))).collect(),
            reads: found.reads,
            read_by: found.read_by,
        },
        diags,
    ))
}

fn id_of(file: &PipelineFile, node: Node) -> &str {
    match node.0 {
        Kind::Source => &file.sources[node.1].id,
        Kind::Transform => &file.transforms[node.1].id,
        Kind::Sink => &file.sinks[node.1].id,
    }
}

fn entry_span(file: &PipelineFile, node: Node, key: Option<&str>) -> (Range<usize>, String) {
    let span = match node.0 {
        Kind::Source => file.sources[node.1].span_of(key),
        Kind::Transform => file.transforms[node.1].span_of(key),
        Kind::Sink => file.sinks[node.1].span_of(key),
    };
    (span, format!("{}.{}", node.0.table(), id_of(file, node)))
}

/// What the components' checks declared besides their outputs.
#[derive(Default)]
struct Found {
    claims: Vec<(Claim, Node, Option<String>)>,
    prepared: HashMap<Node, Prepared>,
    reads: Vec<PathBuf>,
    read_by: HashMap<Node, Vec<PathBuf>>,
}

/// A file's contents as a number (0 when it cannot be read).
fn fingerprint(path: &std::path::Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(path).unwrap_or_default().hash(&mut h);
    h.finish()
}

fn check_one<C: ComponentConfig>(
    file: &PipelineFile,
    entry: &ComponentEntry<C>,
    node: Node,
    inputs: &[Arc<Schema>],
    diags: &mut Diagnostics,
    found: &mut Found,
) -> Vec<Arc<Schema>> {
    let mut cx = Check::new(&entry.id, &file.dir, &file.data_dir, inputs);
    entry.config.check(&mut cx);
    let name = format!("{}.{}", C::KIND.table(), entry.id);
    for p in cx.problems {
        match p {
            Problem::Error { key, message } => diags.push(
                Diagnostic::error(&file.source, Some(entry.span_of(key.as_deref())), message)
                    .in_component(name.clone()),
            ),
            Problem::Warning { key, message } => diags.push(
                Diagnostic::warning(&file.source, Some(entry.span_of(key.as_deref())), message)
                    .in_component(name.clone()),
            ),
            Problem::External(d) => {
                let d = if d.component.is_none() {
                    d.in_component(name.clone())
                } else {
                    d
                };
                diags.push(d)
            }
        }
    }
    found.claims.extend(cx.claims.into_iter().map(|(c, k)| (c, node, k)));
    if let Some(p) = cx.prepared {
        found.prepared.insert(node, p);
    }
    for path in cx.reads {
        if !found.reads.contains(&path) {
            found.reads.push(path.clone());
        }
        found.read_by.entry(node).or_default().push(path);
    }
    cx.outputs
}

/// Kahn's algorithm over the transform sub-graph.
fn topo_order(n: usize, edges: &[Edge]) -> Vec<usize> {
    let mut indegree = vec![0usize; n];
    for e in edges {
        if e.from.0 == Kind::Transform && e.to.0 == Kind::Transform {
            indegree[e.to.1] += 1;
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop() {
        order.push(i);
        for e in edges {
            if e.from == (Kind::Transform, i) && e.to.0 == Kind::Transform {
                indegree[e.to.1] -= 1;
                if indegree[e.to.1] == 0 {
                    ready.push(e.to.1);
                }
            }
        }
    }
    order
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_star_matches_any_run() {
        assert!(glob_match("heat*", "heatpumps"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("a*c*e", "abde"));
        assert!(!glob_match("hp*", "xhp1"));
        assert!(glob_match("exact", "exact"));
    }

    #[test]
    fn topo_order_leaves_cycles_out() {
        let t = |i| (Kind::Transform, i);
        let edges = vec![
            Edge { from: t(0), to: t(1) },
            Edge { from: t(1), to: t(2) },
            Edge { from: t(2), to: t(1) },
        ];
        assert_eq!(topo_order(3, &edges), vec![0]);
    }
}
